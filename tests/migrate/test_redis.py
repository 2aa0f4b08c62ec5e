"""Redis -> KV and D1 against a real redis-server (started here): every data type, TTLs
and their policy, resumable-stream keys, Upstash's REST API (a fake in front of the same
server), verification that catches changes, and kill -9 in the middle."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from flarebase.migrate.redis_rules import RulesError, glob_regex, parse_rules
from flarebase.platform import open_env

from .conftest import FLAREBASE, Project

RULES = """
[defaults]
kv = "CACHE"
d1 = "DB"

[[rules]]
match = "user:*"
type = "hash"
to = "d1"
table = "users"
strip = "user:"
key_column = "id"
columns = ["name", "age"]
types = { age = "integer" }

[[rules]]
match = "profile:*"
type = "hash"
to = "kv"
prefix = "p/"
strip = "profile:"

[[rules]]
match = "chat:*:messages"
type = "list"
to = "d1"
table = "messages"

[[rules]]
match = "tags:*"
type = "set"
to = "d1"
table = "tags"

[[rules]]
match = "board:*"
type = "zset"
to = "d1"
table = "scores"

[[rules]]
match = "events:*"
type = "stream"
to = "d1"
table = "events"

[[rules]]
match = "short:skip:*"
to = "kv"
ttl_under_minimum = "skip"

[[rules]]
match = "short:drop:*"
to = "kv"
ttl_under_minimum = "drop-ttl"

[[rules]]
match = "tmp:*"
to = "skip"

[[rules]]
match = "*"
type = ["string", "json"]
to = "kv"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def client(port: int, db: int) -> redis_py.Redis:
    r = redis_py.Redis(port=port, db=db)
    r.flushdb()
    return r


def make_project(root: Path) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wrangler.toml").write_text(
        """name = "redis-test"
compatibility_date = "2025-09-29"
[[d1_databases]]
binding = "DB"
database_name = "app"
database_id = "00000000-0000-0000-0000-000000000000"
[[kv_namespaces]]
binding = "CACHE"
id = "cache"
""",
        encoding="utf-8",
    )
    (root / "rules.toml").write_text(RULES, encoding="utf-8")
    return Project(root, root / "migrations")


def fill(r: redis_py.Redis) -> None:
    r.hset("user:1", mapping={"name": "Ann", "age": "42", "city": "Oslo"})
    r.hset("user:2", mapping={"name": "Ben", "age": "007"})  # not an exact integer: kept
    r.hset("profile:ann", mapping={"theme": "dark", "lang": "nb"})
    r.rpush("chat:1:messages", "hi", "how are you?", "💬", b"\xff\x00binary")
    r.sadd("tags:1", "a", "b", "c")
    r.zadd("board:1", {"ann": 3, "ben": 2.5})
    r.xadd("events:1", {"kind": "login", "user": "ann"}, id="1-1")
    r.xadd("events:1", {"kind": "logout"}, id="2-0")
    r.set("greeting", "hello")
    r.set("blob", bytes(range(256)))
    r.set("doc", json.dumps({"a": [1, 2, {"b": None}]}))
    r.set("session:long", "s1", ex=1000)
    r.set("session:short", "s2", ex=20)  # extended to 60 s (the default policy)
    r.set("short:skip:1", "x", ex=20)
    r.set("short:drop:1", "y", ex=20)
    r.set("tmp:1", "scratch")
    r.set("resumable-stream:rs:sentinel:abc", "1", ex=3600)
    r.set("my-app:rs:sentinel:def", "DONE")  # another prefix: not resumable-stream's default
    r.pfadd("visitors", "a")  # a string underneath: goes to KV by the catch-all rule
    r.sadd("orphans:1", "x")  # a set no rule takes


async def kv_state(project: Project) -> dict[str, tuple[bytes, int | None]]:
    async with open_env(project.config, state_dir=project.state) as env:
        out = {}
        cursor = None
        while True:
            listed = await env.CACHE.list(cursor=cursor)
            for key in listed.keys:
                out[key.name] = (await env.CACHE.get(key.name, "arrayBuffer"), key.expiration)
            if listed.list_complete:
                return out
            cursor = listed.cursor


def report(project: Project, name: str = "r.json") -> dict[str, Any]:
    return json.loads((project.root / name).read_text())


def migrate(project: Project, port: int, db: int, *args: str, code: int = 0) -> Any:
    url = f"redis://127.0.0.1:{port}/{db}"
    return project.migrate(
        "redis",
        url,
        "--rules",
        str(project.root / "rules.toml"),
        "--report",
        "r.json",
        *args,
        code=code,
    )


