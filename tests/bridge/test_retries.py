"""Retries: only where repeating cannot change the outcome (no Worker needed: a mock
transport plays the bridge)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flarebase.platform.bridge import BridgeAuthError, BridgeUnavailable
from flarebase.platform.bridge.client import BridgeClient, OpError, sign

SECRET = "s" * 32


def client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> BridgeClient:
    return BridgeClient(
        "http://bridge.test",
        SECRET,
        transport=httpx.MockTransport(handler),
        backoff=0.001,
        **options,
    )


def ok(request: httpx.Request) -> httpx.Response:
    ops = json.loads(request.content)["ops"]
    return httpx.Response(200, json={"results": [{"ok": op.get("key")} for op in ops]})


class Script:
    """Fails the first requests as told (an exception to raise or a status), then ok()."""

    def __init__(self, *failures: Any) -> None:
        self.failures = list(failures)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, int):
                return httpx.Response(failure, json={"error": {"message": "nope"}})
            raise failure
        return ok(request)


def mapper(error: OpError) -> Exception:
    return RuntimeError(error.message)


READ = {"op": "kv.get", "binding": "KV", "key": "k"}
WRITE = {"op": "queue.send", "binding": "Q", "key": "w"}


async def call(c: BridgeClient, op: dict[str, Any], idempotent: bool) -> Any:
    try:
        return await c.call(op, mapper, idempotent=idempotent)
    finally:
        await c.aclose()


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_request_that_never_left_is_retried(idempotent: bool) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"))
    assert await call(client(script), WRITE if not idempotent else READ, idempotent) in ("k", "w")
    assert len(script.requests) == 3


async def test_a_lost_answer_is_retried_for_an_idempotent_op() -> None:
    script = Script(httpx.ReadTimeout("lost"), 503)
    assert await call(client(script), READ, True) == "k"
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("lost"), httpx.RemoteProtocolError("x"), 502]
)
async def test_a_lost_answer_is_not_retried_for_a_write(failure: Any) -> None:
    script = Script(failure)
    with pytest.raises(BridgeUnavailable) as e:
        await call(client(script), WRITE, False)
    assert e.value.maybe_applied is True
    assert len(script.requests) == 1


async def test_a_write_with_an_idempotency_key_is_retried_with_the_same_key() -> None:
    script = Script(httpx.ReadTimeout("lost"))
    assert await call(client(script, idempotency=True), WRITE, False) == "w"
    keys = [json.loads(r.content)["ops"][0]["idempotencyKey"] for r in script.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


async def test_429_means_not_run_so_it_is_retried() -> None:
    script = Script(429)
    assert await call(client(script), WRITE, False) == "w"
    assert len(script.requests) == 2


async def test_retries_give_up() -> None:
    script = Script(*[httpx.ConnectError("down")] * 10)
    with pytest.raises(BridgeUnavailable, match="cannot reach the bridge") as e:
        await call(client(script, retries=2), READ, True)
    assert e.value.maybe_applied is False
    assert len(script.requests) == 3


async def test_auth_errors_are_not_retried() -> None:
    script = Script(401)
    with pytest.raises(BridgeAuthError):
        await call(client(script), READ, True)
    assert len(script.requests) == 1


async def test_every_attempt_is_signed_afresh() -> None:
    script = Script(httpx.ConnectError("refused"))
    await call(client(script), READ, True)
    first, second = script.requests
    assert first.headers["x-bridge-nonce"] != second.headers["x-bridge-nonce"]
    for r in script.requests:
        expected = sign(
            SECRET,
            "POST",
            "/v1/ops",
            r.headers["x-bridge-timestamp"],
            r.headers["x-bridge-nonce"],
            r.headers["x-bridge-content-sha256"],
        )
        assert r.headers["authorization"] == f"FLAREBASE-HMAC-SHA256 {expected}"
