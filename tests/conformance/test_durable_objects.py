"""Durable Objects conformance: ids and stubs, the input gate, SQL and KV storage with
their limits, transactions, alarms, WebSockets (hibernation API), eviction, and a
SIGKILL in the middle of an alarm.

Durable Object classes are Python here, so these tests run where Python hosts the
objects: the local provider (elsewhere the classes are the Worker's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from flarebase.platform import ConfigError, DurableObjectError, Env, open_env
from flarebase.platform.durable_objects import (
    AlarmInvocationInfo,
    DurableObject,
    DurableObjectState,
    Request,
    Response,
    StorageLimitExceeded,
    WebSocket,
    WebSocketClosed,
    WebSocketPair,
    WebSocketRequestResponsePair,
    bridge_web_socket,
)
from flarebase.platform.local import durable_objects as local_do
from flarebase.platform.local.durable_objects import list_objects

pytestmark = pytest.mark.asyncio
CONFIG = Path(__file__).with_name("do_wrangler.toml")


# -- the classes under test ------------------------------------------------------------------
class Counter(DurableObject):
    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        self.memory = 0
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT)")

    async def whoami(self) -> int:
        return id(self)

    async def linger(self) -> None:
        """Leave work running after this call: a storage write every 10 ms, forever."""

        async def forever() -> None:
            while True:
                await self.ctx.storage.put("tick", time.time())
                await asyncio.sleep(0.01)

        self.ctx.wait_until(forever())

    async def bump_memory(self) -> int:
        self.memory += 1
        return self.memory

    async def increment(self) -> int:
        n = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", n)
        return int(n)

    async def increment_across_await(self) -> None:
        n = await self.ctx.storage.get("n") or 0
        await asyncio.sleep(0.005)  # not a storage operation: other events may run here
        await self.ctx.storage.put("n", n + 1)

    async def increment_blocked(self) -> None:
        await self.ctx.block_concurrency_while(self.increment_across_await)

    async def sql(self, query: str, *bindings: Any) -> list[dict[str, Any]]:
        return self.ctx.storage.sql.exec(query, *bindings).to_array()

    async def storage(self, op: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.ctx.storage, op)(*args, **kwargs)

    async def append(self, items: list[str]) -> list[str]:
        items.append("from object")
        return items

    async def inspect(self, items: list[Any]) -> tuple[bool, bool]:
        items[0]["parts"][0]["text"] = "changed by the object"
        return items[0] is items[1], items[2] is items

    async def fetch(self, request: Request) -> Response:
        return Response.from_json(
            {"method": request.method, "url": request.url, "body": request.text()}, status=201
        )

    async def _private(self) -> str:
        return "secret"

    async def txn_then_raise(self) -> None:
        async def work(txn: Any) -> None:
            self.ctx.storage.sql.exec("INSERT INTO items (v) VALUES ('in txn')")
            await txn.put("txn-key", 1)
            raise ValueError("undo")

        await self.ctx.storage.transaction(work)

    async def txn_rollback(self) -> str:
        async def work(txn: Any) -> str:
            await txn.put("txn-key", 2)
            txn.rollback()
            return "rolled back"

        return str(await self.ctx.storage.transaction(work))

    async def txn_sync_then_raise(self) -> None:
        def work() -> None:
            self.ctx.storage.sql.exec("INSERT INTO items (v) VALUES ('sync')")
            raise ValueError("undo")

        self.ctx.storage.transaction_sync(work)

    async def txn_slow(self) -> None:
        async def work(txn: Any) -> None:
            await txn.put("phase", "inside")
            await asyncio.sleep(0.1)
            await txn.put("phase", "done")

        await self.ctx.storage.transaction(work)

    async def set_alarm_in(self, ms: int) -> None:
        await self.ctx.storage.set_alarm(int(time.time() * 1000) + ms)

    async def alarm(self, alarm_info: AlarmInvocationInfo | None = None) -> None:
        assert alarm_info is not None
        log = await self.ctx.storage.get("alarms") or []
        log.append(
            {"retry": alarm_info.retry_count, "at": time.monotonic(), "name": self.ctx.id.name}
        )
        await self.ctx.storage.put("alarms", log)
        failures = await self.ctx.storage.get("fail_alarms") or 0
        if failures:
            await self.ctx.storage.put("fail_alarms", failures - 1)
            raise RuntimeError("alarm failed on purpose")

    async def accept_pair(self, tags: list[str]) -> int:
        pair = WebSocketPair()
        self.ctx.accept_web_socket(pair.server, tags)
        return len(self.ctx.get_web_sockets())


class Gated(DurableObject):
    """Loads its state in the constructor under block_concurrency_while."""

    def __init__(self, ctx: DurableObjectState, env: Any) -> None:
        super().__init__(ctx, env)
        self.loaded = False
        ctx.block_concurrency_while(self._load)

    async def _load(self) -> None:
        await asyncio.sleep(0.05)
        if await self.ctx.storage.get("broken"):
            raise RuntimeError("cannot load")
        self.loaded = True

    async def is_loaded(self) -> bool:
        return self.loaded

    async def break_loading(self) -> None:
        await self.ctx.storage.put("broken", True)


class Room(DurableObject):
    """A chat room on the WebSocket hibernation API."""

    async def fetch(self, request: Request) -> Response:
        name = request.headers["x-name"]
        tags = [name, *request.headers.get("x-tags", "").split(",")]
        pair = WebSocketPair()
        pair.server.serialize_attachment({"name": name})
        self.ctx.accept_web_socket(pair.server, [t for t in tags if t])
        self.ctx.set_web_socket_auto_response(WebSocketRequestResponsePair("ping", "pong"))
        return Response(status=101, web_socket=pair.client)

    async def web_socket_message(self, ws: WebSocket, message: str | bytes) -> None:
        name = ws.deserialize_attachment()["name"]
        for peer in self.ctx.get_web_sockets():
            peer.send(f"{name}: {message!s}")

    async def web_socket_close(
        self, ws: WebSocket, code: int, reason: str, was_clean: bool
    ) -> None:
        closed = await self.ctx.storage.get("closed") or []
        await self.ctx.storage.put("closed", [*closed, [code, reason]])

    async def members(self, tag: str | None = None) -> list[list[str]]:
        return [self.ctx.get_tags(ws) for ws in self.ctx.get_web_sockets(tag)]

    async def closed(self) -> list[list[Any]]:
        return list(await self.ctx.storage.get("closed") or [])


class Legacy(DurableObject):
    """A key-value-backed class (`new_classes`): no SQL."""

    async def try_sql(self) -> None:
        self.ctx.storage.sql.exec("SELECT 1")

    async def kv(self) -> Any:
        await self.ctx.storage.put("k", "v")
        return await self.ctx.storage.get("k")


CLASSES = {"Counter": Counter, "Room": Room, "Gated": Gated, "Legacy": Legacy}


@asynccontextmanager
async def do_env(provider: str, state: Path, **options: Any) -> AsyncIterator[Env]:
    if provider != "local":
        pytest.skip("Durable Object classes written in Python are hosted by the local provider")
    async with open_env(
        CONFIG, provider=provider, state_dir=state, durable_objects=CLASSES, **options
    ) as env:
        yield env


@pytest.fixture
async def env(provider: str, tmp_path: Path) -> AsyncIterator[Env]:
    async with do_env(provider, tmp_path / "state") as env:
        yield env


def counter(env: Env, name: str = "c") -> Any:
    return env.COUNTERS.get(env.COUNTERS.id_from_name(name))


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- ids and stubs ------------------------------------------------------------------------------
async def test_ids(env: Env) -> None:
    ns = env.COUNTERS
    a, again, b = ns.id_from_name("a"), ns.id_from_name("a"), ns.id_from_name("b")
    assert a == again and a != b
    assert len(str(a)) == 64 and int(str(a), 16) >= 0
    assert a.name == "a"
    unique = ns.new_unique_id()
    assert unique != ns.new_unique_id() and unique.name is None
    assert ns.id_from_string(str(unique)) == unique
    with pytest.raises(DurableObjectError, match="64 hex digits"):
        ns.id_from_string("abc")
    with pytest.raises(DurableObjectError, match="not valid for this namespace"):
        ns.id_from_string(str(env.ROOMS.id_from_name("a")))


async def test_one_instance_per_id(env: Env) -> None:
    first, second = counter(env, "same"), counter(env, "same")
    assert await first.whoami() == await second.whoami()
    assert await first.bump_memory() == 1
    assert await second.bump_memory() == 2  # same instance, same memory
    assert await counter(env, "other").bump_memory() == 1
    by_string = env.COUNTERS.get(env.COUNTERS.id_from_string(str(first.id)))
    assert await by_string.whoami() == await first.whoami()
    assert env.COUNTERS.constructed == 2


async def test_rpc_copies_values_and_exposes_only_public_methods(env: Env) -> None:
    stub = counter(env)
    mine = ["from caller"]
    result = await stub.append(mine)
    assert result == ["from caller", "from object"]
    assert mine == ["from caller"]  # the object got a copy, as over Cloudflare's RPC
    for name in ("_private", "alarm", "web_socket_message", "nonexistent", "memory"):
        with pytest.raises((DurableObjectError, AttributeError), match=r"does not implement|_"):
            await getattr(stub, name)()


async def test_rpc_copies_nested_values_keeping_shared_and_circular_references(
    env: Env,
) -> None:
    shared = {"parts": [{"type": "text", "text": "hi"}]}
    history: list[Any] = [shared, shared]
    history.append(history)  # structured clone allows cycles
    same, circular = await counter(env).inspect(history)
    assert same and circular  # as the caller had them
    assert shared == {"parts": [{"type": "text", "text": "hi"}]}  # the object changed a copy


async def test_fetch(env: Env) -> None:
    response = await counter(env).fetch("https://do/path?q=1", method="POST", body="hello")
    assert response.status == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"method": "POST", "url": "https://do/path?q=1", "body": "hello"}


async def test_unregistered_class_fails_with_its_name(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("local registration")
    async with open_env(CONFIG, state_dir=tmp_path, durable_objects={}) as env:
        with pytest.raises(ConfigError, match="'Counter'"):
            await counter(env).whoami()


async def test_class_without_migration_is_a_config_error(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("local registration")
    config = tmp_path / "wrangler.toml"
    config.write_text('[[durable_objects.bindings]]\nname = "X"\nclass_name = "Counter"\n')
    with pytest.raises(ConfigError, match="new_sqlite_classes"):
        async with open_env(config, state_dir=tmp_path / "s", durable_objects=CLASSES):
            pass


# -- the input gate -----------------------------------------------------------------------------
async def test_events_never_interleave_inside_storage_operations(env: Env) -> None:
    stub = counter(env)
    await asyncio.gather(*(stub.increment() for _ in range(200)))
    assert await stub.storage("get", "n") == 200  # no read-modify-write was lost


async def test_block_concurrency_while_holds_every_other_event(env: Env) -> None:
    stub = counter(env)
    # Across a non-storage await, events interleave (as on Cloudflare): updates are lost.
    await asyncio.gather(*(stub.increment_across_await() for _ in range(20)))
    assert await stub.storage("get", "n") < 20
    await stub.storage("put", "n", 0)
    # Inside block_concurrency_while nothing else runs: none is lost.
    await asyncio.gather(*(stub.increment_blocked() for _ in range(20)))
    assert await stub.storage("get", "n") == 20


async def test_block_concurrency_while_in_constructor_gates_first_event(env: Env) -> None:
    stub = env.GATED.get(env.GATED.id_from_name("g"))
    results = await asyncio.gather(*(stub.is_loaded() for _ in range(5)))
    assert results == [True] * 5


async def test_failed_block_concurrency_while_resets_the_object(env: Env) -> None:
    stub = env.GATED.get(env.GATED.id_from_name("broken"))
    assert await stub.is_loaded() is True
    await stub.break_loading()
    env.GATED._actor(stub.id).reset("test: new code")  # next event builds a new instance
    with pytest.raises(DurableObjectError, match="reset"):
        await stub.is_loaded()


async def test_transaction_holds_other_events(env: Env) -> None:
    stub = counter(env)
    slow = asyncio.ensure_future(stub.txn_slow())
    await asyncio.sleep(0.02)  # the transaction is inside its sleep
    assert await stub.storage("get", "phase") == "done"
    await slow


# -- SQL ---------------------------------------------------------------------------------------
async def test_sql_cursor(env: Env) -> None:
    stub = counter(env)
    ns = env.COUNTERS
    storage = ns._actor(stub.id)
    await stub.whoami()  # builds the object (its constructor creates the table)
    sql = storage.storage().sql
    cur = sql.exec("INSERT INTO items (v) VALUES (?), (?), (?)", "a", "b", "c")
    assert cur.rows_written == 3 and cur.to_array() == []
    cur = sql.exec("SELECT id, v FROM items ORDER BY id")
    assert cur.column_names == ["id", "v"]
    assert [row["v"] for row in cur] == ["a", "b", "c"]
    assert cur.rows_read == 3
    assert list(sql.exec("SELECT v FROM items WHERE id = 2").raw()) == [["b"]]
    assert sql.exec("SELECT count(*) AS n FROM items").one() == {"n": 3}
    with pytest.raises(DurableObjectError, match="exactly one result"):
        sql.exec("SELECT v FROM items").one()
    with pytest.raises(DurableObjectError, match="got no results"):
        sql.exec("SELECT v FROM items WHERE id = 99").one()
    # several statements: bindings go to the last, its rows are returned
    rows = sql.exec("DELETE FROM items WHERE id = 1; SELECT v FROM items WHERE id > ?", 0)
    assert rows.to_array() == [{"v": "b"}, {"v": "c"}]
    # a semicolon in a string, a trailing one and a comment after it: one statement
    rows = sql.exec("SELECT v FROM items WHERE v = 'x;' OR id = 3; -- the last")
    assert rows.to_array() == [{"v": "c"}]
    assert sql.database_size > 0


async def test_sql_rejects_transactions_and_applies_d1_limits(env: Env) -> None:
    stub = counter(env)
    for statement in ("BEGIN TRANSACTION", "SAVEPOINT s1", "COMMIT"):
        with pytest.raises(DurableObjectError, match=r"state\.storage\.transaction\(\)"):
            await stub.sql(statement)
    with pytest.raises(DurableObjectError, match="too many SQL variables"):
        await stub.sql("SELECT " + ", ".join("?" * 101), *range(101))
    assert await stub.sql("SELECT " + ", ".join("?" * 100), *range(100))
    with pytest.raises(DurableObjectError, match=r"too long|TOOBIG"):
        await stub.sql("SELECT '" + "x" * 100_000 + "'")
    with pytest.raises(DurableObjectError, match="attached databases"):
        await stub.sql("ATTACH DATABASE ':memory:' AS other")
    with pytest.raises(DurableObjectError, match="prohibited"):
        await stub.sql("SELECT * FROM _cf_KV")
    with pytest.raises(DurableObjectError, match="LIKE or GLOB pattern too complex"):
        await stub.sql("SELECT 'a' LIKE ?", "%" * 51)


async def test_transactions_roll_back(env: Env) -> None:
    stub = counter(env)
    with pytest.raises(ValueError, match="undo"):
        await stub.txn_then_raise()
    assert await stub.sql("SELECT * FROM items") == []
    assert await stub.storage("get", "txn-key") is None
    assert await stub.txn_rollback() == "rolled back"
    assert await stub.storage("get", "txn-key") is None
    with pytest.raises(ValueError, match="undo"):
        await stub.txn_sync_then_raise()
    assert await stub.sql("SELECT * FROM items") == []


# -- key-value storage ----------------------------------------------------------------------------
async def test_kv_api(env: Env) -> None:
    stub = counter(env)
    await stub.storage("put", "b", {"nested": [1, 2.5, None, b"bytes"]})
    await stub.storage("put", {"a": 1, "c": "three", "d": (4,)})
    assert await stub.storage("get", "b") == {"nested": [1, 2.5, None, b"bytes"]}
    assert await stub.storage("get", "missing") is None
    assert await stub.storage("get", ["c", "a", "missing"]) == {"a": 1, "c": "three"}
    assert list(await stub.storage("list")) == ["a", "b", "c", "d"]
    assert list(await stub.storage("list", start="b", end="d")) == ["b", "c"]
    assert list(await stub.storage("list", start_after="b")) == ["c", "d"]
    assert list(await stub.storage("list", reverse=True, limit=2)) == ["d", "c"]
    await stub.storage("put", {"pre:1": 1, "pre:2": 2, "prf": 0})
    assert await stub.storage("list", prefix="pre:") == {"pre:1": 1, "pre:2": 2}
    assert await stub.storage("delete", "a") is True
    assert await stub.storage("delete", "a") is False
    assert await stub.storage("delete", ["b", "c", "zzz"]) == 2
    await stub.storage("delete_all")
    assert await stub.storage("list") == {}
    assert await stub.sql("SELECT name FROM sqlite_master WHERE name = 'items'") == []


async def test_kv_limits(env: Env) -> None:
    stub = counter(env)
    keys = [f"k{i}" for i in range(129)]
    with pytest.raises(StorageLimitExceeded, match="128"):
        await stub.storage("put", {k: 1 for k in keys})
    with pytest.raises(StorageLimitExceeded, match="128"):
        await stub.storage("get", keys)
    with pytest.raises(StorageLimitExceeded, match="128"):
        await stub.storage("delete", keys)
    await stub.storage("put", {k: 1 for k in keys[:128]})
    assert len(await stub.storage("get", keys[:128])) == 128
    big = b"x" * 1_999_900  # key + pickled value just under 2 MB: stored whole
    await stub.storage("put", "big", big)
    assert await stub.storage("get", "big") == big
    with pytest.raises(StorageLimitExceeded, match="2,000,000"):
        await stub.storage("put", "too-big", b"x" * 2_000_000)
    assert await stub.storage("get", "too-big") is None


async def test_kv_backed_class_has_no_sql(env: Env) -> None:
    stub = env.LEGACY.get(env.LEGACY.id_from_name("l"))
    assert await stub.kv() == "v"
    with pytest.raises(DurableObjectError, match="SQL is not enabled"):
        await stub.try_sql()


async def test_state_survives_restart(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path) as env:
        stub = counter(env, "durable")
        await stub.sql("INSERT INTO items (v) VALUES ('kept')")
        await stub.storage("put", "k", {"kept": True})
        hex_id = str(stub.id)
    async with do_env(provider, tmp_path) as env:
        stub = counter(env, "durable")
        assert await stub.sql("SELECT v FROM items") == [{"v": "kept"}]
        assert await stub.storage("get", "k") == {"kept": True}
    [info] = list_objects(tmp_path, "Counter")
    assert (info.id, info.name, info.class_name) == (hex_id, "durable", "Counter")
    assert info.size_bytes > 0


async def test_new_object_file_is_a_wal_database_with_the_hidden_tables(
    provider: str, tmp_path: Path
) -> None:
    if provider != "local":
        pytest.skip("the local provider's files")
    async with do_env(provider, tmp_path) as env:
        stub = counter(env, "fresh")
        await stub.storage("put", "k", 1)
        await stub.sql("INSERT INTO items (v) VALUES ('x')")
    [path] = [p for p in tmp_path.rglob("*.sqlite3") if p.stem == str(stub.id)]
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master")}
    assert {"_cf_KV", "_cf_METADATA", "items"} <= tables


async def test_failed_write_of_a_new_object_file_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_do.os, "write", full)
    path = tmp_path / "object.sqlite3"
    with pytest.raises(OSError, match="No space"):
        local_do._create_database(path)
    assert not path.exists()


# -- alarms --------------------------------------------------------------------------------------
async def test_one_alarm_per_object(env: Env) -> None:
    stub = counter(env)
    await stub.set_alarm_in(60_000)
    await stub.set_alarm_in(150)  # replaces the first
    when = await stub.storage("get_alarm")
    assert abs(when - (time.time() * 1000 + 150)) < 1000
    await wait_for(lambda: stub.storage("get", "alarms"))
    await asyncio.sleep(0.2)
    assert [a["retry"] for a in await stub.storage("get", "alarms")] == [0]  # fired once
    assert await stub.storage("get_alarm") is None
    await stub.set_alarm_in(100)
    await stub.storage("delete_alarm")
    await asyncio.sleep(0.3)
    assert len(await stub.storage("get", "alarms")) == 1  # the deleted alarm never fired


async def test_alarm_fires_after_restart(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path) as env:
        await counter(env).set_alarm_in(400)
    async with do_env(provider, tmp_path) as env:
        await wait_for(lambda: env.COUNTERS.constructed)  # the alarm built the object
        stub = counter(env)
        await wait_for(lambda: stub.storage("get", "alarms"))
        [run] = await stub.storage("get", "alarms")
        assert run["name"] == "c"  # ctx.id keeps the name the object was made with
        assert await stub.storage("get_alarm") is None


async def test_alarms_wait_for_a_process_that_has_the_class(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path) as env:
        await counter(env).set_alarm_in(0)
        await env.COUNTERS.runtime.aclose()  # stop this process's scheduler before it fires
    # e.g. a CLI command: it cannot run Counter's alarm(), so must not use up its retries
    async with open_env(
        CONFIG, state_dir=tmp_path, durable_objects={}, do_alarm_retry_base=0.001
    ) as env:
        await asyncio.sleep(0.3)
    async with do_env(provider, tmp_path) as env:
        stub = counter(env)
        await wait_for(lambda: stub.storage("get", "alarms"))
        assert [r["retry"] for r in await stub.storage("get", "alarms")] == [0]


async def test_failing_alarm_is_retried_with_backoff(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path, do_alarm_retry_base=0.05) as env:
        stub = counter(env)
        await stub.storage("put", "fail_alarms", 2)
        await stub.set_alarm_in(0)

        async def three_runs() -> bool:
            return len(await stub.storage("get", "alarms") or []) >= 3

        await wait_for(three_runs)
        runs = await stub.storage("get", "alarms")
        assert [r["retry"] for r in runs] == [0, 1, 2]
        first_gap, second_gap = runs[1]["at"] - runs[0]["at"], runs[2]["at"] - runs[1]["at"]
        assert first_gap >= 0.045 and second_gap >= 0.095  # 0.05 s, then doubled
        await asyncio.sleep(0.3)
        assert len(await stub.storage("get", "alarms")) == 3  # succeeded: no more runs


# -- WebSockets -----------------------------------------------------------------------------------
async def join(room: Any, name: str, tags: str = "") -> WebSocket:
    response = await room.fetch("https://room/ws", headers={"x-name": name, "x-tags": tags})
    assert response.status == 101 and response.web_socket is not None
    return response.web_socket


async def test_web_sockets_hibernate_and_wake(provider: str, tmp_path: Path) -> None:
    # The sockets are the runtime's own in-memory WebSocketPair ends (what the server's
    # /ws routes bridge to real sockets), not fakes.
    async with do_env(provider, tmp_path, do_idle_timeout=0.1) as env:
        room = env.ROOMS.get(env.ROOMS.id_from_name("lobby"))
        alice = await join(room, "alice", "admin")
        bob = await join(room, "bob")
        assert await room.members() == [["alice", "admin"], ["bob"]]
        assert await room.members("admin") == [["alice", "admin"]]
        alice.send("hello")
        assert await alice.receive() == "alice: hello"
        assert await bob.receive() == "alice: hello"
        assert env.ROOMS.constructed == 1

        await wait_for(lambda: not env.ROOMS._actors[str(room.id)].instance)  # hibernated
        bob.send("still there?")  # wakes a new instance, which sees both sockets
        assert await alice.receive() == "bob: still there?"
        assert await bob.receive() == "bob: still there?"
        assert env.ROOMS.constructed == 2

        await wait_for(lambda: not env.ROOMS._actors[str(room.id)].instance)
        alice.send("ping")  # the auto-response answers without waking the object
        assert await asyncio.wait_for(alice.receive(), 1) == "pong"
        assert env.ROOMS.constructed == 2

        alice.close(4000, "bye")
        await wait_for(lambda: room.closed())
        assert await room.closed() == [[4000, "bye"]]
        assert await room.members() == [["bob"]]


async def test_web_socket_limits(env: Env) -> None:
    stub = counter(env)
    assert await stub.accept_pair(["t"] * 10) == 1
    with pytest.raises(StorageLimitExceeded, match="10 tags"):
        await stub.accept_pair([f"t{i}" for i in range(11)])
    with pytest.raises(StorageLimitExceeded, match="256 characters"):
        await stub.accept_pair(["x" * 257])
    with pytest.raises(StorageLimitExceeded, match="2048"):
        WebSocketRequestResponsePair("x" * 2049, "y")


class FakeASGIWebSocket:
    """An in-memory stand-in for starlette's WebSocket: no real network socket exists in
    this test (the environment's uvicorn has no WebSocket protocol library)."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


async def test_bridge_web_socket_joins_a_server_socket_to_an_object(env: Env) -> None:
    room = env.ROOMS.get(env.ROOMS.id_from_name("bridged"))
    socket = FakeASGIWebSocket()
    bridge = asyncio.ensure_future(bridge_web_socket(await join(room, "carol"), socket))
    socket.incoming.put_nowait({"type": "websocket.receive", "text": "hi"})
    await wait_for(lambda: socket.sent)
    assert socket.sent == ["carol: hi"]
    socket.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})
    await asyncio.wait_for(bridge, 2)
    await wait_for(lambda: room.closed())
    assert await room.closed() == [[1001, ""]]


