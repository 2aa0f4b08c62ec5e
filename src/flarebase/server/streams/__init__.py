"""Resumable streams: chunks kept durably in a Durable Object's SQLite, read by any
number of followers over RPC, served as the AI SDK's UI message stream (SSE).

- `buffer.ChunkBuffer`: the durable chunk buffer inside an object (append, read,
  finish, expiry; chunks over 1 MB in R2).
- `reader.follow`: the SSE bytes of a stream from a position, following it live.
- `sse`: the protocol's headers, events (`id:` = position), `[DONE]`, positions.
- `response.EventStreamResponse`: the HTTP response of a followed stream.

The chat's object (`flarebase.server.chat.durable_object.ChatStream`) produces into a
buffer; routes follow it.
"""

from . import sse
from .buffer import ChunkBuffer
from .reader import follow
from .response import EventStreamResponse

__all__ = ["ChunkBuffer", "EventStreamResponse", "follow", "sse"]
