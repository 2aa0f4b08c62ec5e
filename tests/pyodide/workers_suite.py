"""Checks that only make sense for the `workers` provider, run under Pyodide by runner.py.

They cover what the conformance suite cannot: the FFI cases of
shared/reference/python-workers.md one by one, the env wrapper, Queue sends
(delivered to a JavaScript consumer that records each body it receives), and
Durable Object stubs calling a JavaScript Durable Object (ids, RPC, fetch; raw and
wrapped as the Workers SDK wraps them).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from flarebase.platform import D1Error, DurableObjectError, KVError, QueueError, R2Error
from flarebase.platform.d1 import D1Result
from flarebase.platform.durable_objects import Response
from flarebase.platform.queues import MessageSendRequest
from flarebase.platform.workers import WorkersEnv, wrap_env
from flarebase.platform.workers.d1 import WorkersD1
from flarebase.platform.workers.durable_objects import WorkersDurableObjectNamespace
from flarebase.platform.workers.kv import WorkersKV
from flarebase.platform.workers.queues import WorkersQueue
from flarebase.platform.workers.r2 import WorkersR2

# -- the env -----------------------------------------------------------------------------------


async def test_env_wraps_each_binding_by_kind(env: WorkersEnv) -> None:
    assert isinstance(env.DB, WorkersD1) and env["DB"] is env.DB
    assert isinstance(env.KV, WorkersKV)
    assert isinstance(env.BUCKET, WorkersR2)
    assert isinstance(env.QUEUE, WorkersQueue)
    assert isinstance(env.COUNTERS, WorkersDurableObjectNamespace)
    assert {"DB", "KV", "BUCKET", "QUEUE", "COUNTERS"} <= set(env)
    assert "GREETING" not in set(env) and "GREETING" in env
    assert env.vars["GREETING"] == "hello" and env.GREETING == "hello"
    assert env.vars["SETTINGS"] == {"retries": 3, "name": None}  # null inside -> None
    with pytest.raises(AttributeError, match="no binding or var 'NOPE'"):
        _ = env.NOPE


async def test_env_takes_kinds_and_the_sdk_wrapper(env: WorkersEnv, js_env: Any) -> None:
    class EnvWrapper:  # the shape of the Workers SDK's _EnvWrapper: `_env` holds the JS env
        def __init__(self, env: Any) -> None:
            self._env = env

    wrapped = wrap_env(EnvWrapper(js_env), kinds={"DB": "d1", "GREETING": "var"})
    assert isinstance(wrapped.DB, WorkersD1)
    assert await wrapped.DB.prepare("SELECT 1 AS one").first("one") == 1
    assert wrap_env(wrapped) is wrapped


# -- D1 and the FFI ----------------------------------------------------------------------------


async def test_d1_nulls_are_none_both_ways(env: WorkersEnv) -> None:
    row = await env.DB.prepare("SELECT ? AS a, NULL AS b").bind(None).first()
    assert row == {"a": None, "b": None}  # None bound as null (not undefined)
    assert await env.DB.prepare("SELECT 1 WHERE 0").first() is None  # not jsnull
    assert await env.DB.prepare("SELECT NULL AS v").first("v") is None
    res = await env.DB.prepare("SELECT NULL AS v").all()
    assert isinstance(res, D1Result) and res.results == [{"v": None}]
    assert await env.DB.prepare("SELECT NULL, 1").raw() == [[None, 1]]


async def test_d1_value_types(env: WorkersEnv) -> None:
    await env.DB.exec("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB)")
    blob = bytes(range(256))
    await env.DB.prepare("INSERT INTO v VALUES (?, ?, ?, ?)").bind(True, 1.0, "é😀", blob).run()
    await env.DB.prepare("INSERT INTO v VALUES (?, ?, ?, ?)").bind(2**40, 2.5, "", b"").run()
    rows = await env.DB.prepare("SELECT * FROM v ORDER BY rowid").all()
    assert rows.results[0] == {"i": 1, "r": 1.0, "t": "é😀", "b": blob}  # bool binds as 1
    assert rows.results[1] == {"i": 2**40, "r": 2.5, "t": "", "b": b""}
    assert isinstance(rows.results[0]["b"], bytes)  # BLOBs arrive as lists of ints
    raw = await env.DB.prepare("SELECT b FROM v ORDER BY rowid").raw(column_names=True)
    assert raw == [["b"], [blob], [b""]]
    assert await env.DB.prepare("SELECT b FROM v ORDER BY rowid").first("b") == blob


async def test_d1_unsafe_integers_are_refused(env: WorkersEnv) -> None:
    assert await env.DB.prepare("SELECT ? AS v").bind(2**53 - 1).first("v") == 2**53 - 1
    assert await env.DB.prepare("SELECT ? AS v").bind(-(2**53) + 1).first("v") == -(2**53) + 1
    for big in (2**53, -(2**53), 2**62, 2**64):
        with pytest.raises(D1Error, match="safe integer range") as e:
            env.DB.prepare("SELECT ?").bind(big)
        assert e.value.code == "D1_TYPE_ERROR"


async def test_d1_strings_without_utf8_form_are_refused(env: WorkersEnv) -> None:
    with pytest.raises(D1Error, match="lone surrogate") as e:
        env.DB.prepare("SELECT ?").bind("a\ud800")
    assert e.value.code == "D1_TYPE_ERROR"


async def test_d1_errors_carry_cloudflares_message_and_code(env: WorkersEnv) -> None:
    with pytest.raises(D1Error) as e:
        await env.DB.prepare("SELEC 1").all()
    assert str(e.value).startswith('D1_ERROR: near "SELEC": syntax error')  # no "Error: "
    assert e.value.code == "D1_ERROR"
    with pytest.raises(D1Error) as e:
        await env.DB.prepare("SELECT 1 AS a").first("b")
    assert e.value.code == "D1_COLUMN_NOTFOUND"
    with pytest.raises(D1Error) as e:
        await env.DB.exec("SELEC 1")
    assert e.value.code == "D1_EXEC_ERROR"


async def test_d1_batch_failure_rolls_back(env: WorkersEnv) -> None:
    await env.DB.exec("CREATE TABLE t (name TEXT)")
    ins = env.DB.prepare("INSERT INTO t (name) VALUES (?)")
    with pytest.raises(D1Error, match="no such table: missing"):
        await env.DB.batch([ins.bind("a"), env.DB.prepare("INSERT INTO missing VALUES (1)")])
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 0
    await ins.bind("b").run()
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 1


async def test_d1_extensions_fts5_json_math(env: WorkersEnv) -> None:
    await env.DB.exec("CREATE VIRTUAL TABLE docs USING fts5(body)")
    await env.DB.prepare("INSERT INTO docs VALUES (?)").bind("the quick brown fox").run()
    hits = await env.DB.prepare("SELECT body FROM docs WHERE docs MATCH 'fox'").raw()
    assert hits == [["the quick brown fox"]]
    query = env.DB.prepare("SELECT json_extract(?, '$.a.b') AS v")
    assert await query.bind('{"a":{"b":[1,2]}}').first() == {"v": "[1,2]"}
    assert await env.DB.prepare("SELECT sqrt(16) AS v").first("v") == 4.0


# -- KV and the FFI ----------------------------------------------------------------------------


async def test_kv_options_are_plain_objects_not_maps(env: WorkersEnv) -> None:
    # A dict passed with to_js() becomes a Map, which KV put accepts and ignores.
    before = int(time.time())
    await env.KV.put("ttl", "v", expiration_ttl=3600, metadata={"a": None, "b": [1, None]})
    page = await env.KV.list()
    assert page.keys[0].expiration is not None
    assert before + 3600 <= page.keys[0].expiration <= before + 3700
    assert page.keys[0].metadata == {"a": None, "b": [1, None]}  # None kept as null
    got = await env.KV.get_with_metadata("ttl")
    assert (got.value, got.metadata) == ("v", {"a": None, "b": [1, None]})


async def test_kv_misses_are_none_not_jsnull(env: WorkersEnv) -> None:
    for kind in ("text", "json", "bytes", "arrayBuffer", "stream"):
        assert await env.KV.get("missing", kind) is None
    got = await env.KV.get_with_metadata("missing")
    assert got.value is None and got.metadata is None


async def test_kv_keys_and_types_are_checked_before_crossing(env: WorkersEnv) -> None:
    with pytest.raises(KVError, match="Key name must be a string"):
        await env.KV.get(123)  # JS would read the key "123"
    with pytest.raises(KVError, match="Unknown response type"):
        await env.KV.get("k", None)  # JS would read text
    with pytest.raises(KVError, match="greater than 0"):
        await env.KV.list(limit=0)  # workerd would list 1,000 keys


async def test_kv_list_rejects_bad_prefixes(env: WorkersEnv) -> None:
    with pytest.raises(KVError):
        await env.KV.list(prefix=42)
    with pytest.raises(KVError, match="UTF-8"):
        await env.KV.list(prefix="\ud800")
    with pytest.raises(KVError):
        await env.KV.list(cursor=42)


# -- R2 ----------------------------------------------------------------------------------------


async def test_r2_list_rejects_bad_options(env: WorkersEnv) -> None:
    for limit in (0, 1001, -5):
        with pytest.raises(R2Error) as e:
            await env.BUCKET.list(limit=limit)
        assert (e.value.code, str(e.value)) == (
            "InvalidMaxKeys",
            "list: MaxKeys params must be positive integer <= 1000. (10022)",
        )
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"limit": "10"}, "TypeError", "limit must be an integer"),
        ({"limit": True}, "TypeError", "limit must be an integer"),
        ({"prefix": 5}, "TypeError", "prefix must be a string"),
        ({"include": ["metadata"]}, "RangeError", "Unsupported include value metadata"),
        ({"include": "httpMetadata"}, "TypeError", "include must be a list"),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(R2Error) as e:
            await env.BUCKET.list(**kwargs)
        assert e.value.code == code, kwargs
        assert message in str(e.value), kwargs


async def test_r2_complete_needs_parts(env: WorkersEnv) -> None:
    upload = await env.BUCKET.create_multipart_upload("parts")
    part = await upload.upload_part(1, b"x")
    with pytest.raises(R2Error) as e:
        await upload.complete([])
    assert e.value.code == "NoParts"
    assert (await upload.complete([part])).size == 1


async def test_r2_object_dates_and_digests(env: WorkersEnv) -> None:
    obj = await env.BUCKET.put(
        "d", b"abc", sha256="ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert obj.uploaded.tzinfo is not None
    assert abs((datetime.now(UTC) - obj.uploaded).total_seconds()) < 60
    assert obj.checksums.sha256 is not None and obj.checksums.sha256.hex().startswith("ba7816bf")
    with pytest.raises(R2Error) as e:
        await env.BUCKET.put("d2", b"abc", sha256="00" * 32)
    assert e.value.code == "BadDigest"


# -- Queues ------------------------------------------------------------------------------------


async def received(js_env: Any, marker: str, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The bodies (with the JS type they arrived as) that the JS consumer recorded."""
    deadline = time.monotonic() + timeout
    while True:
        page = (await js_env.RECEIVED.list()).to_py()
        found = []
        for key in page["keys"]:
            record = json.loads(await js_env.RECEIVED.get(key["name"]))
            if marker in record["json"]:
                found.append({"kind": record["kind"], "body": json.loads(record["json"])})
        if len(found) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_queue_send_each_content_type(env: WorkersEnv, js_env: Any) -> None:
    marker = uuid.uuid4().hex
    await env.QUEUE.send({"m": marker, "none": None, "n": [1, 2.5]})
    await env.QUEUE.send(f"text {marker}", content_type="text")
    await env.QUEUE.send(marker.encode(), content_type="bytes")
    await env.QUEUE.send({"m": marker, "v8": True}, content_type="v8")
    got = await received(js_env, marker, 3)
    kinds = sorted((r["kind"], json.dumps(r["body"], sort_keys=True)) for r in got)
    assert (
        "object",
        json.dumps({"m": marker, "n": [1, 2.5], "none": None}, sort_keys=True),
    ) in kinds
    assert ("string", json.dumps(f"text {marker}")) in kinds
    assert ("object", json.dumps({"m": marker, "v8": True}, sort_keys=True)) in kinds
    # bytes bodies are recorded as their byte values
    got_bytes = await received(js_env, "[", 1)
    assert any(
        r["kind"] in ("Uint8Array", "ArrayBuffer") and bytes(r["body"]) == marker.encode()
        for r in got_bytes
    )