def test_every_type_ttls_and_skipped_keys(redis_port: int, tmp_path: Path) -> None:
    r = client(redis_port, 1)
    fill(r)
    project = make_project(tmp_path / "p")
    started = time.time()
    migrate(project, redis_port, 1)
    data = report(project)
    assert data["status"] == "verified", data["verification"]
    checks = {c["table"]: c for c in data["verification"]["tables"]}
    assert checks["D1 DB.messages"]["source_rows"] == 4
    assert checks["KV CACHE"]["target_rows"] == checks["KV CACHE"]["source_rows"] >= 7
    issues = {i["object"]: i["reason"] for i in data["issues"]}
    assert "resumable-stream:rs:sentinel:abc" in issues["resumable-stream keys"]
    assert "orphans:1" in issues["keys without a rule"]
    assert any("extended to 60 s" in reason for reason in issues.values())
    assert any("skipped" in reason and "short:skip:1" in reason for reason in issues.values())

    assert project.sql("SELECT id, name, age, extra FROM users ORDER BY id") == [
        ("1", "Ann", 42, '{"city":"Oslo"}'),
        ("2", "Ben", "007", None),
    ]
    assert project.sql("SELECT key, idx, value FROM messages ORDER BY idx") == [
        ("chat:1:messages", 0, "hi"),
        ("chat:1:messages", 1, "how are you?"),
        ("chat:1:messages", 2, "💬"),
        ("chat:1:messages", 3, b"\xff\x00binary"),
    ]
    assert project.sql("SELECT member FROM tags ORDER BY member") == [("a",), ("b",), ("c",)]
    assert project.sql("SELECT member, score FROM scores ORDER BY member") == [
        ("ann", 3.0),
        ("ben", 2.5),
    ]
    assert project.sql("SELECT id, fields FROM events ORDER BY id") == [
        ("1-1", '{"kind":"login","user":"ann"}'),
        ("2-0", '{"kind":"logout"}'),
    ]
    assert project.sql("SELECT count(*) FROM users WHERE expires_at IS NULL") == [(2,)]

    kv = asyncio.run(kv_state(project))
    assert kv["greeting"] == (b"hello", None)
    assert kv["blob"][0] == bytes(range(256))
    assert json.loads(kv["doc"][0]) == {"a": [1, 2, {"b": None}]}
    assert json.loads(kv["p/ann"][0]) == {"lang": "nb", "theme": "dark"}
    long_at = kv["session:long"][1]
    assert long_at is not None and abs(long_at - (started + 1000)) <= 3  # TTL kept
    short_at = kv["session:short"][1]
    assert short_at is not None and short_at >= started + 60  # extended to KV's minimum
    assert kv["short:drop:1"] == (b"y", None)  # drop-ttl: no expiry
    assert "short:skip:1" not in kv and "tmp:1" not in kv
    assert "resumable-stream:rs:sentinel:abc" not in kv
    assert kv["my-app:rs:sentinel:def"] == (b"DONE", None)
    assert "visitors" in kv

    # The same command again: nothing left to do, verified again.
    migrate(project, redis_port, 1)
    again = report(project)
    assert again["status"] == "verified" and again["rows_copied_this_run"] == 0

    # Change the target behind the migration's back: verify names what differs.
    project_sql_write(project, "UPDATE users SET name = 'Eve' WHERE id = '1'")

    async def tamper() -> None:
        async with open_env(project.config, state_dir=project.state) as env:
            await env.CACHE.put("greeting", "HELLO")

    asyncio.run(tamper())
    url = f"redis://127.0.0.1:{redis_port}/1"
    result = project.cli(
        "migrate",
        "verify",
        url,
        "--rules",
        str(project.root / "rules.toml"),
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--report",
        "v.json",
        code=1,
    )
    assert "DIFFERENT" in result.output
    checks = {c["table"]: c for c in report(project, "v.json")["verification"]["tables"]}
    assert (
        not checks["D1 DB.users"]["ok"] and checks["D1 DB.users"]["differences"][0]["key"] == "'1'"
    )
    assert [d["key"] for d in checks["KV CACHE"]["differences"]] == ["greeting"]
    assert checks["D1 DB.messages"]["ok"]


def project_sql_write(project: Project, sql: str) -> None:
    import sqlite3

    conn = sqlite3.connect(project.database)
    conn.execute(sql)
    conn.commit()
    conn.close()


