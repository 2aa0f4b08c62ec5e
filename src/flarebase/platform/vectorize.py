"""Vectorize (V2) shapes and limits, shared by every provider (Cloudflare's names, snake_case).

A binding has `insert`, `upsert`, `query`, `query_by_id`, `get_by_ids`,
`delete_by_ids` and `describe`, as `env.INDEX` has in a Worker. Results are these
dataclasses; `to_dict()` gives Cloudflare's JSON shape (camelCase keys) for
anything that speaks the wire format.

Scores follow Cloudflare's documented convention for each metric
(developers.cloudflare.com/vectorize/best-practices/create-indexes/#distance-metrics):
- `cosine`: similarity in [-1, 1], 1 for identical directions; best first
  (descending);
- `euclidean`: L2 distance, 0 for identical vectors; best first (ascending);
- `dot-product`: the *negative* dot product, so a lower score is more similar
  ("a score of -1000 is more similar than -500"); best first (ascending).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import VectorizeError

Metric = Literal["cosine", "euclidean", "dot-product"]
MetadataIndexType = Literal["string", "number", "boolean"]
ReturnMetadata = Literal["none", "indexed", "all"]

METRICS: tuple[str, ...] = ("cosine", "euclidean", "dot-product")
METADATA_INDEX_TYPES: tuple[str, ...] = ("string", "number", "boolean")
RETURN_METADATA: tuple[str, ...] = ("none", "indexed", "all")
# Metrics whose best score is the lowest one (results sorted ascending).
ASCENDING_METRICS: frozenset[str] = frozenset({"euclidean", "dot-product"})

# Limits of Vectorize V2 (Workers Paid), from Cloudflare's limits page.
MAX_DIMENSIONS = 1536
DEFAULT_TOP_K = 5
MAX_TOP_K = 100
MAX_TOP_K_WITH_VALUES_OR_METADATA = 50  # returnValues=true or returnMetadata="all"
MAX_ID_BYTES = 64
MAX_NAMESPACE_BYTES = 64
MAX_INDEX_NAME_BYTES = 64
MAX_METADATA_BYTES = 10 * 1024  # compact JSON
MAX_BATCH = 1000  # vectors per insert/upsert call on the binding (HTTP: 5,000)
MAX_VECTORS = 20_000_000
MAX_NAMESPACES = 50_000
MAX_METADATA_INDEXES = 10
STRING_INDEX_BYTES = 64  # a string metadata index holds the first 64 bytes
MAX_FILTER_BYTES = 2048  # compact JSON must be *under* this
MAX_FILTER_KEY_CHARS = 512
# Not on the limits page; the service answers more with "too many ids in payload"
# (code 40007), as reported by many users of the binding.
MAX_GET_IDS = 20
MAX_DELETE_IDS = 100

INDEX_NAME_PATTERN = r"^[a-z]+[a-z0-9_-]*[a-z0-9]+$"  # the REST API's pattern


def _present(**fields: Any) -> dict[str, Any]:
    """The optional fields that are set (Cloudflare's JSON leaves the others out)."""
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(slots=True)
class VectorizeVector:
    """One vector: `values` are stored as float32 and read back as Python floats."""

    id: str
    values: list[float]
    namespace: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "values": list(self.values)}
        return out | _present(namespace=self.namespace, metadata=self.metadata)


@dataclass(slots=True)
class VectorizeMatch:
    id: str
    score: float
    values: list[float] | None = None
    namespace: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        values = None if self.values is None else list(self.values)
        out = {"id": self.id, "score": self.score}
        return out | _present(values=values, namespace=self.namespace, metadata=self.metadata)


@dataclass(slots=True)
class VectorizeMatches:
    count: int
    matches: list[VectorizeMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "matches": [m.to_dict() for m in self.matches]}


@dataclass(slots=True)
class VectorizeAsyncMutation:
    """What a write returns. On Cloudflare the change becomes queryable later
    (median under 30 s); `describe().processed_up_to_mutation` tells when."""

    mutation_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"mutationId": self.mutation_id}


