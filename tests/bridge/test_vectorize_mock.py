"""The bridge's Vectorize path, against a MOCK Vectorize binding (Miniflare has none):
these tests check that calls and results cross the bridge intact, not Vectorize itself."""

from __future__ import annotations

import pytest

from flarebase.platform import Env, VectorizeError
from flarebase.platform.vectorize import VectorizeVector


async def test_every_call_reaches_the_mock_binding(env: Env) -> None:
    index = env.INDEX
    mutation = await index.upsert(
        [
            VectorizeVector("a", [1.0, 0.0, 0.0], metadata={"kind": "x"}),
            {"id": "b", "values": [0.0, 1.0, 0.0], "namespace": "ns"},
            {"id": "c", "values": [0.9, 0.1, 0.0], "metadata": {"kind": "y"}},
        ]
    )
    assert mutation.mutation_id.startswith("mock-mutation-")
    await index.insert([{"id": "a", "values": [0.0, 0.0, 1.0]}])  # insert keeps the first
    found = await index.query([1.0, 0.0, 0.0], top_k=2, return_values=True, return_metadata="all")
    assert [m.id for m in found.matches] == ["a", "c"]
    assert found.matches[0].values == [1.0, 0.0, 0.0]
    assert found.matches[0].metadata == {"kind": "x"}
    assert found.matches[0].score == pytest.approx(1.0)
    filtered = await index.query([1.0, 0.0, 0.0], {"filter": {"kind": "y"}})
    assert [m.id for m in filtered.matches] == ["c"]
    by_id = await index.query_by_id("b", namespace="ns")
    assert [m.id for m in by_id.matches] == ["b"] and by_id.matches[0].namespace == "ns"
    vectors = await index.get_by_ids(["c", "missing", "a"])
    assert [v.id for v in vectors] == ["c", "a"]
    assert vectors[0].values == pytest.approx([0.9, 0.1, 0.0])
    await index.delete_by_ids(["a"])
    details = await index.describe()
    assert (details.dimensions, details.vector_count) == (3, 2)
    assert details.processed_up_to_mutation is not None


async def test_binding_errors_come_back_as_vectorize_errors(env: Env) -> None:
    await env.INDEX.upsert([{"id": "a", "values": [1.0, 0.0, 0.0]}])
    with pytest.raises(VectorizeError, match="has 2 dimensions, the index has 3"):
        await env.INDEX.upsert([{"id": "bad", "values": [1.0, 2.0]}])
