"""The LangChain VectorStore on a local Vectorize binding: LangChain's own standard suite
(`VectorStoreIntegrationTests`, sync and async), then what the suite does not cover:
filters, namespaces, MMR, relevance scores, model checks and flarebase's embedders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from flarebase.integrations.langchain import FlarebaseEmbeddings, VectorizeVectorStore
from flarebase.platform import open_env
from flarebase.platform.local.vectorize import create_index, create_metadata_index
from flarebase.server.memory.embeddings import HashEmbedder

WRANGLER = """
name = "langchain-tests"

[[vectorize]]
binding = "INDEX"
index_name = "langchain"
"""


class Opened:
    """An env opened in its own event loop (a portal thread), and stores on its INDEX."""

    def __init__(self, portal: BlockingPortal, env: Any) -> None:
        self.portal = portal
        self.env = env
        self.loop: asyncio.AbstractEventLoop = portal.call(asyncio.get_running_loop)

    def store(self, embedding: Any, **options: Any) -> VectorizeVectorStore:
        return VectorizeVectorStore(self.env.INDEX, embedding, loop=self.loop, **options)

    def count(self) -> int:
        return self.portal.call(self.env.INDEX.describe).vector_count  # type: ignore[no-any-return]


def open_index(
    tmp_path: Path, dimensions: int, metadata: dict[str, str] | None = None
) -> Iterator[Opened]:
    state = tmp_path / "state"
    create_index(state, "langchain", dimensions=dimensions, metric="cosine")
    for prop, kind in (metadata or {}).items():
        create_metadata_index(state, "langchain", prop, kind)
    config = tmp_path / "wrangler.toml"
    config.write_text(WRANGLER, encoding="utf-8")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(open_env(config, state_dir=state)) as env,
    ):
        yield Opened(portal, env)


class TestVectorizeVectorStore(VectorStoreIntegrationTests):
    """LangChain's standard tests (25), on an empty index of 6 dimensions."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        for opened in open_index(tmp_path, 6):
            store = opened.store(self.get_embeddings())
            yield store
            store.close()


# -- beyond the standard suite -------------------------------------------------------------


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened]:
    yield from open_index(tmp_path, 384, {"topic": "string", "year": "number"})


@pytest.fixture
def hashed(opened: Opened) -> VectorizeVectorStore:
    return opened.store(FlarebaseEmbeddings(HashEmbedder()))


DOCS = [
    Document(
        page_content="Paris is the capital of France.", metadata={"topic": "geo", "year": 2020}
    ),
    Document(
        page_content="The Seine flows through Paris.", metadata={"topic": "geo", "year": 2023}
    ),
    Document(
        page_content="Python 3.11 made CPython faster.", metadata={"topic": "code", "year": 2022}
    ),
    Document(
        page_content="Rust has no garbage collector.", metadata={"topic": "code", "year": 2015}
    ),
]


def test_flarebase_embeddings_find_the_right_document(hashed: VectorizeVectorStore) -> None:
    ids = hashed.add_documents(DOCS)
    found = hashed.similarity_search("What is the capital of France?", k=2)
    assert found[0] == Document(
        page_content=DOCS[0].page_content, metadata=DOCS[0].metadata, id=ids[0]
    )
    assert hashed.embeddings.model_id == "flarebase-hash-v1-384"  # type: ignore[attr-defined]


def test_metadata_filters(hashed: VectorizeVectorStore) -> None:
    hashed.add_documents(DOCS)
    code = hashed.similarity_search("Paris", k=4, filter={"topic": "code"})
    assert {d.metadata["topic"] for d in code} == {"code"} and len(code) == 2
    recent = hashed.similarity_search("Paris", k=4, filter={"year": {"$gte": 2022}})
    assert sorted(d.metadata["year"] for d in recent) == [2022, 2023]


