"""`flarebase vectorize|queues|do`: the CLI over the local provider's stored state."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flarebase.cli import app
from flarebase.platform import open_env
from flarebase.platform.durable_objects import DurableObject

CONFIG = """name = "s"
[[vectorize]]
binding = "VEC"
index_name = "memory"

[durable_objects]
bindings = [{ name = "COUNTERS", class_name = "Counter" }]

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]

[[queues.producers]]
binding = "JOBS"
queue = "jobs"
"""


class Counter(DurableObject):
    async def bump(self) -> int:
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS c (n INTEGER)")
        self.ctx.storage.sql.exec("INSERT INTO c VALUES (1)")
        return int(self.ctx.storage.sql.exec("SELECT count(*) AS n FROM c").one()["n"])


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_vectorize_commands(tmp_path: Path) -> None:
    config = tmp_path / "wrangler.toml"
    config.write_text(CONFIG)
    c = ["-c", str(config)]
    assert "created index memory (3 dimensions, cosine)" in invoke(
        "vectorize", "create", "memory", "--dimensions", "3", "--metric", "cosine", *c
    )
    assert "memory" in invoke("vectorize", "list", *c)
    invoke(
        "vectorize",
        "create-metadata-index",
        "memory",
        "--property-name",
        "user",
        "--type",
        "string",
        *c,
    )
    assert "user" in invoke("vectorize", "list-metadata-index", "memory", *c)
    bad = CliRunner().invoke(
        app, ["vectorize", "create", "x", "--dimensions", "5000", "--metric", "cosine", *c]
    )
    assert bad.exit_code == 1 and "error" in bad.output
    assert (tmp_path / ".flarebase/state/vectorize/memory").is_dir()
    invoke("vectorize", "delete", "memory", *c)
    assert "memory" not in invoke("vectorize", "list", *c)


async def test_queue_and_object_commands(tmp_path: Path) -> None:
    config = tmp_path / "wrangler.toml"
    config.write_text(CONFIG)
    c = ["-c", str(config)]
    async with open_env(config, durable_objects={"Counter": Counter}) as env:
        await env.JOBS.send({"n": 1})
        await env.JOBS.send({"n": 2})
        stub = env.COUNTERS.get(env.COUNTERS.id_from_name("alpha"))
        assert await stub.bump() == 1
    listed = invoke("queues", "list", *c)
    assert "jobs" in listed and "2" in listed
    peeked = invoke("queues", "peek", "jobs", *c)
    assert '"body": {"n": 1}' in peeked and '"body": {"n": 2}' in peeked
    objects = invoke("do", "list", *c)
    assert "Counter" in objects and "alpha" in objects
    assert "purged 2 message(s)" in invoke("queues", "purge", "jobs", *c)
    assert invoke("queues", "peek", "jobs", *c).strip() == ""


def test_vectorize_commands_with_a_relative_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Index files are opened read-only through an SQLite URI, which needs an absolute path.
    (tmp_path / "wrangler.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    c = ["-c", "wrangler.toml", "--state-dir", "state"]
    invoke("vectorize", "create", "memory", "--dimensions", "3", "--metric", "cosine", *c)
    assert "memory" in invoke("vectorize", "list", *c)
    invoke(
        "vectorize",
        "create-metadata-index",
        "memory",
        "--property-name",
        "u",
        "--type",
        "string",
        *c,
    )
    assert "u" in invoke("vectorize", "list-metadata-index", "memory", *c)
    invoke("vectorize", "delete", "memory", *c)
    assert "memory" not in invoke("vectorize", "list", *c)
    assert not (tmp_path / "state/vectorize/memory").exists()
