"""wrangler.toml / wrangler.jsonc parsing into binding specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarebase.platform import ConfigError, load_project, open_env
from flarebase.platform.config import strip_jsonc

FULL = """
name = "app"
main = "src/index.ts"
routes = [{ pattern = "example.com/*", zone_name = "example.com" }]

[triggers]
crons = ["* * * * *"]

[vars]
GREETING = "hi"

[[d1_databases]]
binding = "DB"
database_name = "app-db"
database_id = "abc"
migrations_dir = "db/migrations"

[[kv_namespaces]]
binding = "CACHE"
id = "kv1"

[[r2_buckets]]
binding = "FILES"
bucket_name = "files"

[[vectorize]]
binding = "VEC"
index_name = "memory"

[durable_objects]
bindings = [{ name = "CHAT", class_name = "ChatRoom" }]

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatRoom"]

[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.consumers]]
queue = "jobs"
max_batch_size = 20
dead_letter_queue = "jobs-dlq"

[env.staging]
[[env.staging.d1_databases]]
binding = "DB"
database_name = "staging-db"
"""


def write(tmp_path: Path, text: str, name: str = "wrangler.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_section_is_read(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, FULL))
    assert project.name == "app"
    assert project.vars == {"GREETING": "hi"}
    db = project.d1_databases[0]
    assert (db.binding, db.name, db.migrations_dir) == ("DB", "app-db", "db/migrations")
    assert project.kv_namespaces[0].binding == "CACHE"
    assert project.r2_buckets[0].name == "files"
    assert project.vectorize[0].index_name == "memory"
    assert project.durable_objects[0].class_name == "ChatRoom"
    assert project.do_migrations[0].new_sqlite_classes == ["ChatRoom"]
    assert project.queue_producers[0].queue == "jobs"
    consumer = project.queue_consumers[0]
    assert (consumer.max_batch_size, consumer.max_retries, consumer.dead_letter_queue) == (
        20,
        3,
        "jobs-dlq",
    )
    assert project.binding_names() == ["DB", "CACHE", "FILES", "VEC", "CHAT", "JOBS"]


def test_environment_section_replaces_bindings(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, FULL), environment="staging")
    assert [d.name for d in project.d1_databases] == ["staging-db"]
    assert project.kv_namespaces == []
    with pytest.raises(ConfigError, match=r"no \[env.prod\]"):
        load_project(write(tmp_path, FULL), environment="prod")


def test_jsonc_with_comments_and_trailing_commas(tmp_path: Path) -> None:
    text = """{
      // the app
      "name": "app", /* block */
      "vars": {"URL": "https://example.com/a//b"},
      "d1_databases": [{"binding": "DB", "database_name": "x",},],
    }"""
    project = load_project(write(tmp_path, text, "wrangler.jsonc"))
    assert project.vars == {"URL": "https://example.com/a//b"}
    assert project.d1_databases[0].name == "x"


def test_strip_jsonc_keeps_strings() -> None:
    assert strip_jsonc('{"a": "/* no */ // no", } // yes') == '{"a": "/* no */ // no" } '


def test_folder_finds_the_config(tmp_path: Path) -> None:
    write(tmp_path, '{"name": "j"}', "wrangler.json")
    assert load_project(tmp_path).name == "j"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no wrangler\.toml"):
        load_project(tmp_path / "empty")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[d1_databases]]\ndatabase_name = 'x'",
            r"\[\[d1_databases\]\] entry 0: binding: Field required",
        ),
        ("kv_namespaces = 'x'", r"\[\[kv_namespaces\]\] must be a list"),
        ("kv_namespaces = [1]", r"\[\[kv_namespaces\]\] entry 0 must be a table"),
        (
            "[[queues.consumers]]\nqueue = 'q'\nmax_batch_size = 500",
            r"max_batch_size: Input should be less",
        ),
        (
            "[[r2_buckets]]\nbinding = 3",
            r"\[\[r2_buckets\]\] entry 0: binding: Input should be a valid string",
        ),
        ("vars = 3", r"\[vars\] must be a table"),
        ("name = ", "not valid TOML"),
    ],
)
def test_malformed_sections_name_the_file_and_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        load_project(path)
    assert str(path) in str(e.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_project(tmp_path / "nope.toml")


async def test_env_exposes_bindings_vars_and_dev_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[vars]\nA = "1"\nB = "2"\n[[d1_databases]]\nbinding = "DB"\n')
    (tmp_path / ".dev.vars").write_text('B="from dev vars"\nSECRET=s3cret\n# comment\n')
    monkeypatch.setenv("A", "from environment")
    async with open_env(path, state_dir=tmp_path / "state") as env:
        assert env.A == "from environment"
        assert env.B == "from dev vars"
        assert env["SECRET"] == "s3cret"
        assert "DB" in env and list(env) == ["DB"]
        assert await env.DB.prepare("SELECT 1 AS one").first("one") == 1
        with pytest.raises(AttributeError, match=r"no binding or var 'NOPE'.*bindings: DB"):
            _ = env.NOPE
    assert (tmp_path / "state" / "d1" / "DB.sqlite3").exists()


async def test_unknown_provider_and_options(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match="unknown provider 'cloud'"):
        async with open_env(path, provider="cloud"):
            pass
    with pytest.raises(ConfigError, match="unknown options bogus"):
        async with open_env(path, bogus=1):
            pass
