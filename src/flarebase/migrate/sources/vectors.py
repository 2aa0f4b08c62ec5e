"""Reading vectors: a JSONL export, or an Upstash Vector index over its REST API.

JSONL: one vector per line, `{"id": ..., "vector": [...], "metadata": {...},
"namespace": "..."}` (`values` is accepted for `vector`; metadata and namespace are
optional). The resume position is the byte offset after the last line of a batch.

Upstash Vector: `GET /info` gives the dimension, similarity function and namespaces;
`POST /range/<namespace>` with `{cursor, limit, includeVectors, includeMetadata,
includeData}` pages through one namespace (`nextCursor` is "" at the end); `POST
/fetch/<namespace>` with `{ids, ...}` reads vectors by id (verification). The resume
position is (namespace number, cursor).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from ...platform.errors import FlarebaseError

METRICS = {"COSINE": "cosine", "EUCLIDEAN": "euclidean", "DOT_PRODUCT": "dot-product"}


class VectorSourceError(FlarebaseError):
    code = "MIGRATE_VECTORS"


@dataclass
class SourceVector:
    id: str
    values: list[float] | None
    metadata: dict[str, Any] | None = None
    namespace: str = ""  # "" is the default namespace
    data: str | None = None  # Upstash's `data` (the text that was embedded)
    problem: str = ""  # why this line cannot become a vector (bad JSON, no values...)


@dataclass
class SourceInfo:
    dimensions: int | None
    metric: str | None  # None: unknown (JSONL without --source-metric)
    count: int
    namespaces: dict[str, int] = field(default_factory=dict)


class VectorSource(Protocol):
    description: str

    async def info(self) -> SourceInfo: ...
    def batches(
        self, after: list[Any] | None, size: int
    ) -> AsyncIterator[tuple[list[SourceVector], list[Any]]]: ...
    async def fetch(self, namespace: str, ids: list[str]) -> list[SourceVector]: ...
    async def aclose(self) -> None: ...


class JsonlVectors:
    def __init__(self, path: str | Path, metric: str | None = None) -> None:
        self.path = Path(path)
        self.description = f"jsonl:{self.path}"
        self.metric = metric
        if not self.path.is_file():
            raise VectorSourceError(f"no such file: {self.path}")

    async def info(self) -> SourceInfo:
        count, dims = 0, None
        namespaces: dict[str, int] = {}
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                vector = _parse_line(line, n)
                count += 1
                namespaces[vector.namespace] = namespaces.get(vector.namespace, 0) + 1
                if dims is None and vector.values is not None:
                    dims = len(vector.values)
        return SourceInfo(dims, self.metric, count, namespaces)

    async def batches(
        self, after: list[Any] | None, size: int
    ) -> AsyncIterator[tuple[list[SourceVector], list[Any]]]:
        offset = int(after[0]) if after else 0
        line_no = int(after[1]) if after and len(after) > 1 else 0
        with open(self.path, "rb") as f:
            f.seek(offset)
            batch: list[SourceVector] = []
            while True:
                line = f.readline()
                if not line:
                    break
                line_no += 1
                offset += len(line)
                if not line.strip():
                    continue
                batch.append(_parse_line(line, line_no))
                if len(batch) >= size:
                    yield batch, [offset, line_no]
                    batch = []
            if batch:
                yield batch, [offset, line_no]

    async def fetch(self, namespace: str, ids: list[str]) -> list[SourceVector]:
        wanted = set(ids)
        found = []
        async for batch, _ in self.batches(None, 1000):
            found += [v for v in batch if v.namespace == namespace and v.id in wanted]
        return found

    async def aclose(self) -> None:
        pass


def _parse_line(line: bytes, n: int) -> SourceVector:
    try:
        item = json.loads(line)
    except ValueError as e:
        return SourceVector(f"line {n}", None, problem=f"line {n} is not JSON: {e}")
    if not isinstance(item, dict) or "id" not in item:
        return SourceVector(f"line {n}", None, problem=f"line {n} has no id")
    return _vector(item, str(item.get("namespace") or ""), f"line {n}")


def _vector(item: dict[str, Any], namespace: str, where: str) -> SourceVector:
    values = item.get("vector", item.get("values"))
    vector = SourceVector(str(item["id"]), None, item.get("metadata"), namespace, item.get("data"))
    if item.get("sparseVector") is not None and values is None:
        vector.problem = f"{where}: a sparse vector (Vectorize holds dense vectors only)"
    elif not isinstance(values, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in values
    ):
        vector.problem = f"{where}: no dense vector values"
    else:
        vector.values = [float(x) for x in values]
    if vector.metadata is not None and not isinstance(vector.metadata, dict):
        vector.problem = f"{where}: metadata is not an object"
    return vector


class UpstashVectors:
    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.description = f"upstash-vector:{self.url}"
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        self._namespaces: list[str] | None = None

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(5):
            try:
                response = await self._http.request(method, f"{self.url}{path}", json=body)
            except httpx.HTTPError as e:
                if attempt == 4:
                    raise VectorSourceError(f"{self.description}{path}: {e}") from None
                continue
            if response.status_code in (429, 500, 502, 503, 504) and attempt < 4:
                import asyncio

                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code != 200:
                raise VectorSourceError(
                    f"{self.description}{path}: HTTP {response.status_code}: {response.text[:300]}"
                )
            data = response.json()
            if isinstance(data, dict) and data.get("error"):
                raise VectorSourceError(f"{self.description}{path}: {data['error']}")
            return data.get("result") if isinstance(data, dict) else data
        raise VectorSourceError(f"{self.description}{path}: no answer")

    async def info(self) -> SourceInfo:
        info = await self._call("GET", "/info")
        namespaces = {
            name: int(stats.get("vectorCount", 0) + stats.get("pendingVectorCount", 0))
            for name, stats in (info.get("namespaces") or {"": {}}).items()
        }
        self._namespaces = sorted(namespaces)
        dims = info.get("dimension") or (info.get("denseIndex") or {}).get("dimension")
        metric = info.get("similarityFunction") or (info.get("denseIndex") or {}).get(
            "similarityFunction"
        )
        count = int(info.get("vectorCount", 0)) + int(info.get("pendingVectorCount", 0))
        return SourceInfo(dims, METRICS.get(str(metric).upper()), count, namespaces)

    async def batches(
        self, after: list[Any] | None, size: int
    ) -> AsyncIterator[tuple[list[SourceVector], list[Any]]]:
        if self._namespaces is None:
            await self.info()
        assert self._namespaces is not None
        start = int(after[0]) if after else 0
        cursor = str(after[1]) if after else "0"
        for i in range(start, len(self._namespaces)):
            namespace = self._namespaces[i]
            path = f"/range/{namespace}" if namespace else "/range"
            while True:
                page = await self._call(
                    "POST",
                    path,
                    {
                        "cursor": cursor,
                        "limit": size,
                        "includeVectors": True,
                        "includeMetadata": True,
                        "includeData": True,
                    },
                )
                vectors = [_vector(v, namespace, f"id {v.get('id')}") for v in page["vectors"]]
                cursor = str(page.get("nextCursor") or "")
                if cursor:
                    yield vectors, [i, cursor]
                else:
                    yield vectors, [i + 1, "0"]
                    break
            cursor = "0"

    async def fetch(self, namespace: str, ids: list[str]) -> list[SourceVector]:
        path = f"/fetch/{namespace}" if namespace else "/fetch"
        found = await self._call(
            "POST",
            path,
            {"ids": ids, "includeVectors": True, "includeMetadata": True, "includeData": True},
        )
        return [_vector(v, namespace, f"id {v.get('id')}") for v in found if v]

    async def aclose(self) -> None:
        await self._http.aclose()
