"""Server-sent events in the AI SDK's UI message stream protocol (v1)."""

from __future__ import annotations

# Exactly the SDK's UI_MESSAGE_STREAM_HEADERS.
HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}
DONE = b"data: [DONE]\n\n"
# A comment line: keeps proxies from closing an idle stream; clients ignore it.
KEEPALIVE = b": keepalive\n\n"


def event(position: int, data: str) -> bytes:
    """One chunk. `id:` is its position: send it back as Last-Event-ID (or ?position=)
    to get only the chunks after it."""
    return f"id: {position}\ndata: {data}\n\n".encode()


def events(chunks: list[tuple[int, str]]) -> str:
    """Several chunks ((position, json) pairs) as events, in one string."""
    return "".join([f"id: {position}\ndata: {data}\n\n" for position, data in chunks])


def parse_position(value: str | None) -> int | None:
    """A Last-Event-ID or ?position= value: a non-negative integer, else ValueError."""
    if value is None or value == "":
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise ValueError("a stream position is a non-negative integer (the last event id seen)")
    return int(value)