async def test_queue_send_batch(env: WorkersEnv, js_env: Any) -> None:
    marker = uuid.uuid4().hex
    await env.QUEUE.send_batch(
        [{"body": {"i": i, "m": marker}} for i in range(5)]
        + [MessageSendRequest(body=f"{marker} text", content_type="text")]
    )
    got = await received(js_env, marker, 6)
    assert sorted(r["body"]["i"] for r in got if r["kind"] == "object") == [0, 1, 2, 3, 4]
    assert [r["body"] for r in got if r["kind"] == "string"] == [f"{marker} text"]


async def test_queue_bad_bodies_fail_before_sending(env: WorkersEnv) -> None:
    with pytest.raises(QueueError, match="JSON"):
        await env.QUEUE.send({1, 2})
    with pytest.raises(QueueError, match="text"):
        await env.QUEUE.send(b"x", content_type="text")
    with pytest.raises(QueueError, match="invalid"):
        await env.QUEUE.send("x", content_type="xml")
    with pytest.raises(QueueError, match="exceeds limit"):
        await env.QUEUE.send("x" * 200_000, content_type="text")
    with pytest.raises(QueueError, match="at least one"):
        await env.QUEUE.send_batch([])


# -- Durable Objects ---------------------------------------------------------------------------


async def test_do_ids(env: WorkersEnv) -> None:
    ns = env.COUNTERS
    a, b = ns.id_from_name("a"), ns.id_from_name("a")
    assert a == b and a.name == "a" and len(str(a)) == 64
    unique = ns.new_unique_id()
    assert unique != a and unique.name is None
    assert ns.id_from_string(str(a)) == a
    with pytest.raises(DurableObjectError):
        ns.id_from_string("not hex")