async def test_async_methods_and_relevance_scores(hashed: VectorizeVectorStore) -> None:
    ids = await hashed.aadd_documents(DOCS)
    scored = await hashed.asimilarity_search_with_relevance_scores("capital of France", k=4)
    assert scored[0][0].id == ids[0]
    scores = [s for _, s in scored]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert [d.id for d in await hashed.aget_by_ids([ids[2], "missing", ids[0]])] == [
        ids[2],
        ids[0],
    ]
    await hashed.adelete(ids[:2])
    assert {d.id for d in await hashed.asimilarity_search("Paris", k=4)} == set(ids[2:])


def test_namespaces_are_separate_stores(opened: Opened) -> None:
    embedding = FlarebaseEmbeddings(HashEmbedder())
    a, b = opened.store(embedding, namespace="a"), opened.store(embedding, namespace="b")
    (in_a,) = a.add_texts(["only in namespace a"])
    b.add_texts(["only in namespace b"])
    assert [d.page_content for d in a.similarity_search("namespace", k=5)] == [
        "only in namespace a"
    ]
    assert b.get_by_ids([in_a]) == [] and len(a.get_by_ids([in_a])) == 1


def test_max_marginal_relevance_prefers_diverse_results(hashed: VectorizeVectorStore) -> None:
    texts = ["Paris is the capital of France."] * 3 + ["The Seine flows through Paris."]
    hashed.add_texts(texts)
    similar = hashed.similarity_search("Paris France capital", k=2)
    assert [d.page_content for d in similar] == [texts[0], texts[0]]
    diverse = hashed.max_marginal_relevance_search("Paris France capital", k=2, fetch_k=4)
    assert [d.page_content for d in diverse] == [texts[0], texts[3]]


def test_models_are_never_mixed(opened: Opened) -> None:
    hashed = opened.store(FlarebaseEmbeddings(HashEmbedder()))
    hashed.add_texts(["a text of the hash model"])
    other = opened.store(FlarebaseEmbeddings(HashEmbedder()), model_id="another-model")
    with pytest.raises(ValueError, match="not comparable"):
        other.add_texts(["a text of another model"])
    with pytest.raises(ValueError, match="not comparable"):
        other.similarity_search("text")
    assert opened.count() == 1


def test_invalid_calls_are_refused(hashed: VectorizeVectorStore, opened: Opened) -> None:
    with pytest.raises(ValueError, match="reserved"):
        hashed.add_texts(["x"], [{"text": "clash"}])
    with pytest.raises(ValueError, match="needs the ids"):
        hashed.delete()
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        hashed.add_texts(["x", "y"], ids=["1"])
    assert opened.count() == 0


def test_sync_methods_work_without_a_loop(tmp_path: Path) -> None:
    """Without `loop=`, sync calls run on the store's private loop (local bindings
    belong to no loop), and big batches are split within Vectorize's limits."""
    state = tmp_path / "state"
    create_index(state, "langchain", dimensions=16, metric="cosine")
    config = tmp_path / "wrangler.toml"
    config.write_text(WRANGLER, encoding="utf-8")

    async def open_and_use() -> tuple[int, int, int]:
        async with open_env(config, state_dir=state) as env:
            store = VectorizeVectorStore(env.INDEX, DeterministicFakeEmbedding(size=16))
            ids = await asyncio.to_thread(store.add_texts, [f"text {i}" for i in range(1234)])
            got = await asyncio.to_thread(store.get_by_ids, ids[:45])
            await asyncio.to_thread(store.delete, ids[:250])
            left = (await env.INDEX.describe()).vector_count
            store.close()
            return len(ids), len(got), left

    assert asyncio.run(open_and_use()) == (1234, 45, 984)


def test_from_texts(opened: Opened) -> None:
    store = VectorizeVectorStore.from_texts(
        ["one", "two"],
        DeterministicFakeEmbedding(size=384),
        ids=["a", "b"],
        index=opened.env.INDEX,
        loop=opened.loop,
    )
    assert [d.page_content for d in store.get_by_ids(["b", "a"])] == ["two", "one"]
    with pytest.raises(ValueError, match="index"):
        VectorizeVectorStore.from_texts(["x"], DeterministicFakeEmbedding(size=384))
