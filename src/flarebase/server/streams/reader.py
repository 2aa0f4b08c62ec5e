"""Following a stream held by a Durable Object, as server-sent events.

The object's `read_events(stream_id, after, wait)` RPC is a long poll: it answers at
once when there are chunks after `after`, else waits up to `wait` seconds. `follow`
turns those pages into SSE bytes, with a keep-alive comment after each empty wait,
and ends with `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from . import sse

WAIT_SECONDS = 15.0


async def follow(
    stub: Any,
    stream_id: str,
    after: int = 0,
    first: tuple[str, str, bool, int, str] | None = None,
    wait: float = WAIT_SECONDS,
) -> AsyncIterator[bytes]:
    """SSE events for the chunks of `stream_id` after position `after`, live until the
    stream ends. The object's `read_events(stream_id, after, wait)` answers
    (streamId, status, done, last position, events); `first` is a page already read."""
    page = first
    while True:
        if page is None:
            page = await stub.read_events(stream_id, after, wait)
            if page is None:  # expired or deleted meanwhile
                break
        _, _, done, after, text = page
        if text:
            yield text.encode()
        if done:
            break
        if not text:
            yield sse.KEEPALIVE
        page = None
    yield sse.DONE
