"""Embeddings: text in, vectors out, behind one small interface.

    embedder = HashEmbedder()                      # the default: no model, no network
    vectors = await embedder.embed(["a sentence", "another"])
    embedder.model_id, embedder.dimensions         # stored with every vector

Providers
---------
- `HashEmbedder` (MEMORY_EMBEDDINGS=hash, the default): feature hashing of words,
  word pairs and character 3-5-grams into 384 signed buckets, L2-normalised. It
  needs no model download and no network, and it is **lexical only**: texts are
  near when they share words or word pieces, never because they mean the same
  thing ("car" and "automobile" are unrelated to it). Use it for development,
  tests and keyword-like lookups; use a real model for semantic search.
- `WorkersAIEmbedder` (workers-ai): Cloudflare Workers AI over REST,
  `POST https://api.cloudflare.com/client/v4/accounts/<id>/ai/run/<model>` with
  `{"text": [...]}`, answered by `{"result": {"shape": [n, d], "data": [[...]]},
  "success": true}`; default model `@cf/baai/bge-small-en-v1.5` (384 dimensions).
- `OpenAIEmbedder` (openai): any OpenAI-compatible `POST <base>/embeddings`
  (`{"model", "input": [...]}` -> `{"data": [{"index", "embedding"}]}`).
- `MiniLMEmbedder` (minilm, in `minilm.py`): all-MiniLM-L6-v2 as an int8 ONNX
  model on this machine; the optional extra `flarebase[local-embeddings]`.

The HTTP providers send `batch_size` texts per request and retry, with exponential
backoff and jitter (and the server's `Retry-After`), on 429, 5xx and connection
errors; other answers fail at once with `EmbeddingError`. `CachedEmbedder` puts a
KV namespace in front of any provider: vectors are kept under
`embeddings:<model hash>:<sha256 of the text>`, so a text is embedded once per model.

Model ids: vectors of different models are not comparable, even at equal
dimensions, so every provider has a `model_id` that the memory service stores with
each vector and checks before it mixes anything (see `index.py`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import random
import re
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from ...platform.errors import FlarebaseError

log = logging.getLogger("flarebase.server.memory")

WORKERS_AI_URL = "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/run"
WORKERS_AI_DEFAULT_MODEL = "@cf/baai/bge-small-en-v1.5"
OPENAI_BASE_URL = "https://api.openai.com/v1"
# Output sizes of well-known models (others need MEMORY_EMBEDDING_DIMENSIONS).
KNOWN_DIMENSIONS: dict[str, int] = {
    "@cf/baai/bge-small-en-v1.5": 384,
    "@cf/baai/bge-base-en-v1.5": 768,
    "@cf/baai/bge-large-en-v1.5": 1024,
    "@cf/baai/bge-m3": 1024,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
}
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class EmbeddingError(FlarebaseError):
    """The embedding provider failed (after retries) or answered something unusable.

    `status` is the provider's HTTP status when there was one; `retryable` says
    whether trying later may succeed (throttling, outages)."""

    code = "EMBEDDING_ERROR"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of `dimensions` floats, one per text, in order."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


# ---------------------------------------------------------------- the default: hashing

_WORD = re.compile(r"\w+", re.UNICODE)
# Frequent English words carry little meaning; they still count, at a tenth.
_STOPWORDS = frozenset(
    """a an and are as at be but by for from has have he her his i if in into is it its
    of on or our she so that the their them there these they this to was we were what
    when where which who why will with you your do does did how can not no""".split()
)


class HashEmbedder:
    """Lexical-only embeddings by feature hashing; needs no model and no network.

    Each text is NFKC-normalised and lower-cased; its words (weight 1, stop words
    0.1), adjacent word pairs (0.5) and the character 3-, 4- and 5-grams of each
    word with boundary marks (0.25 each, spread over the word's n-grams) are hashed
    (CRC-32) into `dimensions` buckets with a hash-chosen sign; counts are damped
    (1 + log tf) and the vector is L2-normalised, so cosine similarity measures
    shared vocabulary, including shared word pieces (plurals, inflections, typos).
    It knows nothing of meaning: synonyms and paraphrases do not match.
    """

    def __init__(self, dimensions: int = 384) -> None:
        if not 8 <= dimensions <= 1536:
            raise ValueError("dimensions must be between 8 and 1536")
        self._dimensions = dimensions

    @property
    def model_id(self) -> str:
        return f"flarebase-hash-v1-{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        _check_texts(texts)
        return [self.vector(text).tolist() for text in texts]

    def vector(self, text: str) -> np.ndarray:
        counts: dict[int, float] = {}
        words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
        for i, word in enumerate(words):
            _add(counts, "w:" + word, 0.1 if word in _STOPWORDS else 1.0)
            if i:
                _add(counts, f"b:{words[i - 1]} {word}", 0.5)
            marked = f"<{word}>"
            grams = [marked[j : j + n] for n in (3, 4, 5) for j in range(len(marked) - n + 1)]
            for gram in grams:
                _add(counts, "c:" + gram, 0.75 / len(grams))
        if not counts:  # no word at all: one fixed feature, so the vector is never zero
            _add(counts, "<empty>", 1.0)
        out = np.zeros(self._dimensions, dtype=np.float64)
        for h, weight in counts.items():
            value = 1.0 + math.log(weight) if weight > 1.0 else weight  # damped counts
            out[(h >> 1) % self._dimensions] += value if h & 1 else -value
        norm = float(np.linalg.norm(out))
        if norm == 0.0:  # every feature cancelled out: fall back to the fixed one
            out[0] = 1.0
            norm = 1.0
        return out / norm


def _add(counts: dict[int, float], feature: str, weight: float) -> None:
    h = zlib.crc32(feature.encode())
    counts[h] = counts.get(h, 0.0) + weight


# ---------------------------------------------------------------- HTTP providers


@dataclass(frozen=True, slots=True)
class Retry:
    """Retries of one request: `attempts` in all, waiting `base * 2**n` seconds
    (at most `cap`, with jitter), or what the server's Retry-After asks (at most
    `max_retry_after`)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = _retry_after(response.headers.get("retry-after"))
            if after is not None:
                return min(after, self.max_retry_after)
        return min(self.cap, self.base * 2**attempt) * random.uniform(0.5, 1.0)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: use our own backoff