@dataclass(slots=True)
class VectorizeIndexDetails:
    """`describe()`: `processed_up_to_*` name the last write the index reflects
    (None before the first write)."""

    dimensions: int
    vector_count: int
    processed_up_to_datetime: str | None
    processed_up_to_mutation: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimensions": self.dimensions,
            "vectorCount": self.vector_count,
            "processedUpToDatetime": self.processed_up_to_datetime,
            "processedUpToMutation": self.processed_up_to_mutation,
        }


@dataclass(frozen=True, slots=True)
class VectorizeIndexConfig:
    """Fixed at creation."""

    dimensions: int
    metric: Metric


@dataclass(frozen=True, slots=True)
class VectorizeIndexInfo:
    """An index as `wrangler vectorize get/list` shows it."""

    name: str
    config: VectorizeIndexConfig
    description: str = ""
    created_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "config": {"dimensions": self.config.dimensions, "metric": self.config.metric},
            "created_on": self.created_on,
        }


@dataclass(frozen=True, slots=True)
class VectorizeMetadataIndex:
    """A metadata index: which property is filterable, and as which type."""

    property_name: str
    index_type: MetadataIndexType

    def to_dict(self) -> dict[str, Any]:
        return {"propertyName": self.property_name, "indexType": self.index_type}


# -- the binding's JSON, shared by the providers that speak it (bridge, workers) ---------------

QUERY_OPTION_NAMES = {
    "top_k": "topK",
    "namespace": "namespace",
    "filter": "filter",
    "return_values": "returnValues",
    "return_metadata": "returnMetadata",
}


def keyword_options(
    top_k: Any, namespace: Any, filter: Any, return_values: Any, return_metadata: Any
) -> dict[str, Any]:
    """The query keywords given (not None), under Cloudflare's camelCase names."""
    return _present(
        topK=top_k,
        namespace=namespace,
        filter=filter,
        returnValues=return_values,
        returnMetadata=return_metadata,
    )


def vector_dict(v: VectorizeVector | Mapping[str, Any]) -> dict[str, Any]:
    """A vector as the binding takes it, values as a list (a numpy array would not go
    as JSON); what the values are is the index's to check."""
    if isinstance(v, VectorizeVector):
        return v.to_dict()
    if isinstance(v, Mapping):
        out = dict(v)
        if "values" in out and not isinstance(out["values"], list | dict):
            out["values"] = [float(x) for x in out["values"]]  # e.g. a numpy array
        return out
    raise VectorizeError(f"a vector is a VectorizeVector or a dict, not {type(v).__name__}")


def query_options(options: Mapping[str, Any] | None, *keywords: Any) -> dict[str, Any]:
    """A query's `options` as given (Cloudflare's names; the index checks them), with the
    keywords given (top_k, namespace, filter, return_values, return_metadata) over them."""
    return dict(options or {}) | keyword_options(*keywords)


def matches_from_dict(raw: Mapping[str, Any]) -> VectorizeMatches:
    matches = [
        VectorizeMatch(
            m["id"], float(m["score"]), m.get("values"), m.get("namespace"), m.get("metadata")
        )
        for m in raw.get("matches") or []
    ]
    return VectorizeMatches(int(raw.get("count", len(matches))), matches)


def mutation_from_dict(raw: Mapping[str, Any]) -> VectorizeAsyncMutation:
    return VectorizeAsyncMutation(str(raw.get("mutationId", "")))


def vector_from_dict(raw: Mapping[str, Any]) -> VectorizeVector:
    return VectorizeVector(
        raw["id"], list(raw.get("values") or []), raw.get("namespace"), raw.get("metadata")
    )


def details_from_dict(raw: Mapping[str, Any]) -> VectorizeIndexDetails:
    return VectorizeIndexDetails(
        dimensions=int(raw.get("dimensions") or 0),
        # "vectorsCount": what a Vectorize V1 index answers
        vector_count=int(raw.get("vectorCount", raw.get("vectorsCount")) or 0),
        processed_up_to_datetime=raw.get("processedUpToDatetime"),
        processed_up_to_mutation=raw.get("processedUpToMutation"),
    )
