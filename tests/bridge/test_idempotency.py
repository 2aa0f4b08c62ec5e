"""An op with an idempotency key runs at most once, however often it is sent."""

from __future__ import annotations

from typing import Any

from flarebase.platform import Env, open_env

from .conftest import CONFIG


async def test_an_idempotency_key_runs_the_op_once(env: Env) -> None:
    await env.DB.exec("CREATE TABLE t (x INTEGER)")
    client = env.DB._client
    op = {
        "op": "d1.run",
        "binding": "DB",
        "sql": "INSERT INTO t VALUES (1)",
        "params": [],
        "idempotencyKey": "test-key-1",
    }
    first = await client.submit(op, idempotent=True)
    again = await client.submit(op, idempotent=True)
    assert first == again and first["ok"]["meta"]["changes"] == 1
    assert await env.DB.prepare("SELECT count(*) AS n FROM t").first("n") == 1


async def test_the_provider_can_key_every_write(bridge: Any) -> None:
    async with open_env(
        CONFIG, provider="bridge", url=bridge.url, secret=bridge.secret, idempotency=True
    ) as env:
        await env.DB.exec("CREATE TABLE IF NOT EXISTS keyed (x INTEGER)")
        await env.DB.prepare("INSERT INTO keyed VALUES (?)").bind(7).run()
        assert await env.DB.prepare("SELECT x FROM keyed").first("x") == 7
        await env.JOBS.send({"hello": "world"})