async def test_do_rpc_converts_both_ways(env: WorkersEnv) -> None:
    stub = env.COUNTERS.get_by_name(f"rpc-{uuid.uuid4().hex}")
    assert await stub.add(2) == 2
    assert await stub.add(3) == 5
    value = {"a": [1, None, {"b": "é"}], "n": 2.5, "t": True}
    assert await stub.echo(value) == value
    assert await stub.echo(None) is None
    assert await stub.echo(b"\x00\xff") == b"\x00\xff"
    assert await stub.echo(1, "two") == [1, "two"]
    assert await stub.describe({"a": 1}) == {"kind": "object", "json": '{"a":1}'}  # not a Map
    assert (await stub.describe(None))["kind"] == "null"  # not undefined
    assert (await stub.describe(b"x"))["kind"] == "Uint8Array"
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert await stub.echo(when) == when
    # A JS error thrown by the object is a DurableObjectError. (Through Miniflare's Node
    # proxy its message is replaced by an internal assertion's, so it is not checked.)
    with pytest.raises(DurableObjectError):
        await stub.fail("boom")
    with pytest.raises(DurableObjectError, match="cannot be sent"):
        await stub.echo({1, 2})


async def test_do_fetch(env: WorkersEnv) -> None:
    stub = env.COUNTERS.get(env.COUNTERS.id_from_name("fetch"))
    resp = await stub.fetch(
        "https://do/echo", method="POST", headers={"x-test": "yes"}, body=b"payload"
    )
    assert isinstance(resp, Response)
    assert resp.status == 201 and resp.headers["x-reply"] == "yes"
    assert resp.json() == {"method": "POST", "path": "/echo", "body": "payload", "header": "yes"}
    assert (await stub.fetch("https://do/id")).text() == str(stub.id)


async def test_do_stubs_wrapped_by_the_sdk(env: WorkersEnv, js_env: Any) -> None:
    class Wrapper:  # the shape of the SDK's _DurableObjectNamespaceWrapper / _FetcherWrapper
        def __init__(self, binding: Any) -> None:
            self._binding = binding

    ns = WorkersDurableObjectNamespace(Wrapper(js_env.COUNTERS))
    stub = ns.get_by_name(f"wrapped-{uuid.uuid4().hex}")
    assert await stub.add(4) == 4
    assert await stub.describe({"a": 1}) == {"kind": "object", "json": '{"a":1}'}
