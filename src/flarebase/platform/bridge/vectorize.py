"""Vectorize through the bridge: the same API and result types as the local index.

Every binding call goes to the Worker's `VectorizeIndex` unchanged (Cloudflare's
camelCase options and results); limits and filters are Vectorize's own. Miniflare
has no Vectorize, so this path is tested against a mock binding (tests/bridge).
"""

from __future__ import annotations

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
from .client import BridgeClient, OpError

_OPTION_NAMES = {
    "top_k": "topK",
    "namespace": "namespace",
    "filter": "filter",
    "return_values": "returnValues",
    "return_metadata": "returnMetadata",
}


def vectorize_error(error: OpError) -> VectorizeError:
    return VectorizeError(error.message)


def _vector(v: VectorizeVector | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(v, VectorizeVector):
        return v.to_dict()
    if isinstance(v, Mapping):
        out = dict(v)
        if "values" in out and not isinstance(out["values"], list | dict):
            out["values"] = [float(x) for x in out["values"]]  # e.g. a numpy array
        return out
    raise VectorizeError(f"a vector is a VectorizeVector or a dict, not {type(v).__name__}")


def _options(options: Mapping[str, Any] | None, **given: Any) -> dict[str, Any]:
    out = dict(options or {})
    for name, value in given.items():
        if value is not None:
            out[_OPTION_NAMES[name]] = value
    return out


def _matches(raw: dict[str, Any]) -> VectorizeMatches:
    matches = [
        VectorizeMatch(
            m["id"], float(m["score"]), m.get("values"), m.get("namespace"), m.get("metadata")
        )
        for m in raw.get("matches", [])
    ]
    return VectorizeMatches(int(raw.get("count", len(matches))), matches)


def _mutation(raw: dict[str, Any]) -> VectorizeAsyncMutation:
    return VectorizeAsyncMutation(str(raw.get("mutationId", "")))


class BridgeVectorize:
    """The `VectorizeIndex` binding of the bridge Worker named `binding`."""

    def __init__(self, client: BridgeClient, binding: str) -> None:
        self._client = client
        self.binding = binding

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def _call(self, op: dict[str, Any], idempotent: bool) -> Any:
        count("vectorize")
        try:
            return await self._client.call(
                {**op, "binding": self.binding}, vectorize_error, idempotent=idempotent
            )
        except (TypeError, ValueError) as e:  # not representable as JSON
            raise VectorizeError(str(e)) from None

    async def insert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert vectors; ids that exist are left as they are (first write wins)."""
        op = {"op": "vectorize.insert", "vectors": [_vector(v) for v in vectors]}
        return _mutation(await self._call(op, True))

    async def upsert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert or replace vectors, each in full."""
        op = {"op": "vectorize.upsert", "vectors": [_vector(v) for v in vectors]}
        return _mutation(await self._call(op, True))

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
        opts = _options(
            options,
            top_k=top_k,
            namespace=namespace,
            filter=filter,
            return_values=return_values,
            return_metadata=return_metadata,
        )
        values = [float(x) for x in vector]
        op = {"op": "vectorize.query", "vector": values, "options": opts}
        return _matches(await self._call(op, True))

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
        opts = _options(
            options,
            top_k=top_k,
            namespace=namespace,
            filter=filter,
            return_values=return_values,
            return_metadata=return_metadata,
        )
        op = {"op": "vectorize.queryById", "id": vector_id, "options": opts}
        return _matches(await self._call(op, True))

    async def get_by_ids(self, ids: Sequence[str]) -> list[VectorizeVector]:
        raw = await self._call({"op": "vectorize.getByIds", "ids": list(ids)}, True)
        return [
            VectorizeVector(v["id"], list(v["values"]), v.get("namespace"), v.get("metadata"))
            for v in raw
        ]

    async def delete_by_ids(self, ids: Sequence[str]) -> VectorizeAsyncMutation:
        raw = await self._call({"op": "vectorize.deleteByIds", "ids": list(ids)}, True)
        return _mutation(raw)

    async def describe(self) -> VectorizeIndexDetails:
        raw = await self._call({"op": "vectorize.describe"}, True)
        return VectorizeIndexDetails(
            dimensions=int(raw.get("dimensions", 0)),
            vector_count=int(raw.get("vectorCount", 0)),
            processed_up_to_datetime=raw.get("processedUpToDatetime"),
            processed_up_to_mutation=raw.get("processedUpToMutation"),
        )
