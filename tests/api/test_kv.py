"""Workers KV over the REST API, against a recording fake of api.cloudflare.com (no
real account is reachable here): exact requests, result mapping and errors.

Shapes are those of Cloudflare's API reference for Workers KV: values read as raw
bytes from `.../values/{key}` (404 with code 10009 for a missing key), written as
multipart `value` + `metadata`, listed from `.../keys` with `result_info.cursor`, and
read in bulk from `.../bulk/get`.
"""

from __future__ import annotations

import io

import pytest

from flarebase.platform import Env, KVError
from flarebase.platform.kv import KVKey, KVListResult, KVTypeError, KVValueWithMetadata

from .conftest import api, multipart
from .fake_cloudflare import FakeCloudflare, Reply, fail, ok

NS = api("/storage/kv/namespaces/ns0123456789abcdef")
MISSING = fail(404, 10009, "get: 'key not found'")


def value(data: bytes) -> Reply:
    return Reply(200, data)


async def test_get_reads_the_raw_value_of_a_percent_encoded_key(env: Env, fake: FakeCloudflare):
    fake.answer("GET", f"{NS}/values/users%2F1%20%C3%A9", value("héllo".encode()))

    assert await env.CACHE.get("users/1 é") == "héllo"
    assert fake.requests[0].method == "GET"


async def test_get_decodes_as_asked(env: Env, fake: FakeCloudflare):
    fake.answer("GET", f"{NS}/values/k", value(b'{"a": [1, 2]}'))

    assert await env.CACHE.get("k", "json") == {"a": [1, 2]}
    assert await env.CACHE.get("k", "bytes") == b'{"a": [1, 2]}'
    chunks = [c async for c in await env.CACHE.get("k", "stream")]
    assert b"".join(chunks) == b'{"a": [1, 2]}'


async def test_a_missing_key_reads_as_none(env: Env, fake: FakeCloudflare):
    fake.answer("GET", f"{NS}/values/gone", MISSING)

    assert await env.CACHE.get("gone") is None
    assert await env.CACHE.get_with_metadata("gone", "bytes") == KVValueWithMetadata(None, None)


async def test_a_missing_namespace_is_an_error_not_a_missing_key(env: Env, fake: FakeCloudflare):
    fake.answer("GET", f"{NS}/values/k", fail(404, 10013, "get: 'namespace not found'"))

    with pytest.raises(KVError) as caught:
        await env.CACHE.get("k")
    assert str(caught.value) == "KV GET failed: 404 get: 'namespace not found' [code: 10013]"


async def test_get_with_metadata_of_text_is_one_bulk_read(env: Env, fake: FakeCloudflare):
    answer = {"values": {"k": {"value": "v", "metadata": {"n": 1}, "expiration": 1900000000}}}
    fake.answer("POST", f"{NS}/bulk/get", ok(answer))

    assert await env.CACHE.get_with_metadata("k") == KVValueWithMetadata("v", {"n": 1})
    [request] = fake.requests
    assert request.json == {"keys": ["k"], "type": "text", "withMetadata": True}


async def test_get_with_metadata_of_bytes_reads_value_then_metadata(env: Env, fake: FakeCloudflare):
    fake.answer("GET", f"{NS}/values/k", value(b"\x00\xff"))
    fake.answer("GET", f"{NS}/metadata/k", ok({"owner": "ada"}))

    found = await env.CACHE.get_with_metadata("k", "bytes")

    assert found == KVValueWithMetadata(b"\x00\xff", {"owner": "ada"})
    assert [r.path for r in fake.requests] == [f"{NS}/values/k", f"{NS}/metadata/k"]


async def test_bulk_get_keeps_json_values_as_they_are(env: Env, fake: FakeCloudflare):
    # The SDK's typed model would turn 1 into 1.0: the provider must not.
    fake.answer("POST", f"{NS}/bulk/get", ok({"values": {"a": 1, "b": [1, 2], "c": None}}))

    found = await env.CACHE.get(["a", "b", "c"], "json")

    assert found == {"a": 1, "b": [1, 2], "c": None}
    assert isinstance(found["a"], int)
    assert fake.requests[0].json == {"keys": ["a", "b", "c"], "type": "json", "withMetadata": False}


