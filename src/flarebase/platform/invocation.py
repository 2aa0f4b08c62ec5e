"""Per-invocation operation limits (a Worker request may make at most N binding calls).

Outside `invocation()` nothing is counted: scripts, migrations and tests are not
Worker invocations. The server opens one invocation per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import TooManyOperations

# Paid-plan figures from Cloudflare's limits pages.
LIMITS = {"d1": 1_000, "kv": 1_000}
MESSAGES = {
    "d1": "D1_ERROR: Too many API requests by single worker invocation.",
    "kv": "KV: Too many API requests by single worker invocation.",
}

_counts: ContextVar[dict[str, int] | None] = ContextVar("flarebase_invocation", default=None)


@contextmanager
def invocation() -> Iterator[dict[str, int]]:
    """Count binding calls made inside this block, raising past the limits."""
    counts: dict[str, int] = {}
    token = _counts.set(counts)
    try:
        yield counts
    finally:
        _counts.reset(token)


def count(product: str, n: int = 1) -> None:
    counts = _counts.get()
    if counts is None:
        return
    used = counts.get(product, 0) + n
    counts[product] = used
    if used > LIMITS.get(product, used):
        raise TooManyOperations(MESSAGES[product])