async def test_closed_socket_raises_on_receive() -> None:
    pair = WebSocketPair()
    pair.server.close(1000, "done")
    with pytest.raises(WebSocketClosed) as closed:
        await pair.client.receive()
    assert (closed.value.code, closed.value.reason) == (1000, "done")
    with pytest.raises(DurableObjectError, match="after close"):
        pair.server.send("late")


# -- eviction -----------------------------------------------------------------------------------
async def test_idle_objects_are_evicted_and_rebuilt(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path, do_idle_timeout=0.1) as env:
        stub = counter(env)
        assert await stub.bump_memory() == 1
        await stub.increment()
        assert await stub.bump_memory() == 2
        await wait_for(lambda: str(stub.id) not in env.COUNTERS._actors)
        assert await stub.bump_memory() == 1  # a new instance: memory is gone...
        assert await stub.storage("get", "n") == 1  # ...storage is not
        assert env.COUNTERS.constructed == 2


async def test_evicted_objects_close_off_the_event_loop(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if provider != "local":
        pytest.skip("the local provider's files")
    async with do_env(provider, tmp_path) as env:
        stub = counter(env, "e")
        await stub.increment()
        release, closed = threading.Event(), []
        close = local_do.LocalStorage.close

        def slow_close(storage: Any) -> None:
            release.wait(5)
            close(storage)
            closed.append(storage)

        monkeypatch.setattr(local_do.LocalStorage, "close", slow_close)
        env.COUNTERS.evict(env.COUNTERS._actors[str(stub.id)])
        assert closed == []  # evict returned while the file is still being closed
        threading.Timer(0.05, release.set).start()
        assert await stub.storage("get", "n") == 1  # waits for the close, then reopens
        assert len(closed) == 1


async def test_closing_the_env_cancels_the_work_objects_left_running(
    provider: str, tmp_path: Path
) -> None:
    if provider != "local":
        pytest.skip("the local provider's runtime")
    async with do_env(provider, tmp_path) as env:
        stub = counter(env, "lingering")
        await stub.linger()
        [task] = env.COUNTERS._actors[str(stub.id)].background
        await asyncio.sleep(0.05)
        assert not task.done()
    assert task.cancelled()  # not left writing to a closed file


async def test_busy_objects_are_not_evicted(provider: str, tmp_path: Path) -> None:
    async with do_env(provider, tmp_path, do_idle_timeout=0.05) as env:
        stub = counter(env)
        await stub.bump_memory()
        slow = asyncio.ensure_future(stub.txn_slow())  # in flight for 0.1 s
        await asyncio.sleep(0.08)
        assert str(stub.id) in env.COUNTERS._actors
        await slow
        assert env.COUNTERS.constructed == 1


async def test_open_objects_are_capped_by_evicting_the_least_recently_used(env: Env) -> None:
    runtime = env.COUNTERS.runtime
    runtime.max_open = 5  # normally derived from the open-file limit
    stubs = [counter(env, f"n{i}") for i in range(12)]
    for i, stub in enumerate(stubs):
        await stub.storage("put", "i", i)
        assert runtime.open_count <= 6
    assert [await stub.storage("get", "i") for stub in stubs] == list(range(12))
    assert env.COUNTERS.constructed > 12  # evicted objects were rebuilt from storage


# -- a crash in the middle of an alarm --------------------------------------------------------
CRASH_CHILD = """
import asyncio, sys, time
from pathlib import Path
from flarebase.platform import open_env
from flarebase.platform.durable_objects import DurableObject

config, state, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])

class Counter(DurableObject):
    async def arm(self):
        await self.ctx.storage.put("armed", True)
        await self.ctx.storage.set_alarm(int(time.time() * 1000) + 50)

    async def alarm(self):
        await self.ctx.storage.put("child-alarm-started", True)
        marker.write_text("in alarm")
        await asyncio.sleep(60)  # killed here

async def main():
    async with open_env(config, state_dir=state, durable_objects={"Counter": Counter}) as env:
        await env.COUNTERS.get(env.COUNTERS.id_from_name("crash")).arm()
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_alarm_fires_after_sigkill_mid_alarm(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("the crash is of the local provider's process")
    script, marker, state = tmp_path / "child.py", tmp_path / "marker", tmp_path / "state"
    script.write_text(textwrap.dedent(CRASH_CHILD))
    child = subprocess.Popen([sys.executable, str(script), str(CONFIG), str(state), str(marker)])
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, "child exited early"
            assert time.monotonic() < deadline, "the child's alarm never started"
            await asyncio.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    async with do_env(provider, state) as env:
        stub = counter(env, "crash")
        await wait_for(lambda: stub.storage("get", "alarms"))
        assert await stub.storage("get", "armed") is True  # written before the kill: kept
        assert await stub.storage("get", "child-alarm-started") is True
        assert [r["retry"] for r in await stub.storage("get", "alarms")] == [0]
        assert await stub.storage("get_alarm") is None
