"""Ops started together travel in one request; each keeps its own result or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flarebase.platform import D1Error, Env, KVError, open_env

from .conftest import CONFIG


async def test_concurrent_ops_share_one_request(env: Env) -> None:
    client = env.KV._client
    before = client.requests
    await asyncio.gather(*(env.KV.put(f"k{i:02}", f"v{i}") for i in range(50)))
    assert client.requests - before == 1
    values = await asyncio.gather(*(env.KV.get(f"k{i:02}") for i in range(50)))
    assert values == [f"v{i}" for i in range(50)]
    assert client.requests - before == 2


async def test_sequential_ops_are_one_request_each(env: Env) -> None:
    client = env.KV._client
    before = client.requests
    for i in range(3):
        await env.KV.put(f"s{i}", "v")
    assert client.requests - before == 3


async def test_products_mix_in_one_request_and_errors_stay_with_their_op(env: Env) -> None:
    client = env.KV._client
    await env.KV.put("a", "1")
    before = client.requests
    results = await asyncio.gather(
        env.KV.get("a"),
        env.DB.prepare("SELEC 1").all(),
        env.KV.put("x" * 513, "too long a key"),
        env.DB.prepare("SELECT 2 AS two").first("two"),
        return_exceptions=True,
    )
    assert client.requests - before == 1
    assert results[0] == "1"
    assert isinstance(results[1], D1Error) and "syntax error" in str(results[1])
    assert isinstance(results[2], KVError) and "414" in str(results[2])
    assert results[3] == 2


async def test_ops_of_one_request_run_in_the_order_they_were_started(env: Env) -> None:
    _, got = await asyncio.gather(env.KV.put("order", "first"), env.KV.get("order"))
    assert got == "first"


async def test_max_batch_splits_large_batches(bridge: Any) -> None:
    async with open_env(
        CONFIG, provider="bridge", url=bridge.url, secret=bridge.secret, max_batch=10
    ) as env:
        client = env.KV._client
        before = client.requests
        await asyncio.gather(*(env.KV.get(f"m{i}") for i in range(25)))
        assert client.requests - before == 3


async def test_a_d1_batch_is_one_op(env: Env) -> None:
    await env.DB.exec("CREATE TABLE t (x INTEGER)")
    insert = env.DB.prepare("INSERT INTO t VALUES (?)")
    client = env.DB._client
    before = client.requests
    results = await env.DB.batch([insert.bind(i) for i in range(20)])
    assert client.requests - before == 1
    assert [r.meta.changes for r in results] == [1] * 20
    with pytest.raises(D1Error):
        await env.DB.batch([insert.bind(1), env.DB.prepare("INSERT INTO nope VALUES (1)")])
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 20