async def test_list_pages_with_the_cursor(env: Env, fake: FakeCloudflare):
    first = ok(
        [{"name": "a", "expiration": 1900000000, "metadata": {"x": 1}}, {"name": "b"}],
        result_info={"count": 2, "cursor": "c2"},
    )
    last = ok([{"name": "c"}], result_info={"count": 1, "cursor": ""})
    fake.answer("GET", f"{NS}/keys", first, last)

    page = await env.CACHE.list(prefix="p/", limit=2)
    final = await env.CACHE.list(prefix="p/", limit=2, cursor=page.cursor)

    assert page == KVListResult([KVKey("a", 1900000000, {"x": 1}), KVKey("b")], False, "c2")
    assert final == KVListResult([KVKey("c")], True, None)
    assert [r.query for r in fake.requests] == [
        {"prefix": ["p/"], "limit": ["2"]},
        {"prefix": ["p/"], "limit": ["2"], "cursor": ["c2"]},
    ]


async def test_put_sends_value_metadata_and_expiry(env: Env, fake: FakeCloudflare):
    fake.answer("PUT", f"{NS}/values/k", ok(None))

    await env.CACHE.put("k", "välue", expiration_ttl=120, metadata={"v": 2})

    [request] = fake.requests
    assert request.query == {"expiration_ttl": ["120"]}
    parts = multipart(request)
    assert parts["value"] == "välue".encode()
    assert parts["metadata"] == b'{"v": 2}'


async def test_put_reads_files_and_streams(env: Env, fake: FakeCloudflare):
    fake.answer("PUT", f"{NS}/values/k", ok(None))

    async def stream():
        yield b"ab"
        yield bytearray(b"cd")

    await env.CACHE.put("k", io.BytesIO(b"file bytes"), expiration=1900000000)
    await env.CACHE.put("k", stream())

    assert [multipart(r)["value"] for r in fake.requests] == [b"file bytes", b"abcd"]
    assert fake.requests[0].query == {"expiration": ["1900000000"]}


async def test_a_refused_write_carries_cloudflares_message(env: Env, fake: FakeCloudflare):
    fake.answer(
        "PUT",
        f"{NS}/values/k",
        fail(400, 10033, "Invalid expiration_ttl of 10. Please specify integer greater than 60"),
    )

    with pytest.raises(KVError) as caught:
        await env.CACHE.put("k", "v", expiration_ttl=10)
    assert "KV PUT failed: 400 Invalid expiration_ttl of 10" in str(caught.value)
    assert len(fake.requests) == 1  # a 400 is not retried


async def test_rate_limited_writes_are_retried_then_raised(env: Env, fake: FakeCloudflare):
    limited = fail(429, 10049, "put: 'Too many requests'", {"retry-after": "0"})
    fake.answer("PUT", f"{NS}/values/k", limited)

    with pytest.raises(KVError) as caught:
        await env.CACHE.put("k", "v")
    assert caught.value.code == "KV_TOO_MANY_REQUESTS"
    assert len(fake.requests) == 3  # the first attempt and `retries=2` more


async def test_delete_of_a_missing_key_is_fine(env: Env, fake: FakeCloudflare):
    fake.answer("DELETE", f"{NS}/values/gone", MISSING)

    await env.CACHE.delete("gone")
    assert fake.requests[0].method == "DELETE"


@pytest.mark.parametrize("key", ["", ".", "..", 7, "lone \ud800"])
async def test_keys_the_url_cannot_carry_are_refused_locally(
    env: Env, fake: FakeCloudflare, key: object
):
    with pytest.raises(KVTypeError):
        await env.CACHE.get(key)
    with pytest.raises(KVTypeError):
        await env.CACHE.put(key, "v")
    assert fake.requests == []