class FakeUpstash(BaseHTTPRequestHandler):
    """A *fake* Upstash Redis REST endpoint: `POST /pipeline` with a bearer token and
    `Upstash-Encoding: base64`, each command run on the real redis-server behind it."""

    redis: redis_py.Redis
    token = "test-token"

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_error(401)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        encode = self.headers.get("Upstash-Encoding") == "base64"
        answers = []
        for command in body if self.path == "/pipeline" else [body]:
            try:
                answers.append(
                    {"result": self._encode(self.redis.execute_command(*command), encode)}
                )
            except redis_py.ResponseError as e:
                answers.append({"error": str(e)})
        payload = json.dumps(answers if self.path == "/pipeline" else answers[0]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _encode(self, value: Any, encode: bool) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode() if encode else value.decode()
        if isinstance(value, list | tuple):
            return [self._encode(v, encode) for v in value]
        return value

    def log_message(self, *args: Any) -> None:
        pass


def test_upstash_rest_api(redis_port: int, tmp_path: Path) -> None:
    r = client(redis_port, 2)
    fill(r)
    raw = redis_py.Redis(port=redis_port, db=2, protocol=2)
    raw.response_callbacks.clear()  # raw RESP replies, as Upstash's REST API returns them
    handler = type("Handler", (FakeUpstash,), {"redis": raw})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        project = make_project(tmp_path / "p")
        upstash = ["migrate", "redis", "--upstash-url", url, "--config", str(project.config)]
        upstash += ["--state-dir", str(project.state), "--rules", str(project.root / "rules.toml")]
        project.cli(*upstash, "--upstash-token", "test-token", "--report", "r.json")
        data = report(project)
        assert data["status"] == "verified" and data["source"].startswith("upstash:")
        assert project.sql("SELECT key, idx, value FROM messages WHERE idx = 3") == [
            ("chat:1:messages", 3, b"\xff\x00binary")
        ]
        kv = asyncio.run(kv_state(project))
        assert kv["blob"][0] == bytes(range(256))  # binary-safe through base64
        wrong = project.cli(*upstash, "--upstash-token", "nope", "--restart", code=1)
        assert "401" in wrong.output
    finally:
        server.shutdown()


def test_kill_during_scan_then_resume(redis_port: int, tmp_path: Path) -> None:
    r = client(redis_port, 3)
    pipe = r.pipeline()
    for i in range(1500):
        pipe.set(f"k:{i}", f"value {i}")
        pipe.rpush(f"chat:{i}:messages", *[f"m{j}" for j in range(i % 4 + 1)])
    pipe.execute()
    expected_rows = sum(i % 4 + 1 for i in range(1500))
    project = make_project(tmp_path / "p")
    ck = project.root / "ck.json"
    args = [
        "migrate",
        "redis",
        f"redis://127.0.0.1:{redis_port}/3",
        "--rules",
        str(project.root / "rules.toml"),
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--checkpoint",
        str(ck),
        "--scan-count",
        "20",
    ]
    proc = subprocess.Popen(
        [str(FLAREBASE), *args, "--max-items-per-second", "1500"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    killed_at = kill_when(proc, ck, lambda s: s.get("copy", {}).get("rows", 0) >= 600)
    assert not killed_at["finished"] and killed_at["stages"]["copy"]["position"] != [0]
    done = subprocess.run(
        [str(FLAREBASE), *args, "--report", "r.json"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(project)
    assert data["status"] == "verified" and data["resumed"]
    assert data["rows_copied_this_run"] < 3000  # continued, did not start over
    assert project.sql("SELECT count(*) FROM messages") == [(expected_rows,)]
    assert project.sql("SELECT count(DISTINCT key) FROM messages") == [(1500,)]
    kv = asyncio.run(kv_state(project))
    assert len([k for k in kv if k.startswith("k:")]) == 1500
    assert kv["k:7"][0] == b"value 7"


def kill_when(proc: subprocess.Popen[bytes], path: Path, ready: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        if state and ready(state["stages"]):
            time.sleep(0.2)  # more batches reach the target; the file lags behind
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return json.loads(path.read_text())
        if proc.poll() is not None:
            raise AssertionError(
                f"finished before the kill: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no progress in the checkpoint")


def test_glob_is_redis_glob() -> None:
    assert glob_regex("user:*").fullmatch(b"user:1")
    assert not glob_regex("user:*").fullmatch(b"users:1")
    assert glob_regex("h?llo").fullmatch(b"hallo")
    assert glob_regex("h[ae]llo").fullmatch(b"hello")
    assert not glob_regex("h[^e]llo").fullmatch(b"hello")
    assert glob_regex("h[a-c]llo").fullmatch(b"hbllo")
    assert glob_regex(r"a\*b").fullmatch(b"a*b") and not glob_regex(r"a\*b").fullmatch(b"axb")
    assert glob_regex("k:*").fullmatch(b"k:\xff\n")  # any bytes, newlines too


def test_rules_are_checked() -> None:
    with pytest.raises(RulesError, match="needs `table` and exactly one `type`"):
        parse_rules({"rules": [{"match": "*", "to": "d1"}]}, d1="DB")
    with pytest.raises(RulesError, match="stream cannot go to KV"):
        parse_rules({"rules": [{"match": "*", "type": "stream", "to": "kv"}]}, kv="KV")
    with pytest.raises(RulesError, match="ttl_under_minimum"):
        parse_rules({"rules": [{"match": "*", "ttl_under_minimum": "ignore"}]}, kv="KV")
    with pytest.raises(RulesError, match="also written by another rule"):
        parse_rules(
            {
                "rules": [
                    {"match": "a:*", "type": "set", "to": "d1", "table": "t"},
                    {"match": "b:*", "type": "list", "to": "d1", "table": "t"},
                ]
            },
            d1="DB",
        )
