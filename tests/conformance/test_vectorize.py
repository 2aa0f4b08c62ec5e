"""Vectorize (V2): every Vectorize row of cloudflare-limits.md, and the semantics of
insert/upsert, scores, filters and namespaces.

Indexes are created with the local admin functions (what `flarebase vectorize
create` runs); a provider without them skips. Each test gets fresh state.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from flarebase.platform import Project, VectorizeError, load_project, open_env
from flarebase.platform.local import vectorize as local_vectorize
from flarebase.platform.local.vectorize import (
    LocalVectorize,
    create_index,
    create_metadata_index,
    delete_index,
    delete_metadata_index,
    get_index,
    list_indexes,
    list_metadata_indexes,
)
from flarebase.platform.vectorize import VectorizeVector

from .conftest import CONFIG

INDEX = "conformance"
# Only the Vectorize bindings: these tests need nothing else from the project.
PROJECT = Project(path=CONFIG, vectorize=load_project(CONFIG).vectorize)

Open = Callable[..., Awaitable[Any]]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def open_index(provider: str, state: Path) -> AsyncIterator[Open]:
    """`await open_index(dimensions, metric, {prop: type})` creates the index and returns
    `env.VECTORIZE`; `await open_index(create=False)` opens the existing one again."""
    if provider != "local":
        pytest.skip("index administration is only implemented for the local provider")
    stack = AsyncExitStack()

    async def make(
        dimensions: int = 3,
        metric: str = "cosine",
        indexes: dict[str, str] | None = None,
        *,
        create: bool = True,
    ) -> Any:
        if create:
            create_index(state, INDEX, dimensions=dimensions, metric=metric)
            for prop, kind in (indexes or {}).items():
                create_metadata_index(state, INDEX, prop, kind)
        env = await stack.enter_async_context(open_env(PROJECT, provider=provider, state_dir=state))
        return env.VECTORIZE

    async with stack:
        yield make


def vec(vector_id: str, values: list[float], **extra: Any) -> dict[str, Any]:
    return {"id": vector_id, "values": values, **extra}


def ids(result: Any) -> list[str]:
    return [m.id for m in result.matches]


# ---------------------------------------------------------------- index administration


async def test_a_binding_on_an_index_that_was_not_created_names_the_command(
    open_index: Open,
) -> None:
    index = await open_index(create=False)
    with pytest.raises(VectorizeError, match="flarebase vectorize create conformance"):
        await index.describe()


async def test_dimensions_are_1_to_1536(open_index: Open, state: Path) -> None:
    for bad in (0, 1537, -1, 3.5, True):
        with pytest.raises(VectorizeError, match="dimensions"):
            create_index(state, INDEX, dimensions=bad, metric="cosine")  # type: ignore[arg-type]
    index = await open_index(dimensions=1536)
    await index.insert([vec("big", [0.5] * 1536)])
    result = await index.query([0.5] * 1536, top_k=1)
    assert ids(result) == ["big"]
    assert (await index.describe()).dimensions == 1536


async def test_one_dimension_is_allowed(open_index: Open) -> None:
    index = await open_index(dimensions=1, metric="euclidean")
    await index.insert([vec("a", [1.0]), vec("b", [4.0])])
    result = await index.query([3.5])
    assert [(m.id, m.score) for m in result.matches] == [("b", 0.5), ("a", 2.5)]


async def test_metrics_are_cosine_euclidean_dot_product_and_fixed(state: Path) -> None:
    with pytest.raises(VectorizeError, match="metric must be one of"):
        create_index(state, INDEX, dimensions=3, metric="manhattan")
    for i, metric in enumerate(("cosine", "euclidean", "dot-product")):
        info = create_index(state, f"m{i}-idx", dimensions=3, metric=metric)
        assert info.config.metric == metric
        assert get_index(state, f"m{i}-idx").config.metric == metric
    with pytest.raises(VectorizeError, match="duplicate_name"):
        create_index(state, "m0-idx", dimensions=3, metric="euclidean")
    assert get_index(state, "m0-idx").config.metric == "cosine"


async def test_index_names_are_64_bytes_of_the_api_pattern(state: Path) -> None:
    create_index(state, "a" * 64, dimensions=2, metric="cosine")
    assert [i.name for i in list_indexes(state)] == ["a" * 64]
    with pytest.raises(VectorizeError, match="too long"):
        create_index(state, "a" * 65, dimensions=2, metric="cosine")
    for bad in ("Upper", "1starts-with-digit", "ends-with-dash-", "has space", "x", "a/b"):
        with pytest.raises(VectorizeError, match="invalid index name"):
            create_index(state, bad, dimensions=2, metric="cosine")


async def test_list_get_and_delete_indexes(open_index: Open, state: Path) -> None:
    index = await open_index()
    create_index(state, "other", dimensions=8, metric="dot-product", description="second")
    assert [(i.name, i.config.dimensions) for i in list_indexes(state)] == [
        ("conformance", 3),
        ("other", 8),
    ]
    await index.insert([vec("a", [1, 0, 0])])
    delete_index(state, INDEX)
    assert [i.name for i in list_indexes(state)] == ["other"]
    with pytest.raises(VectorizeError, match="not_found"):
        await index.query([1, 0, 0])
    with pytest.raises(VectorizeError, match="not_found"):
        get_index(state, INDEX)
    # a new index under the same name starts empty, with its own configuration
    create_index(state, INDEX, dimensions=2, metric="euclidean")
    details = await index.describe()
    assert (details.dimensions, details.vector_count) == (2, 0)


async def test_metadata_indexes_are_string_number_boolean_at_most_10(
    open_index: Open, state: Path
) -> None:
    await open_index()
    with pytest.raises(VectorizeError, match="must be one of string, number, boolean"):
        create_metadata_index(state, INDEX, "when", "date")
    for i in range(10):
        create_metadata_index(state, INDEX, f"p{i}", ("string", "number", "boolean")[i % 3])
    with pytest.raises(VectorizeError, match="maximum is 10"):
        create_metadata_index(state, INDEX, "p10", "string")
    with pytest.raises(VectorizeError, match="already exists"):
        create_metadata_index(state, INDEX, "p0", "number")
    listed = list_metadata_indexes(state, INDEX)
    assert [(m.property_name, m.index_type) for m in listed][:3] == [
        ("p0", "string"),
        ("p1", "number"),
        ("p2", "boolean"),
    ]
    assert len(listed) == 10
    delete_metadata_index(state, INDEX, "p0")
    create_metadata_index(state, INDEX, "p10", "string")
    assert len(list_metadata_indexes(state, INDEX)) == 10
    with pytest.raises(VectorizeError, match="no metadata index"):
        delete_metadata_index(state, INDEX, "p0")
    for bad in ("", "$x", 'a"b', "a..b", "x" * 513):
        with pytest.raises(VectorizeError):
            create_metadata_index(state, INDEX, bad, "string")


# ---------------------------------------------------------------- insert and upsert


async def test_insert_keeps_the_first_write_and_upsert_the_last(open_index: Open) -> None:
    index = await open_index(indexes={"v": "number"})
    await index.insert([vec("a", [1, 0, 0], metadata={"v": 1})])
    await index.insert(
        [vec("a", [0, 1, 0], metadata={"v": 2}), vec("b", [0, 0, 1]), vec("b", [0, 1, 1])]
    )
    got = {v.id: v for v in await index.get_by_ids(["a", "b"])}
    assert got["a"].values == [1.0, 0.0, 0.0] and got["a"].metadata == {"v": 1}
    assert got["b"].values == [0.0, 0.0, 1.0]  # first of the batch wins too

    await index.upsert(
        [vec("a", [0, 1, 0], namespace="n"), vec("b", [1, 1, 1]), vec("b", [2, 2, 2])]
    )
    got = {v.id: v for v in await index.get_by_ids(["a", "b"])}
    # the whole vector is replaced: metadata is not merged, the namespace changes
    assert got["a"].values == [0.0, 1.0, 0.0]
    assert got["a"].metadata is None and got["a"].namespace == "n"
    assert got["b"].values == [2.0, 2.0, 2.0]  # last of the batch wins
    assert (await index.query([1, 0, 0], filter={"v": 1})).count == 0
    assert (await index.describe()).vector_count == 2


async def test_writes_return_a_mutation_id_that_describe_reports(open_index: Open) -> None:
    index = await open_index()
    empty = await index.describe()
    assert (empty.vector_count, empty.processed_up_to_mutation) == (0, None)
    first = await index.insert([vec("a", [1, 0, 0])])
    second = await index.upsert([vec("b", [0, 1, 0])])
    assert first.mutation_id != second.mutation_id
    assert str(uuid.UUID(second.mutation_id)) == second.mutation_id
    details = await index.describe()
    assert details.processed_up_to_mutation == second.mutation_id
    assert details.vector_count == 2 and details.dimensions == 3
    assert details.processed_up_to_datetime and details.processed_up_to_datetime.endswith("Z")
    deleted = await index.delete_by_ids(["a"])
    assert (await index.describe()).processed_up_to_mutation == deleted.mutation_id


async def test_vectors_as_dataclasses_dicts_and_arrays(open_index: Open) -> None:
    import numpy as np

    index = await open_index()
    await index.upsert(
        [
            VectorizeVector("dc", [1, 0, 0], namespace="n", metadata={"k": "v"}),
            vec("dict", np.array([0, 1, 0], dtype=np.float64)),
            vec("gen", (0.0, 0.0, 1.0)),
        ]
    )
    got = await index.get_by_ids(["dc", "dict", "gen"])
    assert [(v.id, v.values, v.namespace, v.metadata) for v in got] == [
        ("dc", [1.0, 0.0, 0.0], "n", {"k": "v"}),
        ("dict", [0.0, 1.0, 0.0], None, None),
        ("gen", [0.0, 0.0, 1.0], None, None),
    ]
    assert got[0].to_dict() == {
        "id": "dc",
        "values": [1.0, 0.0, 0.0],
        "namespace": "n",
        "metadata": {"k": "v"},
    }


async def test_values_are_stored_as_float32(open_index: Open) -> None:
    index = await open_index()
    await index.insert([vec("a", [0.1, 0.2, 1e-50])])
    (got,) = await index.get_by_ids(["a"])
    assert got.values == [0.10000000149011612, 0.20000000298023224, 0.0]
    result = await index.query([0.1, 0.2, 0.0], return_values=True)
    assert result.matches[0].values == got.values


async def test_a_batch_is_all_or_nothing(open_index: Open) -> None:
    index = await open_index()
    with pytest.raises(VectorizeError, match="40012"):
        await index.upsert([vec("ok", [1, 0, 0]), vec("bad", [1, 0])])
    assert (await index.describe()).vector_count == 0
    assert await index.get_by_ids(["ok"]) == []


async def test_upsert_batch_is_at_most_1000_vectors(open_index: Open) -> None:
    index = await open_index(dimensions=2)
    await index.upsert([vec(str(i), [i, 1]) for i in range(1000)])
    assert (await index.describe()).vector_count == 1000
    for method in (index.insert, index.upsert):
        with pytest.raises(VectorizeError, match="max count is 1000, got 1001"):
            await method([vec(f"x{i}", [i, 1]) for i in range(1001)])
    assert (await index.describe()).vector_count == 1000


async def test_vector_ids_are_at_most_64_bytes(open_index: Open) -> None:
    index = await open_index()
    exactly = "é" * 32  # 64 bytes in UTF-8
    await index.insert([vec(exactly, [1, 0, 0])])
    assert ids(await index.query([1, 0, 0], top_k=1)) == [exactly]
    with pytest.raises(VectorizeError, match=r"VECTOR_UPSERT_ERROR \(code = 40008\): id too long"):
        await index.upsert([vec("é" * 32 + "x", [1, 0, 0])])
    with pytest.raises(VectorizeError, match="max is 64 bytes, got 65 bytes"):
        await index.insert([vec("a" * 65, [1, 0, 0])])
    with pytest.raises(VectorizeError, match="non-empty string"):
        await index.insert([vec("", [1, 0, 0])])


async def test_namespaces_are_at_most_64_bytes(open_index: Open) -> None:
    index = await open_index()
    await index.insert([vec("a", [1, 0, 0], namespace="n" * 64)])
    assert ids(await index.query([1, 0, 0], namespace="n" * 64)) == ["a"]
    with pytest.raises(VectorizeError, match="namespace too long"):
        await index.insert([vec("b", [1, 0, 0], namespace="n" * 65)])
    with pytest.raises(VectorizeError, match="namespace too long"):
        await index.query([1, 0, 0], namespace="ü" * 33)


async def test_metadata_is_at_most_10_kib_of_compact_json(open_index: Open) -> None:
    index = await open_index()
    overhead = len('{"k":""}')
    fits = {"k": "x" * (10240 - overhead)}
    await index.insert([vec("fits", [1, 0, 0], metadata=fits)])
    (got,) = await index.get_by_ids(["fits"])
    assert got.metadata == fits
    too_big = {"k": "x" * (10241 - overhead)}
    with pytest.raises(
        VectorizeError, match=r"\(code = 40016\).*must not exceed 10240 bytes, got 10241 bytes"
    ):
        await index.insert([vec("big", [1, 0, 0], metadata=too_big)])
    # multi-byte characters count as their UTF-8 bytes
    with pytest.raises(VectorizeError, match="40016"):
        await index.insert([vec("big", [1, 0, 0], metadata={"k": "€" * 3500})])


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"": 1}, "must not be empty"),
        ({"a.b": 1}, 'must not contain "."'),
        ({'a"b': 1}, "must not contain"),
        ({"$a": 1}, 'must not start with "\\$"'),
        ({"ok": {"$nested": 1}}, 'key "ok.\\$nested" must not start'),
        ({"ok": [{"a.b": 1}]}, 'must not contain "."'),
        ({1: "x"}, "is not a string"),
        ({"x": float("nan")}, "not JSON"),
        ({"x": {1, 2}}, "not JSON"),
        ({"x": "\ud800"}, "lone surrogate"),
        (["not", "an", "object"], "must be an object"),
    ],
)
async def test_metadata_keys_and_values_are_checked(
    open_index: Open, metadata: Any, problem: str
) -> None:
    index = await open_index()
    with pytest.raises(VectorizeError, match=problem):
        await index.upsert([vec("a", [1, 0, 0], metadata=metadata)])
    assert (await index.describe()).vector_count == 0


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        (
            vec("a", [1, 0]),
            r"\(code = 40012\): invalid vector for id=\"a\", expected 3 dimensions, "
            "and got 2 dimensions",
        ),
        (vec("a", [1, 0, 0, 0]), "and got 4 dimensions"),
        (vec("a", [1, float("nan"), 0]), r"\(code = 40023\).*NaN or Infinity"),
        (vec("a", [1, float("inf"), 0]), "NaN or Infinity"),
        (vec("a", [1, 1e39, 0]), "beyond float32"),
        (vec("a", ["1", 0, 0]), "flat list of numbers"),
        (vec("a", [[1, 0, 0]]), "flat list of numbers"),
        (vec("a", [None, 0, 0]), "flat list of numbers"),
        (vec("a", "1,0,0"), "must be a list of numbers"),
        (vec(7, [1, 0, 0]), "non-empty string"),
        (vec("a", [1, 0, 0], namespace=5), "namespace must be a string"),
        ({"id": "a"}, "needs id and values"),
        (vec("a", [1, 0, 0], extra=1), "unknown key"),
        ("a", "is a str"),
    ],
)
async def test_bad_vectors_are_refused(open_index: Open, vector: Any, problem: str) -> None:
    index = await open_index()
    with pytest.raises(VectorizeError, match=problem):
        await index.upsert([vector])
    assert (await index.describe()).vector_count == 0


async def test_one_vector_must_be_wrapped_in_a_list(open_index: Open) -> None:
    index = await open_index()
    with pytest.raises(VectorizeError, match=r"wrap one vector in \[\]"):
        await index.insert(vec("a", [1, 0, 0]))


async def test_the_insert_error_names_the_operation(open_index: Open) -> None:
    index = await open_index()
    with pytest.raises(VectorizeError, match=r"^VECTOR_INSERT_ERROR \(code = 40012\)") as caught:
        await index.insert([vec("a", [1])])
    assert caught.value.code == "VECTOR_INSERT_ERROR"


async def test_vector_count_limit_is_enforced(
    open_index: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20,000,000 on Cloudflare; lowered here to test the check, not the memory.
    monkeypatch.setattr(local_vectorize, "MAX_VECTORS", 3)
    index = await open_index()
    await index.insert([vec("a", [1, 0, 0]), vec("b", [0, 1, 0])])
    with pytest.raises(VectorizeError, match="would hold 4 vectors; the maximum is 3"):
        await index.insert([vec("c", [0, 0, 1]), vec("d", [1, 1, 0])])
    await index.upsert([vec("a", [0, 0, 1]), vec("c", [0, 0, 1])])  # replacing is free
    assert (await index.describe()).vector_count == 3


async def test_namespace_count_limit_is_enforced(
    open_index: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 50,000 on Cloudflare (Workers Paid); lowered here to test the check.
    monkeypatch.setattr(local_vectorize, "MAX_NAMESPACES", 2)
    index = await open_index()
    await index.insert([vec("a", [1, 0, 0], namespace="x"), vec("b", [1, 0, 0], namespace="y")])
    with pytest.raises(VectorizeError, match="3 namespaces; the maximum is 2"):
        await index.insert([vec("c", [1, 0, 0], namespace="z")])
    await index.insert([vec("c", [1, 0, 0], namespace="x"), vec("d", [1, 0, 0])])
    await index.delete_by_ids(["b"])  # namespace y is empty again
    await index.insert([vec("e", [1, 0, 0], namespace="z")])
    assert (await index.describe()).vector_count == 4


# ---------------------------------------------------------------- query and scores


async def test_cosine_scores_are_similarities_best_first(open_index: Open) -> None:
    index = await open_index(metric="cosine")
    await index.insert(
        [
            vec("same", [2, 0, 0]),
            vec("diag", [1, 1, 0]),
            vec("orth", [0, 3, 0]),
            vec("opposite", [-1, 0, 0]),
        ]
    )
    result = await index.query([1, 0, 0])
    assert [(m.id, round(m.score, 12)) for m in result.matches] == [
        ("same", 1.0),
        ("diag", round(1 / math.sqrt(2), 12)),
        ("orth", 0.0),
        ("opposite", -1.0),
    ]
    assert result.count == 4


async def test_euclidean_scores_are_distances_smallest_first(open_index: Open) -> None:
    index = await open_index(metric="euclidean")
    await index.insert([vec("far", [3, 4, 0]), vec("near", [0, 0, 1]), vec("here", [0, 0, 0])])
    result = await index.query([0, 0, 0])
    assert [(m.id, m.score) for m in result.matches] == [
        ("here", 0.0),
        ("near", 1.0),
        ("far", 5.0),
    ]


async def test_dot_product_scores_are_negative_dot_products_smallest_first(
    open_index: Open,
) -> None:
    # Cloudflare: "Negative dot product. Larger negative values or smaller positive
    # values denote more similar vectors."
    index = await open_index(metric="dot-product")
    await index.insert([vec("big", [10, 0, 0]), vec("small", [1, 0, 0]), vec("away", [-2, 0, 0])])
    result = await index.query([3, 0, 0])
    assert [(m.id, m.score) for m in result.matches] == [
        ("big", -30.0),
        ("small", -3.0),
        ("away", 6.0),
    ]


async def test_top_k_defaults_to_5_and_is_at_most_100(open_index: Open) -> None:
    index = await open_index(dimensions=2, metric="euclidean")
    await index.insert([vec(f"v{i:03}", [i, 0]) for i in range(150)])
    assert ids(await index.query([0, 0])) == ["v000", "v001", "v002", "v003", "v004"]
    assert (await index.query([0, 0], top_k=100)).count == 100
    assert (await index.query([0, 0], top_k=100, return_metadata="indexed")).count == 100
    for bad in (101, 0, -1):
        with pytest.raises(VectorizeError, match=r"VECTOR_QUERY_ERROR \(code = 40025\)"):
            await index.query([0, 0], top_k=bad)
    with pytest.raises(VectorizeError, match="topK: expected an integer"):
        await index.query([0, 0], top_k="5")


async def test_top_k_is_at_most_50_with_values_or_all_metadata(open_index: Open) -> None:
    index = await open_index(dimensions=2, metric="euclidean")
    await index.insert([vec(f"v{i:03}", [i, 0], metadata={"i": i}) for i in range(60)])
    assert (await index.query([0, 0], top_k=50, return_values=True)).count == 50
    assert (await index.query([0, 0], top_k=50, return_metadata="all")).count == 50
    message = "with returnValues=true or returnMetadata=all, max top K is 50, but got 51"
    with pytest.raises(VectorizeError, match=message):
        await index.query([0, 0], top_k=51, return_values=True)
    with pytest.raises(VectorizeError, match=message):
        await index.query([0, 0], top_k=51, return_metadata="all")


async def test_return_values_and_metadata(open_index: Open) -> None:
    index = await open_index(indexes={"kind": "string"})
    long_text = "ab" * 40
    metadata = {"kind": long_text, "extra": {"deep": [1, 2]}}
    await index.upsert([vec("a", [1, 0, 0], namespace="n", metadata=metadata)])
    plain = (await index.query([1, 0, 0])).matches[0]
    assert (plain.values, plain.metadata, plain.namespace) == (None, None, "n")
    every = (await index.query([1, 0, 0], return_values=True, return_metadata="all")).matches[0]
    assert every.values == [1.0, 0.0, 0.0] and every.metadata == metadata
    indexed = (await index.query([1, 0, 0], return_metadata="indexed")).matches[0]
    assert indexed.metadata == {"kind": long_text[:64]}
    for bad in (True, False, "some"):
        with pytest.raises(VectorizeError, match=r"\(code = 40026\).*returnMetadata"):
            await index.query([1, 0, 0], return_metadata=bad)


async def test_options_can_use_cloudflare_names(open_index: Open) -> None:
    index = await open_index(indexes={"k": "string"})
    await index.upsert(
        [vec("a", [1, 0, 0], metadata={"k": "x"}), vec("b", [1, 0.1, 0], metadata={"k": "y"})]
    )
    result = await index.query(
        [1, 0, 0], {"topK": 1, "filter": {"k": "y"}, "returnValues": True, "returnMetadata": "all"}
    )
    assert [(m.id, m.values is not None, m.metadata) for m in result.matches] == [
        ("b", True, {"k": "y"})
    ]
    assert result.to_dict()["matches"][0]["metadata"] == {"k": "y"}
    with pytest.raises(VectorizeError, match="given twice"):
        await index.query([1, 0, 0], {"topK": 1}, top_k=2)
    with pytest.raises(VectorizeError, match="unknown query option"):
        await index.query([1, 0, 0], {"limit": 1})


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ([1, 0], r"\(code = 40006\): invalid query vector, expected 3 dimensions, and got 2"),
        ([], "and got 0 dimensions"),
        ([1, float("nan"), 0], "finite"),
        (["a", "b", "c"], "flat list"),
        ("1,0,0", "invalid query vector"),
        (None, "invalid query vector"),
    ],
)
async def test_bad_query_vectors_are_refused(open_index: Open, query: Any, problem: str) -> None:
    index = await open_index()
    await index.insert([vec("a", [1, 0, 0])])
    with pytest.raises(VectorizeError, match=problem):
        await index.query(query)


async def test_query_by_id_uses_the_stored_vector(open_index: Open) -> None:
    index = await open_index()
    await index.insert([vec("a", [1, 0, 0]), vec("b", [1, 1, 0]), vec("c", [0, 0, 1])])
    result = await index.query_by_id("b", top_k=2)
    assert [(m.id, round(m.score, 12)) for m in result.matches] == [
        ("b", 1.0),
        ("a", round(1 / math.sqrt(2), 12)),
    ]
    missing = await index.query_by_id("nope")
    assert (missing.count, missing.matches) == (0, [])


async def test_get_by_ids_in_order_asked_and_at_most_20(open_index: Open) -> None:
    index = await open_index()
    await index.insert([vec(f"v{i}", [i, 1, 0], metadata={"i": i}) for i in range(30)])
    got = await index.get_by_ids(["v7", "missing", "v2", "v7"])
    assert [(v.id, v.values, v.metadata) for v in got] == [
        ("v7", [7.0, 1.0, 0.0], {"i": 7}),
        ("v2", [2.0, 1.0, 0.0], {"i": 2}),
    ]
    assert len(await index.get_by_ids([f"v{i}" for i in range(20)])) == 20
    with pytest.raises(
        VectorizeError,
        match=r"VECTOR_GET_ERROR \(code = 40007\): too many ids in payload; max id count is 20",
    ):
        await index.get_by_ids([f"v{i}" for i in range(21)])
    with pytest.raises(VectorizeError, match="list of vector ids"):
        await index.get_by_ids("v1")


async def test_delete_by_ids_at_most_100(open_index: Open) -> None:
    index = await open_index(dimensions=2)
    await index.insert([vec(f"v{i}", [i + 1, 1]) for i in range(150)])
    with pytest.raises(VectorizeError, match=r"VECTOR_DELETE_ERROR \(code = 40007\).*got 101"):
        await index.delete_by_ids([f"v{i}" for i in range(101)])
    await index.delete_by_ids([f"v{i}" for i in range(100)])
    assert (await index.describe()).vector_count == 50
    assert await index.get_by_ids(["v0", "v99"]) == []
    found = await index.query([1, 1], top_k=100)
    assert found.count == 50 and "v0" not in ids(found)
    await index.delete_by_ids(["v0", "never-existed"])  # absent ids are fine
    # a deleted id can be inserted again
    await index.insert([vec("v0", [5, 5])])
    assert [v.values for v in await index.get_by_ids(["v0"])] == [[5.0, 5.0]]


# ---------------------------------------------------------------- namespaces


async def test_namespace_is_applied_before_the_search(open_index: Open) -> None:
    index = await open_index(dimensions=2, metric="euclidean")
    # 200 vectors next to the query outside the namespace, 10 far away inside it
    await index.insert([vec(f"near{i}", [i / 1000, 0]) for i in range(200)])
    await index.insert([vec(f"far{i}", [100 + i, 0], namespace="tenant") for i in range(10)])
    result = await index.query([0, 0], top_k=10, namespace="tenant")
    assert ids(result) == [f"far{i}" for i in range(10)]
    assert all(m.namespace == "tenant" for m in result.matches)
    # without a namespace every vector is searched
    assert ids(await index.query([0, 0], top_k=2)) == ["near0", "near1"]
    assert (await index.query([0, 0], namespace="nobody")).count == 0


# ---------------------------------------------------------------- metadata filters


@pytest.fixture
async def catalog(open_index: Open) -> Any:
    index = await open_index(
        dimensions=2,
        metric="euclidean",
        indexes={"genre": "string", "year": "number", "free": "boolean", "a.b": "number"},
    )
    await index.insert(
        [
            vec("m1", [1, 0], metadata={"genre": "drama", "year": 1999, "free": True}),
            vec("m2", [2, 0], metadata={"genre": "comedy", "year": 2005, "free": False}),
            vec("m3", [3, 0], metadata={"genre": "netflix", "year": 2010.5, "a": {"b": 1}}),
            vec("m4", [4, 0], metadata={"genre": "network", "year": "2011", "a": {"b": 2}}),
            vec("m5", [5, 0], metadata={"genre": 42, "free": "yes", "a": {"b": 3}}),
            vec("m6", [6, 0]),
        ]
    )
    return index


async def found(index: Any, filter: dict[str, Any]) -> list[str]:
    return ids(await index.query([0, 0], top_k=100, filter=filter))


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"genre": "drama"}, ["m1"]),
        ({"genre": {"$eq": "comedy"}}, ["m2"]),
        ({"genre": {"$ne": "drama"}}, ["m2", "m3", "m4", "m5", "m6"]),
        ({"genre": {"$in": ["drama", "netflix", "absent"]}}, ["m1", "m3"]),
        ({"genre": {"$nin": ["drama", "netflix"]}}, ["m2", "m4", "m5", "m6"]),
        ({"genre": {"$gte": "net", "$lt": "neu"}}, ["m3", "m4"]),  # a prefix search
        ({"genre": {"$lt": "drama"}}, ["m2"]),
        ({"genre": {"$lte": "drama"}}, ["m1", "m2"]),
        ({"year": {"$gt": 2005}}, ["m3"]),
        ({"year": {"$gte": 2005}}, ["m2", "m3"]),
        ({"year": {"$lt": 2005}}, ["m1"]),
        ({"year": {"$lte": 2005, "$gt": 1999}}, ["m2"]),
        ({"year": 2010.5}, ["m3"]),
        ({"year": {"$in": [1999, 2005]}}, ["m1", "m2"]),
        ({"year": "2011"}, []),  # the string is not in the number index
        ({"genre": 42}, []),  # nor the number in the string index
        ({"free": True}, ["m1"]),
        ({"free": {"$eq": False}}, ["m2"]),
        ({"free": {"$ne": True}}, ["m2", "m3", "m4", "m5", "m6"]),
        ({"free": None}, ["m3", "m4", "m5", "m6"]),
        ({"free": {"$ne": None}}, ["m1", "m2"]),
        ({"genre": {"$in": [None, "drama"]}}, ["m1", "m5", "m6"]),
        ({"a.b": 2}, ["m4"]),
        ({"a.b": {"$gte": 2}}, ["m4", "m5"]),
        ({"a.b": {"$gte": 1}, "genre": {"$ne": "network"}}, ["m3", "m5"]),  # implicit AND
        ({"genre": "drama", "year": 2005}, []),
    ],
)
async def test_filter_operators(catalog: Any, filter: dict[str, Any], expected: list[str]) -> None:
    assert await found(catalog, filter) == expected


async def test_filtered_queries_return_top_k_when_that_many_match(open_index: Open) -> None:
    index = await open_index(dimensions=2, metric="euclidean", indexes={"team": "string"})
    # 980 vectors close to the query, 20 matching ones at the far end
    await index.insert([vec(f"c{i}", [i / 100, 0], metadata={"team": "other"}) for i in range(980)])
    await index.insert([vec(f"t{i}", [1000 + i, 0], metadata={"team": "mine"}) for i in range(20)])
    result = await index.query([0, 0], top_k=20, filter={"team": "mine"})
    assert ids(result) == [f"t{i}" for i in range(20)]
    result = await index.query([0, 0], top_k=5, filter={"team": {"$ne": "other"}})
    assert ids(result) == [f"t{i}" for i in range(5)]


async def test_vectors_written_before_a_metadata_index_are_not_in_it(
    open_index: Open, state: Path
) -> None:
    index = await open_index(dimensions=2)
    await index.insert([vec("old", [1, 0], metadata={"tag": "x"})])
    create_metadata_index(state, INDEX, "tag", "string")
    await index.insert([vec("new", [1, 1], metadata={"tag": "x"})])
    assert await found(index, {"tag": "x"}) == ["new"]
    fresh = LocalVectorize(state / "vectorize" / INDEX, INDEX)  # loads it from the file
    try:
        assert await found(fresh, {"tag": "x"}) == ["new"]
    finally:
        await fresh.aclose()
    assert (await index.query([1, 0], return_metadata="indexed", top_k=2)).matches[0].metadata == {}
    await index.upsert([vec("old", [1, 0], metadata={"tag": "x"})])  # written again: indexed
    assert sorted(await found(index, {"tag": "x"})) == ["new", "old"]
    # dropping and re-creating the index empties it again
    delete_metadata_index(state, INDEX, "tag")
    with pytest.raises(VectorizeError, match='cannot filter on "tag": it has no metadata index'):
        await found(index, {"tag": "x"})
    create_metadata_index(state, INDEX, "tag", "string")
    assert await found(index, {"tag": "x"}) == []


async def test_string_index_holds_the_first_64_bytes(open_index: Open) -> None:
    index = await open_index(dimensions=2, indexes={"s": "string"})
    prefix = "a" * 62  # then a 3-byte character that does not fit in 64 bytes
    await index.insert(
        [
            vec("one", [1, 0], metadata={"s": prefix + "€first"}),
            vec("two", [1, 1], metadata={"s": prefix + "€second"}),
            vec("short", [0, 1], metadata={"s": prefix}),
        ]
    )
    # both long values are indexed as the 62 a's (the euro sign is cut whole)
    assert sorted(await found(index, {"s": prefix})) == ["one", "short", "two"]
    assert sorted(await found(index, {"s": prefix + "€first"})) == ["one", "short", "two"]
    indexed = await index.query([1, 0], top_k=1, return_metadata="indexed")
    assert indexed.matches[0].metadata == {"s": prefix}
    full = await index.query([1, 0], top_k=1, return_metadata="all")
    assert full.matches[0].metadata == {"s": prefix + "€first"}


async def test_filter_json_must_be_under_2048_bytes(open_index: Open) -> None:
    index = await open_index(dimensions=2, indexes={"k": "string"})
    await index.insert([vec("a", [1, 0], metadata={"k": "v"})])
    overhead = len('{"k":{"$nin":["v",""]}}')
    fits = {"k": {"$nin": ["v", "x" * (2047 - overhead)]}}
    assert await found(index, fits) == []
    too_big = {"k": {"$nin": ["v", "x" * (2048 - overhead)]}}
    with pytest.raises(VectorizeError, match="2048 bytes; it must be under 2048"):
        await found(index, too_big)


async def test_filter_keys_are_at_most_512_characters(open_index: Open, state: Path) -> None:
    index = await open_index(dimensions=2)
    key = "k" * 512
    create_metadata_index(state, INDEX, key, "number")
    await index.insert([vec("a", [1, 0], metadata={key: 1})])
    assert await found(index, {key: 1}) == ["a"]
    with pytest.raises(VectorizeError, match="513 characters; the maximum is 512"):
        await found(index, {"k" * 513: 1})


@pytest.mark.parametrize(
    ("filter", "problem"),
    [
        ({}, "non-empty"),
        ({"genre": {}}, "must not be empty"),
        ({"genre": {"$regex": "x"}}, "unknown operator"),
        ({"genre": {"$eq": "a", "$ne": "b"}}, "cannot be combined"),
        ({"year": {"$lt": 1, "$lte": 2}}, "cannot be combined"),
        ({"year": {"$gt": 1, "$lt": 5, "$ne": 3}}, "cannot be combined"),
        ({"genre": {"$in": "drama"}}, r"\$in takes a list"),
        ({"genre": {"$nin": [["x"]]}}, r"\$nin takes a list"),
        ({"genre": {"$eq": ["x"]}}, r"\$eq takes a string"),
        ({"free": {"$gt": True}}, r"\$gt takes a string or a number"),
        ({"year": {"$lt": None}}, r"\$lt takes a string or a number"),
        ({"genre": ["drama"]}, "a value must be"),
        ({"": 1}, "non-empty string"),
        ({"$and": 1}, "start with"),
        ({'a"b': 1}, "start with"),
        ({"a..b": 1}, "empty part"),
        ({"year": float("nan")}, "not JSON"),
        ("genre = drama", "must be an object"),
    ],
)
async def test_bad_filters_are_refused(catalog: Any, filter: Any, problem: str) -> None:
    with pytest.raises(VectorizeError, match=problem):
        await found(catalog, filter)


async def test_filters_combine_with_a_namespace(open_index: Open) -> None:
    index = await open_index(dimensions=2, metric="euclidean", indexes={"k": "number"})
    await index.insert(
        [
            vec("a", [1, 0], namespace="x", metadata={"k": 1}),
            vec("b", [2, 0], namespace="y", metadata={"k": 1}),
            vec("c", [3, 0], namespace="x", metadata={"k": 2}),
        ]
    )
    result = await index.query([0, 0], namespace="x", filter={"k": {"$gte": 1}})
    assert ids(result) == ["a", "c"]
    assert ids(await index.query([0, 0], namespace="y", filter={"k": 2})) == []


# ---------------------------------------------------------------- persistence


async def test_everything_survives_reopening(open_index: Open, state: Path) -> None:
    index = await open_index(dimensions=2, metric="euclidean", indexes={"k": "string"})
    await index.insert(
        [
            vec("a", [1, 0], namespace="n", metadata={"k": "x"}),
            vec("b", [2, 0], metadata={"k": "y"}),
        ]
    )
    last = await index.delete_by_ids(["b"])
    await index.upsert([vec("c", [3, 0], metadata={"k": "x", "more": [1, 2]})])
    before = await index.describe()
    await index.aclose()

    again = await open_index(create=False)
    after = await again.describe()
    assert after == before and after.processed_up_to_mutation != last.mutation_id
    assert ids(await again.query([0, 0], filter={"k": "x"})) == ["a", "c"]
    assert ids(await again.query([0, 0], namespace="n")) == ["a"]
    got = await again.get_by_ids(["a", "b", "c"])
    assert [(v.id, v.values, v.namespace, v.metadata) for v in got] == [
        ("a", [1.0, 0.0], "n", {"k": "x"}),
        ("c", [3.0, 0.0], None, {"k": "x", "more": [1, 2]}),
    ]
    info = get_index(state, INDEX)
    assert (info.config.dimensions, info.config.metric) == (2, "euclidean")


async def test_acknowledged_writes_survive_a_killed_process(open_index: Open, state: Path) -> None:
    await open_index(dimensions=2, indexes={"k": "number"})
    folder = state / "vectorize" / INDEX
    script = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from flarebase.platform.local.vectorize import LocalVectorize

        async def main():
            index = LocalVectorize({str(folder)!r}, "conformance")
            for batch in range(5):
                rows = [(f"{{batch}}-{{i}}", [batch, i + 1]) for i in range(100)]
                await index.upsert(
                    [{{"id": k, "values": v, "metadata": {{"k": batch}}}} for k, v in rows]
                )
            await index.delete_by_ids(["0-0"])
            print("acknowledged", flush=True)
            os._exit(9)  # no close, no checkpoint

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 9 and "acknowledged" in done.stdout, done.stderr
    index = await open_index(create=False)
    assert (await index.describe()).vector_count == 499
    assert await index.get_by_ids(["0-0"]) == []
    assert len(await found(index, {"k": 4})) == 100


async def test_two_bindings_on_one_index_see_each_other(open_index: Open, state: Path) -> None:
    index = await open_index(dimensions=2)
    other = LocalVectorize(state / "vectorize" / INDEX, INDEX)
    try:
        await index.insert([vec("a", [1, 0])])
        assert ids(await other.query([1, 0])) == ["a"]  # loads the file
        await other.upsert([vec("b", [0, 1]), vec("a", [1, 1])])
        await index.delete_by_ids(["b"])
        assert [v.values for v in await index.get_by_ids(["a", "b"])] == [[1.0, 1.0]]
        assert ids(await other.query([0, 1])) == ["a"]
        # a metadata index created while both are open applies to later writes of either
        create_metadata_index(state, INDEX, "k", "string")
        await other.upsert([vec("c", [1, 0], metadata={"k": "v"})])
        assert await found(index, {"k": "v"}) == ["c"]
    finally:
        await other.aclose()
