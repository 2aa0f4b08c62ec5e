"""LangChain on Cloudflare's data products: a `VectorStore` on a Vectorize binding, and
flarebase's embedders as LangChain `Embeddings`. Needs `pip install 'flarebase[langchain]'`.

    from flarebase.integrations.langchain import FlarebaseEmbeddings, VectorizeVectorStore
    from flarebase.server.memory.embeddings import HashEmbedder

    async with open_env("wrangler.toml") as env:
        store = VectorizeVectorStore(env.INDEX, FlarebaseEmbeddings(HashEmbedder()))
        ids = await store.aadd_texts(["Paris is in France"], [{"topic": "geo"}])
        docs = await store.asimilarity_search("Where is Paris?", k=3)

Storage: each document is one vector whose id is the document's id (a UUID unless
given) and whose metadata is the document's own metadata plus its text under
`text_key` ("text", as LangChain.js's CloudflareVectorizeStore does) and, when the
store knows its embedding model, the model id under `model_key` ("_model"). So a
document's text and metadata together must fit Vectorize's 10 KiB of metadata
(split long texts first), metadata keys follow Vectorize's rules (no `.`, `"` or
leading `$`), and the two reserved keys cannot be used by the metadata itself.

Semantics, by Vectorize's:
- `add_texts`/`add_documents` upsert: an existing id is replaced in full (1,000
  vectors per call). `delete(ids)` deletes by id (100 per call) and needs ids:
  Vectorize cannot list vectors, so `delete()` without ids raises ValueError.
  `get_by_ids` reads 20 ids per call and skips missing ones.
- `filter=` is a Vectorize metadata filter (`{"topic": "geo"}`, `{"year": {"$gte":
  2020}}`; `$eq $ne $in $nin $lt $lte $gt $gte`), on properties that have a
  metadata index (`wrangler vectorize create-metadata-index`).
- `k` is at most 50 (Vectorize's topK when metadata is returned).
- Scores are Vectorize's: cosine similarity (higher is nearer), euclidean distance
  or negative dot product (lower is nearer); relevance scores map them to [0, 1]
  for `metric` (default cosine, the index's metric must be told).
- Models: with `model_id` (taken from `FlarebaseEmbeddings` automatically), every
  vector carries it, and a write or search that meets a vector of another model
  raises `ValueError`: vectors of different models are not comparable.

Event loops: bindings are async. The async methods await them directly, or, with
`loop=` (the loop the env was opened in), run them there. The sync methods run
them on `loop`, or without it on a private event loop in a helper thread (fine
for the local provider, whose bindings belong to no loop).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..platform.vectorize import (
    MAX_BATCH,
    MAX_DELETE_IDS,
    MAX_GET_IDS,
    MAX_TOP_K_WITH_VALUES_OR_METADATA,
)
from ..server.memory.embeddings import Embedder

T = TypeVar("T")

__all__ = ["FlarebaseEmbeddings", "VectorizeVectorStore"]


class _LoopThread:
    """A private event loop in a daemon thread, for sync callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class _Runner:
    """Runs coroutines on `loop` (from any thread) or on a private loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self._private: _LoopThread | None = None
        self._lock = threading.Lock()

    def sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is not None:
            if _running_loop() is self.loop:
                coro.close()
                raise RuntimeError(
                    "a sync method was called on the event loop that owns the binding "
                    "(it would wait for itself): use the async method (a...) instead"
                )
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        with self._lock:
            if self._private is None:
                self._private = _LoopThread()
        return self._private.run(coro)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is None or _running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        if self._private is not None:
            self._private.close()
            self._private = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class FlarebaseEmbeddings(Embeddings):
    """A flarebase `Embedder` (hash, Workers AI, OpenAI-compatible, MiniLM, cached) as
    LangChain `Embeddings`; `model_id` and `dimensions` are the embedder's."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._runner = _Runner(None)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def dimensions(self) -> int:
        return self.embedder.dimensions

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if _running_loop() is None:  # the common case: no loop here, run one briefly
            return asyncio.run(self.embedder.embed(list(texts)))
        return self._runner.sync(self.embedder.embed(list(texts)))  # on a helper thread

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.embedder.embed(list(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]


class VectorizeVectorStore(VectorStore):
    """A LangChain `VectorStore` on a Vectorize binding (`env.<BINDING>`)."""

    def __init__(
        self,
        index: Any,
        embedding: Embeddings,
        *,
        namespace: str | None = None,
        text_key: str = "text",
        model_id: str | None = None,
        model_key: str = "_model",
        metric: str = "cosine",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if metric not in ("cosine", "euclidean", "dot-product"):
            raise ValueError("metric must be cosine, euclidean or dot-product")
        self.index = index
        self.embedding = embedding
        self.namespace = namespace
        self.text_key = text_key
        self.model_id = model_id or getattr(embedding, "model_id", None)
        self.model_key = model_key
        self.metric = metric
        self._runner = _Runner(loop)

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def close(self) -> None:
        """Stop the private event loop of the sync methods, if one was started."""
        self._runner.close()

    # -- writes

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        vectors = self.embedding.embed_documents(texts) if texts else []
        return self._runner.sync(self._write(texts, vectors, metadatas, ids))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        vectors = await self.embedding.aembed_documents(texts) if texts else []
        return await self._runner.call(self._write(texts, vectors, metadatas, ids))

    async def _write(
        self,
        texts: list[str],
        vectors: list[list[float]],
        metadatas: list[dict[str, Any]] | None,
        ids: Sequence[str | None] | None,
    ) -> list[str]:
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        out = [i if i else str(uuid.uuid4()) for i in (ids or [None] * len(texts))]
        if not texts:
            return out
        if self.model_id is not None:
            await self._check_model_near(vectors[0])
        records = []
        for i, (text, values) in enumerate(zip(texts, vectors, strict=True)):
            metadata = dict(metadatas[i]) if metadatas else {}
            for reserved in (self.text_key, self.model_key):
                if reserved in metadata:
                    raise ValueError(f"metadata key {reserved!r} is reserved by the store")
            metadata[self.text_key] = text
            if self.model_id is not None:
                metadata[self.model_key] = self.model_id
            record: dict[str, Any] = {"id": out[i], "values": values, "metadata": metadata}
            if self.namespace is not None:
                record["namespace"] = self.namespace
            records.append(record)
        for start in range(0, len(records), MAX_BATCH):
            await self.index.upsert(records[start : start + MAX_BATCH])
        return out

    async def _check_model_near(self, vector: list[float]) -> None:
        """Refuse to add vectors next to another model's (checked on the nearest one)."""
        found = await self.index.query(
            vector, top_k=1, namespace=self.namespace, return_metadata="all"
        )
        for match in found.matches:
            self._check_model(match.metadata)

    def _check_model(self, metadata: dict[str, Any] | None) -> None:
        other = (metadata or {}).get(self.model_key)
        if self.model_id is not None and other is not None and other != self.model_id:
            raise ValueError(
                f"the index holds vectors of {other}, not {self.model_id}: vectors of "
                "different models are not comparable; use another index or namespace"
            )

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return self._runner.sync(self._delete(ids))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        return await self._runner.call(self._delete(ids))

    async def _delete(self, ids: list[str] | None) -> bool:
        if ids is None:
            raise ValueError("Vectorize cannot list vectors: delete() needs the ids")
        for start in range(0, len(ids), MAX_DELETE_IDS):
            await self.index.delete_by_ids(list(ids[start : start + MAX_DELETE_IDS]))
        return True

    # -- reads

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return self._runner.sync(self._get(ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await self._runner.call(self._get(ids))

    async def _get(self, ids: Sequence[str]) -> list[Document]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Any] = {}
        for start in range(0, len(wanted), MAX_GET_IDS):
            for vector in await self.index.get_by_ids(wanted[start : start + MAX_GET_IDS]):
                if self.namespace is None or vector.namespace == self.namespace:
                    found[vector.id] = vector
        return [self._document(i, found[i].metadata) for i in wanted if i in found]

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        found = await self.asimilarity_search_with_score(query, k, filter=filter)
        return [doc for doc, _ in found]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = self.embedding.embed_query(query)
        return self._runner.sync(self._search(vector, k, filter))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query)
        return await self._runner.call(self._search(vector, k, filter))

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return [doc for doc, _ in self._runner.sync(self._search(embedding, k, filter))]

    async def asimilarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        found = await self._runner.call(self._search(embedding, k, filter))
        return [doc for doc, _ in found]

    async def _search(
        self, vector: list[float], k: int, filter: dict[str, Any] | None
    ) -> list[tuple[Document, float]]:
        found = await self.index.query(
            vector, top_k=k, namespace=self.namespace, filter=filter, return_metadata="all"
        )
        out = []
        for match in found.matches:
            self._check_model(match.metadata)
            out.append((self._document(match.id, match.metadata), float(match.score)))
        return out

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.metric == "cosine":
            return lambda similarity: (1.0 + similarity) / 2.0
        if self.metric == "euclidean":
            return self._euclidean_relevance_score_fn
        return lambda negative_dot: (1.0 - negative_dot) / 2.0  # unit vectors: dot in [-1, 1]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter=filter
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = await self.embedding.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter=filter
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self._runner.sync(self._mmr(embedding, k, fetch_k, lambda_mult, filter))

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        return await self._runner.call(self._mmr(embedding, k, fetch_k, lambda_mult, filter))

    async def _mmr(
        self,
        vector: list[float],
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: dict[str, Any] | None,
    ) -> list[Document]:
        """Fetch `fetch_k` candidates with their values (at most 50), pick `k` by MMR."""
        found = await self.index.query(
            vector,
            top_k=min(max(fetch_k, k), MAX_TOP_K_WITH_VALUES_OR_METADATA),
            namespace=self.namespace,
            filter=filter,
            return_values=True,
            return_metadata="all",
        )
        matches = found.matches
        if not matches:
            return []
        for match in matches:
            self._check_model(match.metadata)
        chosen = maximal_marginal_relevance(
            np.array(vector, dtype=np.float32),
            [m.values for m in matches],
            lambda_mult=lambda_mult,
            k=min(k, len(matches)),
        )
        return [self._document(matches[i].id, matches[i].metadata) for i in chosen]

    def _document(self, vector_id: str, metadata: dict[str, Any] | None) -> Document:
        metadata = dict(metadata or {})
        text = metadata.pop(self.text_key, "")
        metadata.pop(self.model_key, None)
        return Document(page_content=str(text), metadata=metadata, id=vector_id)

    # -- construction

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> VectorizeVectorStore:
        """`index=` (the binding) is required; other keywords go to the constructor."""
        index = kwargs.pop("index", None)
        if index is None:
            raise ValueError("from_texts needs index=<the Vectorize binding>")
        store = cls(index, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> VectorizeVectorStore:
        index = kwargs.pop("index", None)
        if index is None:
            raise ValueError("afrom_texts needs index=<the Vectorize binding>")
        store = cls(index, embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store
