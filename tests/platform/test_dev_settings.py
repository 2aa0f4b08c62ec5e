"""`flarebase dev` checks the server's settings before it serves: a ConfigError is one
red line and exit status 1, not a traceback (and, on Miniflare, not after seconds of
starting it). Each case runs the real command in its own process, with a timeout, so
that a server that starts anyway fails the test instead of hanging it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ..helpers import SERVER_MIGRATIONS, dev_command, free_port

WRANGLER = f"""
name = "flarebase-settings-test"
compatibility_date = "2025-09-29"

[vars]
{{vars}}

[[d1_databases]]
binding = "DB"
database_name = "server"
database_id = "local"
migrations_dir = "{SERVER_MIGRATIONS.as_posix()}"

[[kv_namespaces]]
binding = "KV"
id = "server-kv"

[[vectorize]]
binding = "MEMORY"
index_name = "memory"
"""


def run_dev(folder: Path, vars: str, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "wrangler.toml").write_text(WRANGLER.format(vars=vars), encoding="utf-8")
    command = dev_command(folder, free_port(), *args)
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH_SECRET", "OPENAI_API_KEY")}
    env |= {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("provider", ["local", "miniflare"])
def test_no_auth_secret_is_one_line_and_exit_status_1(tmp_path: Path, provider: str) -> None:
    done = run_dev(tmp_path, "AUTH_BCRYPT_ROUNDS = 4", "--provider", provider)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("error: AUTH_SECRET is not set"), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()  # checked before any binding opened


def test_an_invalid_setting_is_named(tmp_path: Path) -> None:
    vars = 'AUTH_SECRET = "test-secret-0123456789abcdefghijklmnop"\nAUTH_BCRYPT_ROUNDS = 99'
    done = run_dev(tmp_path, vars)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: invalid settings: AUTH_BCRYPT_ROUNDS" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_config_error_at_start_up_is_one_line_too(tmp_path: Path) -> None:
    # Valid settings, but the embedder cannot be built: the app's start-up (memory)
    # raises ConfigError, which must end the command, not leave uvicorn's traceback.
    vars = (
        'AUTH_SECRET = "test-secret-0123456789abcdefghijklmnop"\n'
        'MEMORY_EMBEDDINGS = "openai"\nMEMORY_EMBEDDING_MODEL = "text-embedding-3-small"'
    )
    done = run_dev(tmp_path, vars)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: MEMORY_EMBEDDINGS=openai: openai embeddings need an API key" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "Uvicorn running" not in done.stderr


def test_no_serve_sets_up_without_the_servers_settings(tmp_path: Path) -> None:
    done = run_dev(tmp_path, "AUTH_BCRYPT_ROUNDS = 4", "--no-serve")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DB: applied 0001_accounts.sql" in done.stdout
