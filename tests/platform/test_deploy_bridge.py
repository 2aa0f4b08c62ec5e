"""`flarebase deploy --target bridge`: the bridge Worker with the project's bindings.

The dry run is real: bridge/'s wrangler 4.86.0 bundles the generated Worker offline
(`wrangler deploy --dry-run --outdir dist`), and the test reads what it produced --
the bundle and the generated wrangler.toml -- and what wrangler says it would bind.
A real deploy needs a Cloudflare account, so only its command is checked.
"""

from __future__ import annotations

import json
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flarebase.cli import app
from flarebase.deploy import plan_bridge
from flarebase.deploy.bridge import secrets_file
from flarebase.platform import ConfigError, load_project
from flarebase.platform.bridge.miniflare import bridge_dir

from ..helpers import CHAT_BACKEND

SECRET = "bridge-secret-0123456789abcdefghij"
BRIDGE = bridge_dir()

PROJECT = CHAT_BACKEND

ONLY_OBJECTS = """
name = "objects-only"
compatibility_date = "2025-09-29"

[[durable_objects.bindings]]
name = "CHAT_STREAMS"
class_name = "ChatStream"
"""


@pytest.fixture(autouse=True)
def wrangler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAREBASE_BRIDGE_SECRET", raising=False)
    monkeypatch.setenv("WRANGLER_SEND_METRICS", "false")
    monkeypatch.setenv("NO_COLOR", "1")


def needs_wrangler() -> None:
    """Fail (not skip): without wrangler nothing here is checked."""
    script = BRIDGE / "node_modules" / "wrangler" / "bin" / "wrangler.js"
    if shutil.which("node") is None or not script.exists():
        pytest.fail("needs node and wrangler in bridge/node_modules: scripts/bootstrap --node")