class HttpEmbedder:
    """Batching and retries for embedding APIs; subclasses say how to ask and read."""

    def __init__(
        self,
        *,
        model_id: str,
        dimensions: int,
        batch_size: int,
        timeout: float = 60.0,
        retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 1 <= dimensions <= 1536:
            raise ValueError(f"dimensions must be between 1 and 1536 (Vectorize), not {dimensions}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_id = model_id
        self._dimensions = dimensions
        self.batch_size = batch_size
        self.timeout = timeout
        self.retry = retry or Retry()
        self.transport = transport
        self.requests = 0  # HTTP requests sent, retries included (for tests and logs)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        _check_texts(texts)
        if not texts:
            return []
        out: list[list[float]] = []
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                vectors = await self._post(client, batch)
                if len(vectors) != len(batch):
                    raise EmbeddingError(
                        f"{self.model_id}: asked for {len(batch)} embeddings, got {len(vectors)}"
                    )
                for vector in vectors:
                    if len(vector) != self._dimensions:
                        raise EmbeddingError(
                            f"{self.model_id}: expected {self._dimensions} dimensions, got "
                            f"{len(vector)} (set MEMORY_EMBEDDING_DIMENSIONS to the model's size)"
                        )
                out.extend(vectors)
        return out

    # -- one request, with retries

    def request(self, texts: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(url, headers, JSON body) for one batch."""
        raise NotImplementedError

    def parse(self, body: Any, count: int) -> list[list[float]]:
        """The vectors in a successful answer, in input order."""
        raise NotImplementedError

    async def _post(self, client: httpx.AsyncClient, texts: list[str]) -> list[list[float]]:
        url, headers, body = self.request(texts)
        last = ""
        for attempt in range(self.retry.attempts):
            response: httpx.Response | None = None
            try:
                self.requests += 1
                response = await client.post(url, headers=headers, json=body)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if response.status_code < 300:
                    try:
                        return _floats(self.parse(response.json(), len(texts)), self.model_id)
                    except (ValueError, KeyError, TypeError, IndexError) as e:
                        raise EmbeddingError(
                            f"{self.model_id}: unexpected answer from {_host(url)}: {e}"
                        ) from None
                last = f"HTTP {response.status_code}: {_error_text(response)}"
                if response.status_code not in RETRY_STATUSES:
                    raise EmbeddingError(
                        f"{self.model_id}: {_host(url)} refused the request: {last}",
                        status=response.status_code,
                    )
            if attempt + 1 < self.retry.attempts:
                wait = self.retry.delay(attempt, response)
                log.info("embedding request failed (%s); retrying in %.2fs", last, wait)
                await asyncio.sleep(wait)
        raise EmbeddingError(
            f"{self.model_id}: {_host(url)} failed {self.retry.attempts} times; last: {last}",
            status=response.status_code if response is not None else None,
            retryable=True,
        )


class WorkersAIEmbedder(HttpEmbedder):
    """Workers AI text embeddings over Cloudflare's REST API (`ai/run/<model>`)."""

    def __init__(
        self,
        *,
        api_token: str,
        account_id: str | None = None,
        model: str = WORKERS_AI_DEFAULT_MODEL,
        dimensions: int | None = None,
        base_url: str | None = None,
        batch_size: int = 100,
        **options: Any,
    ) -> None:
        if base_url is None:
            if not account_id:
                raise ValueError("Workers AI needs an account id (CLOUDFLARE_ACCOUNT_ID)")
            base_url = WORKERS_AI_URL.format(account_id=account_id)
        dims = dimensions or KNOWN_DIMENSIONS.get(model)
        if dims is None:
            raise ValueError(f"unknown dimensions of {model}: set MEMORY_EMBEDDING_DIMENSIONS")
        super().__init__(model_id=model, dimensions=dims, batch_size=batch_size, **options)
        self.url = f"{base_url.rstrip('/')}/{model}"
        self._headers = {"Authorization": f"Bearer {api_token}"}

    def request(self, texts: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
        return self.url, self._headers, {"text": texts}

    def parse(self, body: Any, count: int) -> list[list[float]]:
        if body.get("success") is False:
            raise ValueError(f"success is false: {body.get('errors')}")
        data = body["result"]["data"]
        if not isinstance(data, list):
            raise TypeError("result.data is not a list")
        return data


class OpenAIEmbedder(HttpEmbedder):
    """An OpenAI-compatible `/embeddings` endpoint (OpenAI, Workers AI's /v1, Ollama, ...).

    With `dimensions` set for a model that is not known to have that size, it is
    sent as the request's `dimensions` (text-embedding-3 models shorten their
    vectors) and becomes part of the model id (`<model>@<dimensions>`)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str = OPENAI_BASE_URL,
        dimensions: int | None = None,
        batch_size: int = 256,
        **options: Any,
    ) -> None:
        known = KNOWN_DIMENSIONS.get(model)
        dims = dimensions or known
        if dims is None:
            raise ValueError(f"unknown dimensions of {model}: set MEMORY_EMBEDDING_DIMENSIONS")
        self.send_dimensions = dimensions is not None and dimensions != known
        model_id = f"{model}@{dims}" if self.send_dimensions else model
        super().__init__(model_id=model_id, dimensions=dims, batch_size=batch_size, **options)
        self.model = model
        self.url = f"{base_url.rstrip('/')}/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(self, texts: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.send_dimensions:
            body["dimensions"] = self.dimensions
        return self.url, self._headers, body

    def parse(self, body: Any, count: int) -> list[list[float]]:
        items = body["data"]
        ordered: list[Any] = [None] * count
        for position, item in enumerate(items):
            index = item.get("index", position)
            ordered[index] = item["embedding"]
        if any(v is None for v in ordered):
            raise ValueError("some inputs got no embedding")
        return ordered


def _floats(vectors: Any, model_id: str) -> list[list[float]]:
    out = []
    for vector in vectors:
        if not isinstance(vector, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            raise EmbeddingError(f"{model_id}: an embedding is not a list of numbers")
        floats = [float(x) for x in vector]
        if not all(math.isfinite(x) for x in floats):
            raise EmbeddingError(f"{model_id}: an embedding has a NaN or infinite value")
        out.append(floats)
    return out


def _host(url: str) -> str:
    return httpx.URL(url).host or url


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        errors = body.get("errors") or body.get("error")
        if errors:
            return str(errors)[:300]
    return str(body)[:200]


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of texts, not one string")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings, not {type(text).__name__}")


# ---------------------------------------------------------------- the KV cache

CACHE_PREFIX = "embeddings:"
_BULK = 100  # KV's most keys per bulk get


class CachedEmbedder:
    """`inner` with its vectors kept in a KV namespace, keyed by model and text hash.

    Lookups are bulk reads (100 keys each); misses are embedded together (each
    distinct text once) and written back with `ttl` seconds to live. The cache is
    best effort: a KV error (a per-request operation limit, a write to a key written
    less than a second ago) only skips caching, never fails the embedding.
    Vectors are stored as base64 little-endian float32 (what Vectorize keeps too).
    """

    def __init__(self, inner: Embedder, kv: Any, *, ttl: int | None = 30 * 24 * 3600) -> None:
        if ttl is not None and ttl < 60:
            raise ValueError("KV keeps values for at least 60 seconds (expiration_ttl >= 60)")
        self.inner = inner
        self.kv = kv
        self.ttl = ttl
        self.hits = 0
        self.misses = 0
        self._model_hash = hashlib.sha256(inner.model_id.encode()).hexdigest()[:16]

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{CACHE_PREFIX}{self._model_hash}:{digest}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        _check_texts(texts)
        keys = [self.key(text) for text in texts]
        found = await self._read(list(dict.fromkeys(keys)))
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        self.hits += len(texts) - sum(1 for k in keys if k in missing)
        self.misses += len(missing)
        if missing:
            fresh = await self.inner.embed(list(missing.values()))
            if len(fresh) != len(missing):
                raise EmbeddingError(f"{self.model_id}: got {len(fresh)} of {len(missing)}")
            # Rounded to float32 as the cache (and Vectorize) keep them: a text gets
            # the same vector whether it was cached or not.
            made = {
                k: np.asarray(v, dtype="<f4").astype(np.float64).tolist()
                for k, v in zip(missing, fresh, strict=True)
            }
            found.update(made)
            await self._write(made)
        return [found[k] for k in keys]

    async def _read(self, keys: list[str]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for start in range(0, len(keys), _BULK):
            batch = keys[start : start + _BULK]
            try:
                values = await self.kv.get(batch)
            except Exception as e:  # the cache never fails a request
                log.info("embedding cache read skipped: %s", e)
                return out
            for key, value in values.items():
                vector = _decode(value, self.dimensions)
                if vector is not None:
                    out[key] = vector
        return out

    async def _write(self, vectors: Mapping[str, list[float]]) -> None:
        for key, vector in vectors.items():
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            # One put per key; KV allows one write per key per second, and a batch
            # never holds a key twice (misses are deduplicated).
            try:
                await self.kv.put(key, value, expiration_ttl=self.ttl)
            except Exception as e:  # as above
                log.info("embedding cache write skipped: %s", e)
                return


def _decode(value: Any, dimensions: int) -> list[float] | None:
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    if len(raw) != 4 * dimensions:
        return None
    return np.frombuffer(raw, dtype="<f4").astype(np.float64).tolist()
