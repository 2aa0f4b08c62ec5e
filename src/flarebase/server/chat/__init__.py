"""Chats in the Vercel AI SDK's UI message stream protocol, with resumable streams.

Routes (see `routes`): POST /api/chat (send; answers a UI message stream), GET
/api/chat/{id}/stream (resume: replay from the first chunk and follow, or the tail
after a position; 204 when there is no stream), POST /api/chat/{id}/stop, GET/PATCH
/api/chat/{id}, DELETE /api/chat?id=, GET/DELETE /api/history, GET /api/messages,
GET/PATCH /api/vote.

Each chat has a Durable Object, `ChatStream` (binding CHAT_STREAMS), that runs its
responses, stores every chunk durably, serves any number of readers and owns the
stop flag (see `durable_object`). Chats, messages, votes and stream records are in D1
(0002_chats.sql); message parts too large for a D1 row are kept in R2 (`large`).
"""

from .durable_object import ChatStream
from .routes import router

__all__ = ["ChatStream", "router"]
