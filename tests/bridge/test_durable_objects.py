"""The storage of the bridge's own Durable Object class, driven from Python."""

from __future__ import annotations

import pytest

from flarebase.platform import DurableObjectError, Env
from flarebase.platform.bridge.durable_objects import BridgeObjectStorage


def storage(env: Env, name: str) -> BridgeObjectStorage:
    return BridgeObjectStorage(env.DB._client, name)


async def test_key_value_api(env: Env) -> None:
    room = storage(env, "kv-api")
    await room.delete_all()
    await room.put("topic", "hello")
    await room.put({"a": 1, "b": [1, 2], "c": b"\x00\xff"})
    assert await room.get("topic") == "hello"
    assert await room.get(["a", "b", "missing"]) == {"a": 1, "b": [1, 2]}
    assert await room.get("c") == b"\x00\xff"
    assert await room.list(prefix="") == {"a": 1, "b": [1, 2], "c": b"\x00\xff", "topic": "hello"}
    assert await room.list(start="b", limit=2) == {"b": [1, 2], "c": b"\x00\xff"}
    assert await room.delete("a") is True
    assert await room.delete(["a", "b"]) == 1
    assert await room.get("a") is None
    # Another name is another object.
    assert await storage(env, "another").get("topic") is None


async def test_sql_and_atomic_calls(env: Env) -> None:
    room = storage(env, "sql")
    await room.delete_all()
    await room.sql("CREATE TABLE msgs (id INTEGER PRIMARY KEY, text TEXT)")
    await room.sql("INSERT INTO msgs (text) VALUES (?), (?)", "hi", "there")
    cursor = await room.sql("SELECT id, text FROM msgs ORDER BY id")
    assert cursor.column_names == ["id", "text"]
    assert cursor.to_array() == [{"id": 1, "text": "hi"}, {"id": 2, "text": "there"}]
    with pytest.raises(DurableObjectError, match="no such table"):
        await room.atomically([("put", "count", 3), ("sql", "INSERT INTO nope VALUES (1)")])
    assert await room.get("count") is None  # rolled back with the failing call
    results = await room.atomically(
        [("put", "count", 2), ("sql", "SELECT count(*) AS n FROM msgs"), ("get", "count")]
    )
    assert results[1].one() == {"n": 2} and results[2] == 2


async def test_alarms(env: Env) -> None:
    room = storage(env, "alarm")
    await room.delete_alarm()
    assert await room.get_alarm() is None
    await room.set_alarm(4_102_444_800_000)  # 2100-01-01
    assert await room.get_alarm() == 4_102_444_800_000
    await room.delete_alarm()
    assert await room.get_alarm() is None


async def test_values_must_be_json_or_bytes(env: Env) -> None:
    with pytest.raises(DurableObjectError, match="JSON or bytes"):
        await storage(env, "bad").put("k", {1, 2})
