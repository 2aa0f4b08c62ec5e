"""Vectorize inside a Python Worker: the runtime's `VectorizeIndex` (V2), with the
`local` API: `insert`, `upsert`, `query`, `query_by_id`, `get_by_ids`,
`delete_by_ids` and `describe`, returning the shared dataclasses of
`flarebase.platform.vectorize`.

Vectors cross as plain objects (values as arrays of numbers, metadata through
JSON so None is null); query options accept Cloudflare's camelCase keys or the
snake_case keywords, as every provider does. The index itself checks dimensions,
ids, metadata and filters, with Cloudflare's messages.

Not exercised under Pyodide here: Miniflare has no local Vectorize (wrangler dev
proxies it to Cloudflare), so this module is only checked by type and by shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import VectorizeError
from ..invocation import count
from ..vectorize import (
    VectorizeAsyncMutation,
    VectorizeIndexDetails,
    VectorizeMatch,
    VectorizeMatches,
    VectorizeVector,
)
from ._ffi import JsException, to_js_json, to_js_value, to_py
from .errors import vectorize_error

_QUERY_KEYS = {
    "topK": "topK",
    "top_k": "topK",
    "namespace": "namespace",
    "filter": "filter",
    "returnValues": "returnValues",
    "return_values": "returnValues",
    "returnMetadata": "returnMetadata",
    "return_metadata": "returnMetadata",
}


def _vector(item: VectorizeVector | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(item, VectorizeVector):
        out = item.to_dict()
    elif isinstance(item, Mapping):
        out = dict(item)
    else:
        raise VectorizeError(f"vectors are VectorizeVector or dicts, not {type(item).__name__}")
    values: Any = out.get("values")
    if hasattr(values, "tolist"):  # numpy arrays
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str | bytes):
        raise VectorizeError(f"vector {out.get('id')!r}: values must be a list of numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise VectorizeError(f"vector {out.get('id')!r}: values must be finite numbers")
    out["values"] = [float(v) for v in values]
    return out


def _query_options(options: Mapping[str, Any] | None, **keywords: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in _QUERY_KEYS:
            raise VectorizeError(f"unknown query option {key!r}; known: {sorted(_QUERY_KEYS)}")
        out[_QUERY_KEYS[key]] = value
    for key, value in keywords.items():
        if value is not None:
            out[_QUERY_KEYS[key]] = value
    return out


def _matches(result: Any) -> VectorizeMatches:
    data = to_py(result) or {}
    matches = [
        VectorizeMatch(
            m["id"], float(m["score"]), m.get("values"), m.get("namespace"), m.get("metadata")
        )
        for m in data.get("matches", [])
    ]
    return VectorizeMatches(int(data.get("count", len(matches))), matches)


class WorkersVectorize:
    """The `VectorizeIndex` binding of a Worker, with the `local` provider's Python API."""

    def __init__(self, binding: Any) -> None:
        self._js = binding

    async def _call(self, method: str, *args: Any) -> Any:
        count("vectorize")
        try:
            return await getattr(self._js, method)(*args)
        except JsException as e:
            raise vectorize_error(e) from None

    async def _write(
        self, method: str, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        try:
            payload = to_js_json([_vector(v) for v in vectors])
        except (TypeError, ValueError) as e:
            raise VectorizeError(f"vectors cannot be sent: {e}") from None
        result = to_py(await self._call(method, payload)) or {}
        return VectorizeAsyncMutation(str(result.get("mutationId", "")))

    async def insert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert vectors; ids that exist are left as they are."""
        return await self._write("insert", vectors)

    async def upsert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert or replace vectors, each in full."""
        return await self._write("upsert", vectors)

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
        opts = _query_options(
            options,
            top_k=top_k,
            namespace=namespace,
            filter=filter,
            return_values=return_values,
            return_metadata=return_metadata,
        )
        values = _vector({"id": "query", "values": vector})["values"]
        return _matches(await self._call("query", to_js_json(values), to_js_json(opts)))

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
        if not isinstance(vector_id, str):
            raise VectorizeError(f"vector id must be a string, not {type(vector_id).__name__}")
        opts = _query_options(
            options,
            top_k=top_k,
            namespace=namespace,
            filter=filter,
            return_values=return_values,
            return_metadata=return_metadata,
        )
        return _matches(await self._call("queryById", vector_id, to_js_json(opts)))

    async def get_by_ids(self, ids: Sequence[str]) -> list[VectorizeVector]:
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise VectorizeError("ids must be a list of strings")
        found = to_py(await self._call("getByIds", to_js_value(list(ids)))) or []
        return [
            VectorizeVector(
                v["id"], list(v.get("values") or []), v.get("namespace"), v.get("metadata")
            )
            for v in found
        ]

    async def delete_by_ids(self, ids: Sequence[str]) -> VectorizeAsyncMutation:
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise VectorizeError("ids must be a list of strings")
        result = to_py(await self._call("deleteByIds", to_js_value(list(ids)))) or {}
        return VectorizeAsyncMutation(str(result.get("mutationId", "")))

    async def describe(self) -> VectorizeIndexDetails:
        data = to_py(await self._call("describe")) or {}
        return VectorizeIndexDetails(
            dimensions=int(data.get("dimensions", 0)),
            vector_count=int(data.get("vectorCount", data.get("vectorsCount", 0))),
            processed_up_to_datetime=data.get("processedUpToDatetime"),
            processed_up_to_mutation=data.get("processedUpToMutation"),
        )

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""
