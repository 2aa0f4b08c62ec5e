"""Every request to the bridge is signed; stale, replayed and tampered ones are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import pytest

from flarebase.platform import Env, open_env
from flarebase.platform.bridge import BridgeAuthError, BridgeError
from flarebase.platform.bridge import client as bridge_client
from flarebase.platform.bridge.client import CHUNK_SCHEME, SCHEME, STREAMING, sign

from .conftest import CONFIG, miniflare_bridge

OPS = "/v1/ops"


def headers_for(
    bridge: Any,
    path: str,
    body: bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    digest: str | None = None,
    op_header: str = "",
) -> dict[str, str]:
    timestamp_s = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    digest = digest or hashlib.sha256(body).hexdigest()
    signature = sign(secret or bridge.secret, "POST", path, timestamp_s, nonce, digest, op_header)
    headers = {
        "authorization": f"{SCHEME} {signature}",
        "x-bridge-timestamp": timestamp_s,
        "x-bridge-nonce": nonce,
        "x-bridge-content-sha256": digest,
    }
    if op_header:
        headers["x-bridge-op"] = op_header
    return headers


def ops(*op: dict[str, Any]) -> bytes:
    return json.dumps({"ops": list(op)}).encode()


def post(bridge: Any, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(bridge.url + path, content=body, headers=headers, timeout=30)


def test_health_needs_no_signature(bridge: Any) -> None:
    response = httpx.get(bridge.url + "/v1/health")
    assert response.json() == {"ok": True, "protocol": 1}


def test_a_signed_request_runs(bridge: Any) -> None:
    body = ops({"op": "d1.first", "binding": "DB", "sql": "SELECT 41 + 1 AS n", "column": "n"})
    response = post(bridge, OPS, body, headers_for(bridge, OPS, body))
    assert response.status_code == 200
    assert response.json() == {"results": [{"ok": 42}]}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": f"{SCHEME} " + "0" * 64},
        {"authorization": "Bearer whatever"},
    ],
)
def test_unsigned_or_badly_signed_requests_are_refused(
    bridge: Any, headers: dict[str, str]
) -> None:
    body = ops({"op": "kv.list", "binding": "KV"})
    good = headers_for(bridge, OPS, body)
    response = post(bridge, OPS, body, {**good, **headers} if headers else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "BRIDGE_AUTH"


def test_a_wrong_secret_is_refused(bridge: Any) -> None:
    body = ops({"op": "kv.list", "binding": "KV"})
    response = post(bridge, OPS, body, headers_for(bridge, OPS, body, secret="x" * 32))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "bad signature"


async def test_the_provider_raises_bridge_auth_error_on_a_wrong_secret(bridge: Any) -> None:
    async with open_env(CONFIG, provider="bridge", url=bridge.url, secret="y" * 32) as env:
        with pytest.raises(BridgeAuthError, match="bad signature"):
            await env.KV.get("k")


def test_a_replayed_request_is_refused(bridge: Any) -> None:
    body = ops({"op": "kv.put", "binding": "KV", "key": "once", "value": "v"})
    headers = headers_for(bridge, OPS, body)
    assert post(bridge, OPS, body, headers).status_code == 200
    replay = post(bridge, OPS, body, headers)
    assert replay.status_code == 401
    assert "replayed" in replay.json()["error"]["message"]


@pytest.mark.parametrize("age", [-400, 400])
def test_a_timestamp_outside_the_window_is_refused(bridge: Any, age: int) -> None:
    body = ops({"op": "kv.list", "binding": "KV"})
    headers = headers_for(bridge, OPS, body, timestamp=int(time.time()) - age)
    response = post(bridge, OPS, body, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "BRIDGE_CLOCK"


def test_a_tampered_body_is_refused(bridge: Any) -> None:
    body = ops({"op": "kv.put", "binding": "KV", "key": "k", "value": "honest"})
    headers = headers_for(bridge, OPS, body)
    tampered = body.replace(b"honest", b"forged")
    response = post(bridge, OPS, tampered, headers)
    assert response.status_code == 401
    assert "body does not match" in response.json()["error"]["message"]


def test_the_signature_covers_the_path(bridge: Any) -> None:
    body = ops({"op": "kv.list", "binding": "KV"})
    headers = headers_for(bridge, "/v1/stream", body)  # signed for another path
    assert post(bridge, OPS, body, headers).status_code == 401


async def test_a_client_with_a_wrong_clock_corrects_itself(
    bridge: Any, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Fast:
        @staticmethod
        def time() -> float:
            return time.time() + 3600  # an hour ahead

    monkeypatch.setattr(bridge_client, "time", Fast)
    client = env.KV._client
    before = client.requests
    assert await env.KV.get("nothing") is None
    assert client.requests - before == 2  # refused once, then on the server's clock
    assert await env.KV.get("nothing") is None
    assert client.requests - before == 3


def test_secrets_and_vars_are_not_reachable_as_bindings(bridge: Any) -> None:
    body = ops({"op": "kv.get", "binding": "BRIDGE_SECRET", "key": "k"})
    [result] = post(bridge, OPS, body, headers_for(bridge, OPS, body)).json()["results"]
    assert result["error"]["code"] == "BRIDGE_NO_BINDING"
    assert bridge.secret not in json.dumps(result)


def test_unknown_ops_and_bindings_are_errors_of_that_op_only(bridge: Any) -> None:
    body = ops(
        {"op": "kv.frobnicate", "binding": "KV"},
        {"op": "d1.all", "binding": "NOPE", "sql": "SELECT 1"},
        {"op": "d1.first", "binding": "DB", "sql": "SELECT 1 AS one", "column": "one"},
    )
    results = post(bridge, OPS, body, headers_for(bridge, OPS, body)).json()["results"]
    assert results[0]["error"]["code"] == "BRIDGE_UNKNOWN_OP"
    assert results[1]["error"]["code"] == "BRIDGE_NO_BINDING"
    assert "this bridge has: DB" in results[1]["error"]["message"]
    assert results[2] == {"ok": 1}


def test_reset_is_refused_unless_enabled() -> None:
    with (
        miniflare_bridge() as strict,
        pytest.raises(BridgeError, match=r"admin\.reset is disabled"),
    ):
        strict.reset()


# -- streamed bodies: signed frame by frame ----------------------------------------------------


def frames(secret: str, signature: str, pieces: list[bytes], *, forge: int | None = None) -> bytes:
    out, previous = b"", signature
    for i, data in enumerate(pieces):
        signed = f"{CHUNK_SCHEME}\n{previous}\n{hashlib.sha256(data).hexdigest()}".encode()
        mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
        previous = mac.hex()
        if i == forge:
            mac = bytes(32)
        out += len(data).to_bytes(4, "big") + mac + data
    return out


def stream_put(
    bridge: Any, key: str, pieces: list[bytes], length: int | None = None, **frame_options: Any
) -> httpx.Response:
    if length is None:
        length = sum(len(p) for p in pieces)
    op = json.dumps({"op": "r2.put", "binding": "BUCKET", "key": key, "length": length})
    headers = headers_for(bridge, "/v1/stream", b"", digest=STREAMING, op_header=op)
    signature = headers["authorization"].split()[-1]
    body = frames(bridge.secret, signature, pieces, **frame_options)
    return post(bridge, "/v1/stream", body, headers)


def head(bridge: Any, key: str) -> Any:
    body = ops({"op": "r2.head", "binding": "BUCKET", "key": key})
    [result] = post(bridge, OPS, body, headers_for(bridge, OPS, body)).json()["results"]
    return result["ok"]


def test_a_framed_body_is_written(bridge: Any) -> None:
    response = stream_put(bridge, "framed", [b"hello ", b"world", b""])
    assert response.status_code == 200
    assert head(bridge, "framed")["size"] == 11


def test_a_forged_frame_fails_the_write(bridge: Any) -> None:
    response = stream_put(bridge, "forged", [b"a" * 1000, b"b" * 1000, b""], forge=1)
    assert response.status_code == 401
    assert "bad signature" in response.json()["error"]["message"]
    assert head(bridge, "forged") is None


def test_a_truncated_body_fails_the_write(bridge: Any) -> None:
    # Cut short: 1,000 of 2,000 bytes, and no final empty frame. (A body whose every
    # byte arrived, each frame verified, is written even if its final frame is lost.)
    response = stream_put(bridge, "truncated", [b"a" * 1000], length=2000)
    assert response.status_code == 401
    assert "ended before its last frame" in response.json()["error"]["message"]
    assert head(bridge, "truncated") is None
