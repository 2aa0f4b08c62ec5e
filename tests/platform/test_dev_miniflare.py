"""`flarebase dev --provider miniflare`: the API served with Miniflare behind D1, KV, R2
and queue producers, and the local provider behind Vectorize and Durable Objects.

One real `flarebase dev` process (Miniflare takes seconds to start) serves every test
here, on a free port; the tests talk HTTP to it and read Miniflare's own files (its D1
is SQLite under <state>/miniflare/d1) to show the data is there and not in the local
provider's files. Stopping it (Ctrl+C) must take Miniflare down with it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flarebase.platform.bridge.miniflare import bridge_dir

from ..helpers import SERVER_MIGRATIONS, dev_command, free_port, wait_for_health, wrangler_toml

SECRET = "test-secret-0123456789abcdefghijklmnop"

QUEUES = """
[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.producers]]
binding = "EVENTS"
queue = "events"

# A queue with a consumer stays local: its consumer is Python.
[[queues.consumers]]
queue = "events"
"""
WRANGLER = wrangler_toml(
    "flarebase-miniflare-dev-test",
    {"AUTH_SECRET": SECRET, "AUTH_BCRYPT_ROUNDS": 4},
    bucket="server-files",
    more=QUEUES,
)


@dataclass
class Dev:
    base: str
    folder: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def miniflare_d1(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from Miniflare's own D1 file (read-only, beside the running Miniflare)."""
        folder = self.state / "miniflare" / "d1" / "miniflare-D1DatabaseObject"
        files = [p for p in folder.glob("*.sqlite") if p.name != "metadata.sqlite"]
        assert len(files) == 1, f"expected one D1 database in {folder}: {files}"
        with sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True) as db:
            return db.execute(sql, params).fetchall()


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc), e.g. serve.mjs's node."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(p) for p in text.split()]
    return found


def stop(dev: Dev) -> None:
    """Ctrl+C: the server shuts down cleanly (status 130, as after any Ctrl+C; no
    traceback) and stops Miniflare (its node child) too."""
    nodes = children(dev.proc.pid)
    assert nodes, "no Miniflare (node) process under flarebase dev"
    dev.proc.send_signal(signal.SIGINT)
    try:
        code = dev.proc.wait(30)
    except subprocess.TimeoutExpired:
        dev.proc.kill()
        raise
    assert code == 130 and "Traceback" not in dev.log(), dev.log()[-4000:]
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in nodes):
        assert time.monotonic() < deadline, f"Miniflare outlived flarebase dev: {nodes}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    if shutil.which("node") is None or not (bridge_dir() / "node_modules" / "miniflare").exists():
        pytest.fail("needs node and Miniflare in bridge/node_modules: scripts/bootstrap --node")
    folder = tmp_path_factory.mktemp("miniflare-dev")
    (folder / "wrangler.toml").write_text(WRANGLER, encoding="utf-8")
    port = free_port()
    command = dev_command(folder, port, "--provider", "miniflare")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("FLAREBASE_BRIDGE_URL", None)
    log_path = folder / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Dev(f"http://127.0.0.1:{port}", folder, proc, log_path)
    try:
        wait_for_health(proc, server.base, log_path)
        yield server
        stop(server)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def guest(dev: Dev) -> tuple[str, dict[str, str]]:
    r = httpx.post(f"{dev.base}/api/auth/guest", timeout=30)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["user"]["id"], {"Authorization": f"Bearer {body['token']}"}


# -- tests --------------------------------------------------------------------------------------


def test_health_and_which_provider_stands_behind_each_binding(dev: Dev) -> None:
    r = httpx.get(f"{dev.base}/api/health")
    assert r.json() == {
        "ok": True,
        "bindings": ["BUCKET", "CHAT_STREAMS", "DB", "EVENTS", "JOBS", "KV", "MEMORY"],
    }
    rows = {
        cells[0]: cells[-1]
        for line in dev.log().splitlines()
        if line.startswith("│")
        and len(cells := [c.strip() for c in line.strip("│").split("│")]) == 4
    }
    assert rows["DB"] == rows["KV"] == rows["BUCKET"] == rows["JOBS"] == "bridge", rows
    assert rows["MEMORY"] == rows["CHAT_STREAMS"] == rows["EVENTS"] == "local", rows
    assert "applied 0001_accounts.sql" in dev.log()


def test_a_guest_is_written_to_miniflares_d1_not_the_local_one(dev: Dev) -> None:
    user_id, headers = guest(dev)
    session = httpx.get(f"{dev.base}/api/auth/session", headers=headers).json()
    assert session["user"]["id"] == user_id
    assert dev.miniflare_d1("SELECT type FROM users WHERE id = ?", user_id) == [("guest",)]
    # The migrations ran on Miniflare's D1 too, recorded as wrangler records them.
    names = [name for (name,) in dev.miniflare_d1("SELECT name FROM d1_migrations ORDER BY id")]
    assert names[0] == "0001_accounts.sql" and len(names) == len(
        list(SERVER_MIGRATIONS.glob("*.sql"))
    )
    assert not (dev.state / "d1").exists()  # the local provider's D1 was never opened
    assert not (dev.state / "kv").exists() and not (dev.state / "r2").exists()


def test_a_chat_round_trip_runs_the_local_durable_object_against_miniflare(dev: Dev) -> None:
    _, headers = guest(dev)
    chat_id, text = f"c-{uuid.uuid4().hex[:8]}", "hello from miniflare"
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    body = {"id": chat_id, "messages": [message], "trigger": "submit-message"}
    r = httpx.post(f"{dev.base}/api/chat", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    data = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == text

    saved = httpx.get(f"{dev.base}/api/messages", params={"chatId": chat_id}, headers=headers)
    assert [m["role"] for m in saved.json()["messages"]] == ["user", "assistant"]
    # The assistant's message was saved by ChatStream (local) into D1 (Miniflare).
    rows = dev.miniflare_d1("SELECT role FROM messages WHERE chat_id = ? ORDER BY rowid", chat_id)
    assert rows == [("user",), ("assistant",)]
    assert list((dev.state / "do" / "ChatStream").glob("*.sqlite3"))  # the object's storage
    assert (dev.state / "vectorize" / "memory").is_dir()  # created at start, locally
