"""Vectorize over the REST API, against a recording fake of api.cloudflare.com (no real
account is reachable here): exact requests, result mapping and errors.

Shapes are those of Cloudflare's API reference for Vectorize V2 (insert/upsert take
an NDJSON body; query, get_by_ids and delete_by_ids JSON) and of wrangler's client,
which sends `vectorId` to `/query` for a query by id.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flarebase.platform import Env, VectorizeError
from flarebase.platform.vectorize import (
    VectorizeAsyncMutation,
    VectorizeIndexDetails,
    VectorizeMatch,
    VectorizeMatches,
    VectorizeVector,
)

from .conftest import api
from .fake_cloudflare import FakeCloudflare, fail, ok

INDEX = api("/vectorize/v2/indexes/docs")


@pytest.mark.parametrize("op", ["insert", "upsert"])
async def test_writes_send_one_vector_per_ndjson_line(env: Env, fake: FakeCloudflare, op: str):
    fake.answer("POST", f"{INDEX}/{op}", ok({"mutationId": "m-1"}))
    vectors = [
        VectorizeVector("a", [0.5, 1.0], namespace="n", metadata={"k": "v"}),
        {"id": "b", "values": np.array([0.25, 2.0], dtype=np.float32)},
    ]

    mutation = await getattr(env.INDEX, op)(vectors)

    [request] = fake.requests
    assert request.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in request.body.decode().split("\n")]
    assert lines == [
        {"id": "a", "values": [0.5, 1.0], "namespace": "n", "metadata": {"k": "v"}},
        {"id": "b", "values": [0.25, 2.0]},
    ]
    assert mutation == VectorizeAsyncMutation("m-1")


async def test_query_sends_cloudflares_option_names(env: Env, fake: FakeCloudflare):
    matches = {
        "count": 2,
        "matches": [
            {"id": "a", "score": 0.9, "metadata": {"k": "v"}, "namespace": "n"},
            {"id": "b", "score": 0.5, "values": [1.0, 0.0]},
        ],
    }
    fake.answer("POST", f"{INDEX}/query", ok(matches))

    found = await env.INDEX.query(
        [1, 0.5],
        {"returnValues": True},
        top_k=3,
        namespace="n",
        filter={"k": {"$eq": "v"}},
        return_metadata="all",
    )

    assert fake.requests[0].json == {
        "vector": [1.0, 0.5],
        "topK": 3,
        "namespace": "n",
        "filter": {"k": {"$eq": "v"}},
        "returnValues": True,
        "returnMetadata": "all",
    }
    assert found == VectorizeMatches(
        2,
        [
            VectorizeMatch("a", 0.9, None, "n", {"k": "v"}),
            VectorizeMatch("b", 0.5, [1.0, 0.0]),
        ],
    )


async def test_query_by_id_sends_the_vector_id(env: Env, fake: FakeCloudflare):
    fake.answer("POST", f"{INDEX}/query", ok({"count": 0, "matches": []}))

    assert await env.INDEX.query_by_id("a", top_k=2) == VectorizeMatches(0, [])
    assert fake.requests[0].json == {"vectorId": "a", "topK": 2}


async def test_get_and_delete_by_ids(env: Env, fake: FakeCloudflare):
    stored = [{"id": "a", "values": [1.0, 2.0], "metadata": {"k": 1}}]
    fake.answer("POST", f"{INDEX}/get_by_ids", ok(stored))
    fake.answer("POST", f"{INDEX}/delete_by_ids", ok({"mutationId": "m-2"}))

    assert await env.INDEX.get_by_ids(["a", "zz"]) == [
        VectorizeVector("a", [1.0, 2.0], None, {"k": 1})
    ]
    assert await env.INDEX.delete_by_ids(["a"]) == VectorizeAsyncMutation("m-2")
    assert [r.json for r in fake.requests] == [{"ids": ["a", "zz"]}, {"ids": ["a"]}]


async def test_describe_reads_info(env: Env, fake: FakeCloudflare):
    info = {
        "dimensions": 2,
        "vectorCount": 10,
        "processedUpToDatetime": "2025-01-02T03:04:05.678Z",
        "processedUpToMutation": "m-9",
    }
    fake.answer("GET", f"{INDEX}/info", ok(info))

    details = await env.INDEX.describe()

    assert details == VectorizeIndexDetails(2, 10, "2025-01-02T03:04:05.678Z", "m-9")


async def test_errors_are_worded_as_the_local_index_words_them(env: Env, fake: FakeCloudflare):
    fake.answer(
        "POST",
        f"{INDEX}/query",
        fail(400, 40006, "VECTOR_QUERY_ERROR: query vector has 3 dimensions, index has 2"),
    )

    with pytest.raises(VectorizeError) as caught:
        await env.INDEX.query([1, 2, 3])

    assert caught.value.code == "VECTOR_QUERY_ERROR"
    assert str(caught.value).startswith("VECTOR_QUERY_ERROR (code = 40006): ")


async def test_values_json_cannot_carry_are_refused_locally(env: Env, fake: FakeCloudflare):
    with pytest.raises(VectorizeError, match="JSON"):
        await env.INDEX.upsert([{"id": "a", "values": [float("nan")]}])
    with pytest.raises(VectorizeError, match="strings"):
        await env.INDEX.get_by_ids([1])
    assert fake.requests == []