def write_project(folder: Path, text: str = PROJECT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wrangler.toml").write_text(text, encoding="utf-8")
    return folder / "wrangler.toml"


def deploy(*args: str) -> Any:
    return CliRunner().invoke(app, ["deploy", "--target", "bridge", *args])


# -- the dry run, through wrangler --------------------------------------------------------------


def test_dry_run_bundles_the_bridge_with_the_projects_bindings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    needs_wrangler()
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", SECRET)
    config, out = write_project(tmp_path / "app"), tmp_path / "out"
    result = deploy("--config", str(config), "--out", str(out), "--dry-run")
    wrangler_said = capfd.readouterr().out
    assert result.exit_code == 0, result.output + wrangler_said

    bundle = out / "dist" / "index.js"
    assert bundle.is_file()
    code = bundle.read_text(encoding="utf-8")
    for marker in ("FLAREBASE-HMAC-SHA256", "async function authenticate(", "FlarebaseLedger"):
        assert marker in code

    generated = tomllib.loads((out / "wrangler.toml").read_text(encoding="utf-8"))
    project = tomllib.loads(config.read_text(encoding="utf-8"))
    assert generated["name"] == "chat-backend-bridge"
    main = out / generated["main"]
    assert main.read_text(encoding="utf-8") == (BRIDGE / "src" / "index.js").read_text("utf-8")
    db = {k: v for k, v in project["d1_databases"][0].items() if k != "migrations_dir"}
    assert generated["d1_databases"] == [db]
    for section in ("kv_namespaces", "r2_buckets", "vectorize"):
        assert generated[section] == project[section]
    assert generated["queues"] == {"producers": project["queues"]["producers"]}

    template = tomllib.loads((BRIDGE / "wrangler.toml").read_text(encoding="utf-8"))
    # The bridge's own objects and vars, not the project's Durable Objects or [vars].
    assert generated["durable_objects"] == template["durable_objects"]
    assert generated["migrations"] == template["migrations"]
    assert generated["vars"] == template["vars"]
    assert generated["compatibility_date"] == template["compatibility_date"]

    # wrangler read the same bindings, and the secret through --secrets-file.
    for line in (
        "env.DB (app)",
        "env.KV (0123456789abcdef)",
        "env.BUCKET (files)",
        "env.MEMORY (memory)",
        "env.JOBS (jobs)",
        'env.BRIDGE_SECRET ("(hidden)")',
        "env.BRIDGE_LEDGER (FlarebaseLedger)",
    ):
        assert line in wrangler_said, wrangler_said
    assert "CHAT_STREAMS" not in wrangler_said
    # The secret is never written beside the Worker, nor printed.
    written = [p for p in out.rglob("*") if p.is_file() and ".wrangler" not in p.parts]
    assert not [p for p in written if SECRET in p.read_text(encoding="utf-8", errors="ignore")]
    assert SECRET not in result.output + wrangler_said


def test_the_repositorys_own_config_dry_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_wrangler()
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", SECRET)
    repo_config = Path(__file__).resolve().parents[2] / "wrangler.toml"
    result = deploy("--config", str(repo_config), "--out", str(tmp_path), "--dry-run")
    assert result.exit_code == 0, result.output
    generated = load_project(tmp_path / "wrangler.toml")
    own = load_project(repo_config)
    assert [s.binding for s in generated.d1_databases] == ["DB"]
    assert generated.d1_databases[0].database_id == own.d1_databases[0].database_id
    assert generated.kv_namespaces == own.kv_namespaces
    assert generated.r2_buckets == own.r2_buckets
    assert generated.vectorize == own.vectorize
    assert (tmp_path / "dist" / "index.js").is_file()


def test_a_failing_wrangler_is_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    needs_wrangler()
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", SECRET)
    bad = PROJECT.replace('bucket_name = "files"', 'bucket_name = "Not_A_Bucket!"')
    config = write_project(tmp_path / "app", bad)
    result = deploy("--config", str(config), "--out", str(tmp_path / "out"), "--dry-run")
    assert result.exit_code == 1
    assert "wrangler deploy --dry-run failed (exit status 1)" in result.output
    said = capfd.readouterr()
    assert "Bucket names must begin and end with an alphanumeric" in said.out + said.err


# -- errors before wrangler runs ----------------------------------------------------------------


def test_no_secret_is_exit_status_1(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    result = deploy("--config", str(config), "--dry-run")
    assert result.exit_code == 1
    assert "no bridge secret: set $FLAREBASE_BRIDGE_SECRET" in result.output
    assert not (tmp_path / ".flarebase").exists()  # nothing written


def test_a_short_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", "too-short")
    result = deploy("--config", str(write_project(tmp_path)), "--dry-run")
    assert result.exit_code == 1
    assert "FLAREBASE_BRIDGE_SECRET has 9 characters" in result.output


def test_the_secret_may_come_from_dev_vars(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    (tmp_path / ".dev.vars").write_text(
        f"AUTH_SECRET=other\nFLAREBASE_BRIDGE_SECRET={SECRET}\n", encoding="utf-8"
    )
    assert plan_bridge(config).secret == SECRET


def test_the_environment_wins_over_dev_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_project(tmp_path)
    (tmp_path / ".dev.vars").write_text("FLAREBASE_BRIDGE_SECRET=from-dev-vars-0123456789\n")
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", SECRET)
    assert plan_bridge(config).secret == SECRET


def test_a_project_without_bindings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAREBASE_BRIDGE_SECRET", SECRET)
    result = deploy("--config", str(write_project(tmp_path, ONLY_OBJECTS)), "--dry-run")
    assert result.exit_code == 1
    assert "no D1, KV, R2, Vectorize or queue producer bindings" in result.output


def test_binding_names_of_the_bridge_itself_are_refused(tmp_path: Path) -> None:
    clash = PROJECT.replace('binding = "KV"', 'binding = "BRIDGE_LEDGER"')
    with pytest.raises(ConfigError, match="BRIDGE_LEDGER: the bridge's own binding names"):
        plan_bridge(write_project(tmp_path, clash), secret=SECRET)


def test_an_unknown_target_is_exit_status_1(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    result = CliRunner().invoke(app, ["deploy", "--target", "lambda", "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown target 'lambda'; known: python-worker, bridge" in result.output


def test_consumers_are_for_the_python_worker(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    result = deploy("--config", str(config), "--consumer", "jobs=app:handle")
    assert result.exit_code == 1 and "--consumer is for --target python-worker" in result.output


# -- the real deploy's command and secret --------------------------------------------------------


def test_a_real_deploy_uploads_the_secret_with_the_worker(tmp_path: Path) -> None:
    needs_wrangler()
    plan = plan_bridge(write_project(tmp_path), secret=SECRET)
    command = plan.command(secrets_file="/tmp/s.json")
    assert command[2:] == ["deploy", "--config", "wrangler.toml", "--secrets-file", "/tmp/s.json"]
    assert command[1] == str(BRIDGE / "node_modules" / "wrangler" / "bin" / "wrangler.js")
    assert SECRET not in repr(plan) and SECRET not in plan.describe()


def test_the_secrets_file_is_private_and_removed() -> None:
    with secrets_file(SECRET) as path:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(path).parent.stat().st_mode) == 0o700
        assert json.loads(Path(path).read_text()) == {"BRIDGE_SECRET": SECRET}
    assert not Path(path).exists() and not Path(path).parent.exists()
