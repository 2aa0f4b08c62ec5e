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
    VectorizeMatches,
    VectorizeVector,
    details_from_dict,
    matches_from_dict,
    mutation_from_dict,
    query_options,
    vector_dict,
    vector_from_dict,
)
from .client import BridgeClient, OpError


def vectorize_error(error: OpError) -> VectorizeError:
    return VectorizeError(error.message)


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
        op = {"op": "vectorize.insert", "vectors": [vector_dict(v) for v in vectors]}
        return mutation_from_dict(await self._call(op, True))

    async def upsert(
        self, vectors: Iterable[VectorizeVector | Mapping[str, Any]]
    ) -> VectorizeAsyncMutation:
        """Insert or replace vectors, each in full."""
        op = {"op": "vectorize.upsert", "vectors": [vector_dict(v) for v in vectors]}
        return mutation_from_dict(await self._call(op, True))

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
        opts = query_options(options, top_k, namespace, filter, return_values, return_metadata)
        values = [float(x) for x in vector]
        op = {"op": "vectorize.query", "vector": values, "options": opts}
        return matches_from_dict(await self._call(op, True))

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
        opts = query_options(options, top_k, namespace, filter, return_values, return_metadata)
        op = {"op": "vectorize.queryById", "id": vector_id, "options": opts}
        return matches_from_dict(await self._call(op, True))

    async def get_by_ids(self, ids: Sequence[str]) -> list[VectorizeVector]:
        raw = await self._call({"op": "vectorize.getByIds", "ids": list(ids)}, True)
        return [vector_from_dict(v) for v in raw]

    async def delete_by_ids(self, ids: Sequence[str]) -> VectorizeAsyncMutation:
        raw = await self._call({"op": "vectorize.deleteByIds", "ids": list(ids)}, True)
        return mutation_from_dict(raw)

    async def describe(self) -> VectorizeIndexDetails:
        return details_from_dict(await self._call({"op": "vectorize.describe"}, True))
