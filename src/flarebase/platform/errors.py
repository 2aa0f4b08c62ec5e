"""Typed errors. Messages carry Cloudflare's own wording where it has one."""

from __future__ import annotations


class FlarebaseError(Exception):
    """Base of every error flarebase raises on purpose.

    `code` is stable and machine-readable; `str(err)` is the human message.
    """

    code = "FLAREBASE_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(FlarebaseError):
    code = "CONFIG_ERROR"


class LimitExceeded(FlarebaseError):
    """A documented Cloudflare limit was hit (also subclassed per product)."""

    code = "LIMIT_EXCEEDED"


class D1Error(FlarebaseError):
    """D1 errors: code is D1_ERROR, D1_EXEC_ERROR, D1_TYPE_ERROR or D1_COLUMN_NOTFOUND."""

    code = "D1_ERROR"


class KVError(FlarebaseError):
    code = "KV_ERROR"


class R2Error(FlarebaseError):
    code = "R2_ERROR"


class VectorizeError(FlarebaseError):
    code = "VECTORIZE_ERROR"


class QueueError(FlarebaseError):
    code = "QUEUE_ERROR"


class DurableObjectError(FlarebaseError):
    code = "DURABLE_OBJECT_ERROR"


class TooManyOperations(LimitExceeded):
    """More binding calls in one invocation than Cloudflare allows."""

    code = "TOO_MANY_OPERATIONS"
