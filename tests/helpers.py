"""Helpers shared by tests in several folders: projects with the server's bindings, and
`flarebase dev` run in its own process.

    (folder / "wrangler.toml").write_text(wrangler_toml("my-test", {"AUTH_BCRYPT_ROUNDS": 4}))
    port = free_port()
    with (folder / "dev.log").open("wb") as log:
        proc = subprocess.Popen(dev_command(folder, port), stdout=log, stderr=log)
    wait_for_health(proc, f"http://127.0.0.1:{port}", folder / "dev.log")
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_MIGRATIONS = REPO / "src" / "flarebase" / "server" / "migrations"


def _toml(value: Any) -> str:
    """A [vars] value: str, number, bool, or a table of them (inline)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # a str, number or bool in JSON is one in TOML too


def wrangler_toml(
    name: str,
    vars: Mapping[str, Any],
    *,
    compatibility_date: str = "2025-09-29",
    compatibility_flags: Sequence[str] = (),
    database: str = "server",
    database_id: str = "00000000-0000-0000-0000-000000000000",
    migrations_dir: str | Path | None = SERVER_MIGRATIONS,
    kv_id: str = "server-kv",
    bucket: str = "server",
    index: str | None = "memory",
    more: str = "",
) -> str:
    """A wrangler.toml with the bindings the server uses: D1 `DB` (`database`, with the
    server's migrations unless `migrations_dir` says otherwise), KV `KV`, R2 `BUCKET`,
    Vectorize `MEMORY` (not with `index=None`), and the `CHAT_STREAMS` Durable Object with
    its migration. `more` is TOML added at the end (queues, ...)."""
    flags = json.dumps(list(compatibility_flags))
    variables = "".join(f"{k} = {_toml(v)}\n" for k, v in vars.items())
    migrations = "" if migrations_dir is None else Path(migrations_dir).as_posix()
    # Each optional piece is its lines and a newline, or nothing.
    flags_line = f"compatibility_flags = {flags}\n" if compatibility_flags else ""
    migrations_line = f'migrations_dir = "{migrations}"\n' if migrations else ""
    vectorize = f'\n[[vectorize]]\nbinding = "MEMORY"\nindex_name = "{index}"\n' if index else ""
    return f"""
name = "{name}"
compatibility_date = "{compatibility_date}"
{flags_line}
[vars]
{variables}
[[d1_databases]]
binding = "DB"
database_name = "{database}"
database_id = "{database_id}"
{migrations_line}
[[kv_namespaces]]
binding = "KV"
id = "{kv_id}"

[[r2_buckets]]
binding = "BUCKET"
bucket_name = "{bucket}"
{vectorize}
[[durable_objects.bindings]]
name = "CHAT_STREAMS"
class_name = "ChatStream"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatStream"]
{more}"""


# The chat backend with one binding of every kind (queue and consumer too), as the deploy
# targets read it.
CHAT_BACKEND = wrangler_toml(
    "chat-backend",
    {"MODEL": "gpt", "LIMITS": {"tokens": 1000, "strict": True}},
    compatibility_date="2025-06-01",
    compatibility_flags=["nodejs_compat"],
    database="app",
    database_id="11111111-2222-3333-4444-555555555555",
    migrations_dir="migrations",
    kv_id="0123456789abcdef",
    bucket="files",
    more="""
[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.consumers]]
queue = "jobs"
max_batch_size = 5
max_retries = 2
dead_letter_queue = "jobs-dlq"
""",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_command(folder: Path, port: int, *args: str) -> list[str]:
    """`flarebase dev` on `folder`'s wrangler.toml, with its state in `folder`/state."""
    return [
        sys.executable, "-c", "from flarebase.cli import main; main()", "dev",
        "--config", str(folder / "wrangler.toml"), "--state-dir", str(folder / "state"),
        "--port", str(port), *args,
    ]  # fmt: skip


def wait_for_health(
    proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 120.0
) -> None:
    """Until `flarebase dev` (`proc`) answers on `base`/api/health. The test fails, with
    the end of the server's `log` file, if it exits first or does not answer in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            output = log.read_text(encoding="utf-8", errors="replace")[-4000:]
            pytest.fail(f"flarebase dev exited with {proc.returncode}:\n{output}")
        if time.monotonic() > deadline:
            output = log.read_text(encoding="utf-8", errors="replace")[-4000:]
            pytest.fail(f"flarebase dev did not answer in {timeout} s:\n{output}")
        time.sleep(0.1)
