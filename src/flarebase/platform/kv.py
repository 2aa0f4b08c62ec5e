"""Workers KV result shapes and limits, shared by every provider.

The shapes are Cloudflare's, in snake_case: `list()` returns
`{keys: [{name, expiration?, metadata?}], list_complete, cursor}` and
`getWithMetadata()` returns `{value, metadata, cacheStatus}`. `to_dict()` gives
the JSON shape the binding returns in a Worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import KVError

# Cloudflare's documented limits (developers.cloudflare.com/kv/platform/limits),
# the same figures as Miniflare's `KVLimits`.
MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024  # 25 MiB
MAX_METADATA_BYTES = 1024
MIN_EXPIRATION_TTL = 60  # seconds
MIN_CACHE_TTL = 30  # seconds
MAX_LIST_LIMIT = 1000
MAX_BULK_GET_KEYS = 100
MAX_BULK_GET_BYTES = 25 * 1024 * 1024
WRITES_PER_KEY_INTERVAL = 1.0  # seconds between two writes to one key

GET_TYPES = ("text", "json", "arrayBuffer", "bytes", "stream")
BULK_GET_TYPES = ("text", "json")


class KVTypeError(KVError, TypeError):
    """A KV call got an argument of the wrong type (workerd raises a TypeError)."""

    code = "KV_TYPE_ERROR"


@dataclass(slots=True)
class KVKey:
    """One entry of a `list()` page. `expiration` is in seconds since the UNIX epoch."""

    name: str
    expiration: int | None = None
    metadata: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.expiration is not None:
            out["expiration"] = self.expiration
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass(slots=True)
class KVListResult:
    """A `list()` page. `cursor` is set (and opaque) only when `list_complete` is false.

    A page may hold fewer keys than `limit`, even none, while `list_complete` is
    false: keep calling with the cursor (and the same prefix) until it is true.
    """

    keys: list[KVKey] = field(default_factory=list)
    list_complete: bool = True
    cursor: str | None = None
    cache_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keys": [key.to_dict() for key in self.keys],
            "list_complete": self.list_complete,
        }
        if not self.list_complete:
            out["cursor"] = self.cursor
        out["cacheStatus"] = self.cache_status
        return out


@dataclass(slots=True)
class KVValueWithMetadata:
    """What `get_with_metadata()` returns; `value` and `metadata` are None for a missing key."""

    value: Any
    metadata: Any = None
    cache_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "metadata": self.metadata, "cacheStatus": self.cache_status}
