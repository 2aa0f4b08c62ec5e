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
    QUERY_OPTION_NAMES,
    VectorizeAsyncMutation,
    VectorizeIndexDetails,
    VectorizeMatches,
    VectorizeVector,
    details_from_dict,
    keyword_options,
    matches_from_dict,
    mutation_from_dict,
    vector_from_dict,
)
from ._ffi import JsException, to_js_json, to_js_value, to_py
from .errors import vectorize_error

# Query options by either name (snake_case or Cloudflare's camelCase) -> camelCase.
_QUERY_KEYS = {**{camel: camel for camel in QUERY_OPTION_NAMES.values()}, **QUERY_OPTION_NAMES}


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


def _query_options(options: Mapping[str, Any] | None, *keywords: Any) -> dict[str, Any]:
    """`options` (either names) with the keywords given (top_k, ..., return_metadata)."""
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in _QUERY_KEYS:
            raise VectorizeError(f"unknown query option {key!r}; known: {sorted(_QUERY_KEYS)}")
        out[_QUERY_KEYS[key]] = value
    return out | keyword_options(*keywords)


def _ids(ids: Any) -> Any:
    """A list of ids as a JS array (a str would be taken for a list of characters)."""
    if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
        raise VectorizeError("ids must be a list of strings")
    return to_js_value(list(ids))


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
        return mutation_from_dict(to_py(await self._call(method, payload)) or {})

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
        opts = _query_options(options, top_k, namespace, filter, return_values, return_metadata)
        values = _vector({"id": "query", "values": vector})["values"]
        result = await self._call("query", to_js_json(values), to_js_json(opts))
        return matches_from_dict(to_py(result) or {})

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
        opts = _query_options(options, top_k, namespace, filter, return_values, return_metadata)
        result = await self._call("queryById", vector_id, to_js_json(opts))
        return matches_from_dict(to_py(result) or {})

    async def get_by_ids(self, ids: Sequence[str]) -> list[VectorizeVector]:
        found = to_py(await self._call("getByIds", _ids(ids))) or []
        return [vector_from_dict(v) for v in found]

    async def delete_by_ids(self, ids: Sequence[str]) -> VectorizeAsyncMutation:
        return mutation_from_dict(to_py(await self._call("deleteByIds", _ids(ids))) or {})

    async def describe(self) -> VectorizeIndexDetails:
        return details_from_dict(to_py(await self._call("describe")) or {})

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""
