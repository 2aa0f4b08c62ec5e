"""Read ahead: the next batch is fetched while the caller works on this one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


async def prefetch(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """Read the next batch while the caller writes this one."""
    it = aiter(batches)
    pending: asyncio.Future[Any] = asyncio.ensure_future(anext(it, None))
    try:
        while True:
            item = await pending
            if item is None:
                return
            pending = asyncio.ensure_future(anext(it, None))
            yield item
    finally:
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pending  # retrieve its outcome: an error here was already raised above
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
