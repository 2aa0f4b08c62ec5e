"""Vectorize (V2) through the REST API: the same API and result types as the local index.

    insert / upsert  POST .../vectorize/v2/indexes/{name}/insert|upsert, NDJSON body
                     (one vector per line, `Content-Type: application/x-ndjson`)
    query            POST .../query {vector, topK, namespace, filter, returnValues,
                     returnMetadata}
    query_by_id      POST .../query {vectorId, ...options}, as wrangler sends it
    get_by_ids       POST .../get_by_ids {ids}
    delete_by_ids    POST .../delete_by_ids {ids}
    describe         GET  .../info

Limits (dimensions, topK, metadata size, ids per call, ...) and filters are
Vectorize's own, behind the API; the HTTP API takes up to 5,000 vectors per
insert/upsert where the binding takes 1,000. The local index's `config` property
(dimensions and metric) needs no request there; here it would, so it is not
offered: read it with `wrangler vectorize get`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..errors import VectorizeError
from ..invocation import count
from ..vectorize import (
    VectorizeAsyncMutation,
    VectorizeIndexDetails,
    VectorizeMatches,
    VectorizeVector,
    details_from_dict,
    matches_from_dict,
    mutation_from_dict,
    query_options,
    vector_dict,
    vector_from_dict,
)
from .client import ApiClient, ApiFailure


def _error(kind: str) -> Callable[[ApiFailure], VectorizeError]:
    """Cloudflare's shape, as the local index words it: `VECTOR_QUERY_ERROR (code = N): ...`."""

    def make(failure: ApiFailure) -> VectorizeError:
        name = f"VECTOR_{kind}_ERROR"
        prefix = name if failure.code is None else f"{name} (code = {failure.code})"
        return VectorizeError(f"{prefix}: {failure.message}", code=name)

    return make


def ndjson(vectors: Iterable[VectorizeVector | Mapping[str, Any]], kind: str) -> bytes:
    lines = []
    for v in vectors:
        try:
            lines.append(json.dumps(vector_dict(v), separators=(",", ":"), allow_nan=False))
        except (TypeError, ValueError) as e:
            raise _error(kind)(ApiFailure(None, None, f"not representable as JSON: {e}")) from None
    return "\n".join(lines).encode()


def _dict(raw: Any) -> dict[str, Any]:
    """An answer's `result` that should be an object (an empty one when it is not)."""
    return raw if isinstance(raw, dict) else {}


class ApiVectorize:
    """The `VectorizeIndex` binding for the index `index_name`."""

    def __init__(self, client: ApiClient, index_name: str) -> None:
        self._client = client
        self.index_name = index_name

    async def aclose(self) -> None:
        pass  # the client is the provider's

    @property
    def _path(self) -> str:
        name = quote(self.index_name, safe="")
        return self._client.account_path("vectorize", "v2", "indexes", name)

    async def insert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert vectors; ids that exist are left as they are (first write wins)."""
        return await self._write("insert", vectors)

    async def upsert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert or replace vectors, each in full."""
        return await self._write("upsert", vectors)

    async def _write(
        self, op: str, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        count("vectorize")
        # Insert keeps the first write and upsert the last: repeating either changes nothing.
        raw = await self._client.post(
            f"{self._path}/{op}",
            None,
            _error(op.upper()),
            idempotent=True,
            content=ndjson(vectors, op.upper()),
            headers={"Content-Type": "application/x-ndjson"},
        )
        return mutation_from_dict(_dict(raw))

    async def query(
        self,
        vector: Sequence[float],
        options: Mapping[str, Any] | None = None,
        *,
        top_k: int | None = None,
        namespace: str | None = None,
        filter: Mapping[str, Any] | None = None,
        return_values: bool | None = None,
        return_metadata: str | None = None,
    ) -> VectorizeMatches:
        """The `top_k` nearest vectors. `options` may carry Cloudflare's keys
        (`topK`, `namespace`, `filter`, `returnValues`, `returnMetadata`) instead."""
        body = query_options(options, top_k, namespace, filter, return_values, return_metadata)
        body["vector"] = [float(x) for x in vector]
        return matches_from_dict(_dict(await self._post("QUERY", "query", body)))

    async def query_by_id(
        self,
        vector_id: str,
        options: Mapping[str, Any] | None = None,
        *,
        top_k: int | None = None,
        namespace: str | None = None,
        filter: Mapping[str, Any] | None = None,
        return_values: bool | None = None,
        return_metadata: str | None = None,
    ) -> VectorizeMatches:
        """`query()` with the values of a stored vector."""
        if not isinstance(vector_id, str):
            raise _error("QUERY")(
                ApiFailure(
                    None, None, f"vector id must be a string, not {type(vector_id).__name__}"
                )
            )
        body = query_options(options, top_k, namespace, filter, return_values, return_metadata)
        body["vectorId"] = vector_id
        return matches_from_dict(_dict(await self._post("QUERY", "query", body)))

    async def get_by_ids(self, ids: Sequence[str]) -> list[VectorizeVector]:
        """The stored vectors among `ids` (missing ids are skipped)."""
        raw = await self._post("GET", "get_by_ids", {"ids": _ids(ids, "GET")})
        return [vector_from_dict(v) for v in raw or []]

    async def delete_by_ids(self, ids: Sequence[str]) -> VectorizeAsyncMutation:
        """Delete the vectors with these ids (absent ids are ignored)."""
        raw = await self._post("DELETE", "delete_by_ids", {"ids": _ids(ids, "DELETE")})
        return mutation_from_dict(_dict(raw))

    async def describe(self) -> VectorizeIndexDetails:
        count("vectorize")
        raw = await self._client.get(f"{self._path}/info", _error("INFO"))
        return details_from_dict(_dict(raw))

    async def _post(self, kind: str, endpoint: str, body: dict[str, Any]) -> Any:
        """A JSON POST; the answer's `result` as plain JSON values (every one of these
        calls reads, or deletes by id, so repeating it is harmless)."""
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise _error(kind)(ApiFailure(None, None, f"not representable as JSON: {e}")) from None
        count("vectorize")
        return await self._client.post(
            f"{self._path}/{endpoint}", body, _error(kind), idempotent=True
        )


def _ids(ids: Any, kind: str) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise _error(kind)(ApiFailure(None, None, "ids must be a list of strings"))
    for i in ids:
        if not isinstance(i, str):
            raise _error(kind)(
                ApiFailure(None, None, f"ids must be strings, not {type(i).__name__}")
            )
    return list(ids)
