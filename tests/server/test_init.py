"""`flarebase init DIR`: the scaffolded project has every binding, the server's
migrations, every setting documented, a fresh secret, and it runs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flarebase.cli import app as cli
from flarebase.platform import load_project, open_env
from flarebase.platform.env import parse_dotenv
from flarebase.platform.migrations import apply_migrations
from flarebase.server import create_app, durable_objects
from flarebase.server.scaffold import ScaffoldError, env_example, scaffold, setting_docs
from flarebase.server.settings import Settings

from .conftest import PASSWORD, SERVER_MIGRATIONS

ROOT_WRANGLER = Path(__file__).parents[2] / "wrangler.toml"


def test_scaffold_writes_the_project(tmp_path: Path) -> None:
    folder = tmp_path / "My Backend"
    created = scaffold(folder)
    names = {p.relative_to(folder).as_posix() for p in created}
    server_migrations = sorted(p.name for p in SERVER_MIGRATIONS.glob("*.sql"))
    assert names == {"wrangler.toml", ".env.example", ".dev.vars", ".gitignore"} | {
        f"migrations/{m}" for m in server_migrations
    }
    for name in server_migrations:
        assert (folder / "migrations" / name).read_bytes() == (
            SERVER_MIGRATIONS / name
        ).read_bytes()
    project = load_project(folder / "wrangler.toml")
    assert project.name == "my-backend"
    assert project.d1_databases[0].migrations_dir == "migrations"
    ignored = (folder / ".gitignore").read_text().splitlines()
    assert ".dev.vars" in ignored and ".flarebase/" in ignored


def test_wrangler_toml_mirrors_the_servers_own(tmp_path: Path) -> None:
    scaffold(tmp_path)
    ours, root = load_project(tmp_path / "wrangler.toml"), load_project(ROOT_WRANGLER)
    assert set(root.binding_names()) <= set(ours.binding_names())
    assert {(d.name, d.class_name) for d in ours.durable_objects} == {
        (d.name, d.class_name) for d in root.durable_objects
    }

    def classes(project: object) -> set[str]:
        return {c for m in project.do_migrations for c in m.new_classes + m.new_sqlite_classes}  # type: ignore[attr-defined]

    assert classes(ours) == classes(root)
    assert {q.binding for q in ours.queue_producers} == {q.binding for q in root.queue_producers}
    assert len(ours.queue_consumers) == len(root.queue_consumers)
    # Its [vars] are valid settings, and turn the per-IP limit on.
    assert Settings.from_env(ours.vars).quota_ip_requests > 0


def test_env_example_lists_every_setting_with_its_default(tmp_path: Path) -> None:
    scaffold(tmp_path)
    text = (tmp_path / ".env.example").read_text()
    assert text == env_example()
    example = tmp_path / ".env.example"
    values = parse_dotenv(example)
    for name, info in Settings.model_fields.items():
        alias = info.alias or name
        if info.default is None:
            assert f"# {alias}=" in text.splitlines(), alias
        else:
            assert alias in values, alias
    # The listed values are the defaults: reading them changes nothing.
    assert Settings.from_env(values) == Settings()
    docs = setting_docs()
    assert {d.name for d in docs} == {i.alias for i in Settings.model_fields.values()}
    for doc in docs:
        assert len(doc.description) > 10, f"{doc.name} has no description"
    # Each description is printed above its setting (or its group).
    assert "# Largest file accepted by POST /api/files/upload" in text
    assert text.index("Largest file accepted") < text.index("UPLOAD_MAX_BYTES=5242880")


def test_dev_vars_has_a_fresh_private_secret(tmp_path: Path) -> None:
    scaffold(tmp_path / "a")
    scaffold(tmp_path / "b")
    first = parse_dotenv(tmp_path / "a" / ".dev.vars")["AUTH_SECRET"]
    second = parse_dotenv(tmp_path / "b" / ".dev.vars")["AUTH_SECRET"]
    assert first != second and len(first) >= 40
    assert Settings.from_env({"AUTH_SECRET": first}).auth_secrets == (first,)
    mode = stat.S_IMODE((tmp_path / "a" / ".dev.vars").stat().st_mode)
    assert mode == 0o600


def test_existing_files_are_never_overwritten_without_force(tmp_path: Path) -> None:
    (tmp_path / "wrangler.toml").write_text("mine")
    with pytest.raises(ScaffoldError, match=r"wrangler\.toml"):
        scaffold(tmp_path)
    assert (tmp_path / "wrangler.toml").read_text() == "mine"
    assert not (tmp_path / ".dev.vars").exists()  # nothing written at all
    scaffold(tmp_path, force=True)
    assert (tmp_path / "wrangler.toml").read_text() != "mine"
    with pytest.raises(ScaffoldError, match="invalid name"):
        scaffold(tmp_path / "x", name="Not A Name")


def test_the_scaffolded_project_runs(tmp_path: Path) -> None:
    scaffold(tmp_path, name="demo")
    with start_blocking_portal() as portal:
        opened = open_env(
            tmp_path / "wrangler.toml",
            state_dir=tmp_path / ".flarebase",
            durable_objects=durable_objects(),
        )
        with portal.wrap_async_context_manager(opened) as env:
            folder = tmp_path / env.project.d1_databases[0].migrations_dir
            applied = portal.call(apply_migrations, env.DB, folder)
            assert applied == sorted(p.name for p in SERVER_MIGRATIONS.glob("*.sql"))
            client = TestClient(create_app(env))  # settings from [vars] and .dev.vars
            client.portal = portal  # type: ignore[assignment]
            health = client.get("/api/health").json()
            assert {"DB", "KV", "BUCKET"} <= set(health["bindings"])
            r = client.post(
                "/api/auth/signup", json={"email": "new@example.com", "password": PASSWORD}
            )
            assert r.status_code == 201
            assert client.app.state.settings.quota_ip_requests == 600  # type: ignore[attr-defined]


def test_cli_init(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["init", str(tmp_path / "proj"), "--name", "proj"])
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "wrangler.toml" in result.output
    assert load_project(tmp_path / "proj" / "wrangler.toml").name == "proj"
    again = runner.invoke(cli, ["init", str(tmp_path / "proj")])
    assert again.exit_code == 1 and "would overwrite" in again.output
