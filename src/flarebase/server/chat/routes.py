"""The chat API, in the AI SDK's UI message stream protocol and vercel/chatbot's routes.

Access: the owner reads and writes a chat. Anyone, signed in or not, reads a public
chat (its messages, votes and stream) but never writes it (403). Anyone else gets
404 for every route, exactly as for a chat that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from ...platform.errors import ConfigError
from ..auth import CurrentUser, OptionalUser, User
from ..deps import get_env, get_settings
from ..errors import ApiError, not_found
from ..models import find_model, resolve
from ..quotas import charge_message
from ..streams import EventStreamResponse, follow, sse
from . import store
from .schemas import (
    MAX_METADATA_BYTES,
    ChatOut,
    ChatRequest,
    ChatUpdate,
    Deleted,
    HistoryOut,
    MessagesOut,
    Stopped,
    UIMessageIn,
    VoteIn,
    VoteOut,
)
from .titles import title_from

router = APIRouter(tags=["chat"])
BINDING = "CHAT_STREAMS"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad request"},
    401: {"description": "not signed in"},
    403: {"description": "a public chat of another user (read-only)"},
    404: {"description": "no such chat (or not yours)"},
}
_SSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a UI message stream (server-sent events; `id:` is the position)",
        "content": {"text/event-stream": {}},
    }
}


# -- access -------------------------------------------------------------------------------
def _readable(chat: dict[str, Any] | None, user: User | None) -> dict[str, Any]:
    if chat is None:
        raise not_found("chat")
    if chat["visibility"] == "public" or (user is not None and chat["user_id"] == user.id):
        return chat
    raise not_found("chat")


def _writable(chat: dict[str, Any] | None, user: User) -> dict[str, Any]:
    chat = _readable(chat, user)
    if chat["user_id"] != user.id:
        raise ApiError(403, "forbidden", "this chat is read-only for you")
    return chat


def _streams(env: Any, chat_id: str) -> Any:
    """The stub of the chat's Durable Object."""
    if BINDING not in env:
        raise ConfigError(
            f"no Durable Object binding {BINDING} (class ChatStream) in wrangler.toml; add "
            f'[[durable_objects.bindings]] name = "{BINDING}", class_name = "ChatStream" and '
            'a [[migrations]] entry with new_sqlite_classes = ["ChatStream"]'
        )
    namespace = env[BINDING]
    return namespace.get(namespace.id_from_name(chat_id))


# -- sending --------------------------------------------------------------------------------
@router.post(
    "/api/chat",
    response_class=EventStreamResponse,
    responses={**_SSE, **_ERRORS, 409: {"description": "the message id belongs to another chat"}},
)
async def post_chat(body: ChatRequest, user: CurrentUser, request: Request) -> Response:
    """Send a message (or regenerate the last answer); the answer streams back.

    The chat is created by its first message, titled from its text. Only the last
    message of `messages` is read: the server owns the history. A message id already
    in the chat is an edit (later messages are dropped). `regenerate-message` drops
    `messageId` (the answer to redo) and everything after it. Generation continues if
    the client goes away; resume with GET /api/chat/{id}/stream.
    """
    env, settings = get_env(request), get_settings(request)
    db, bucket = env.DB, env.BUCKET
    incoming = body.last_message()
    if incoming is None:
        raise ApiError(400, "bad_request", "send at least one message")
    if incoming.metadata is not None and len(json.dumps(incoming.metadata)) > MAX_METADATA_BYTES:
        raise ApiError(400, "bad_request", f"message metadata over {MAX_METADATA_BYTES} bytes")
    if incoming.role != "user" and body.trigger == "submit-message":
        raise ApiError(400, "bad_request", "the last message must be a user message")

    chat = await store.get_chat(db, body.id)
    if chat is not None:
        _writable(chat, user)
    model = find_model(settings, body.selectedChatModel or body.model or (chat or {}).get("model"))
    if model is None:
        raise ApiError(
            400,
            "unknown_model",
            f"no model {body.selectedChatModel or body.model!r}; see /api/models",
        )
    try:
        resolved = resolve(
            model,
            getattr(env, "vars", {}),
            echo_delay_ms=settings.chat_echo_delay_ms,
            timeout=settings.chat_upstream_timeout,
        )
    except ValueError as e:
        raise ApiError(503, "model_unavailable", str(e)) from None
    existing = await store.get_message(db, incoming.id)
    if existing is not None and existing["chat_id"] != body.id:
        raise ApiError(409, "conflict", "this message id belongs to another chat")
    await charge_message(request, user)  # 429 past the user's message quota

    stub = _streams(env, body.id)
    if chat is None:
        if incoming.role != "user":
            raise not_found("chat")
        visibility = body.selectedVisibilityType or body.visibility or "private"
        created = await store.create_chat(
            db, body.id, user.id, title_from(incoming.stored()), visibility, model.id
        )
        if not created:  # the id was taken meanwhile
            _writable(await store.get_chat(db, body.id), user)
    else:
        if chat["status"] == "streaming":  # finish (and save) the previous answer first
            await stub.stop()
        if chat["model"] != model.id:
            await store.update_chat(db, body.id, model=model.id)

    if body.trigger == "regenerate-message":
        await _prepare_regenerate(db, bucket, body.id, body.messageId, incoming)
    else:
        await _save_incoming(db, bucket, body.id, incoming, existing)

    rows = await store.list_messages(db, bucket, body.id)
    if not rows or rows[-1]["role"] != "user":
        raise ApiError(400, "bad_request", "there is no user message to answer")
    stream_id, message_id = uuid.uuid4().hex, uuid.uuid4().hex
    created_at = store.now_iso()
    await store.start_stream(db, stream_id, body.id, message_id)
    job = {
        "streamId": stream_id,
        "chatId": body.id,
        "messageId": message_id,
        "createdAt": created_at,
        "model": resolved,
        "system": settings.chat_system_prompt,
        "history": [store.model_message(row) for row in rows],
        "maxSteps": settings.chat_max_steps,
        "ttlMs": int(settings.chat_stream_ttl * 1000),
        "abandonedTtlMs": int(settings.chat_stream_abandoned_ttl * 1000),
    }
    try:
        await stub.start(job)
    except Exception:
        await store.finish_stream(db, stream_id, body.id, "error", "the response did not start")
        raise
    return EventStreamResponse(follow(stub, stream_id))


async def _save_incoming(
    db: Any, bucket: Any, chat_id: str, incoming: UIMessageIn, existing: dict[str, Any] | None
) -> None:
    """Save the user's message; `existing`: the stored message with its id (in this
    chat), if any."""
    if existing is not None:  # an edit: the message changes and what followed it goes
        if existing["role"] != "user":
            raise ApiError(409, "conflict", "this message id is not a user message")
        await store.delete_messages_after(db, bucket, chat_id, existing)
    await store.save_message(db, bucket, chat_id, incoming.stored())


async def _prepare_regenerate(
    db: Any, bucket: Any, chat_id: str, message_id: str | None, incoming: UIMessageIn
) -> None:
    if message_id:
        target = await store.get_message(db, message_id)
        if target is not None and target["chat_id"] == chat_id:
            if target["role"] == "user":  # regenerate the answer to this message
                await store.delete_messages_after(db, bucket, chat_id, target)
            else:
                await store.delete_messages_from(db, bucket, chat_id, target)
    if incoming.role == "user":
        existing = await store.get_message(db, incoming.id)
        if existing is None:
            await store.save_message(db, bucket, chat_id, incoming.stored())
        elif existing["chat_id"] != chat_id:
            raise ApiError(409, "conflict", "this message id belongs to another chat")
        else:
            await store.delete_messages_after(db, bucket, chat_id, existing)
    else:  # no user message given: redo the answer to the last one
        rows = await store.list_messages(db, bucket, chat_id)
        users = [row for row in rows if row["role"] == "user"]
        if users:
            await store.delete_messages_after(db, bucket, chat_id, users[-1])


# -- streams --------------------------------------------------------------------------------
@router.get(
    "/api/chat/{chat_id}/stream",
    response_class=EventStreamResponse,
    responses={**_SSE, 204: {"description": "no active or recently finished stream"}, **_ERRORS},
)
async def resume_stream(
    chat_id: str,
    request: Request,
    user: OptionalUser,
    position: Annotated[
        int | None,
        Query(ge=0, le=10**15, description="only chunks after this position (an event id)"),
    ] = None,
) -> Response:
    """Replay the chat's latest stream from its first chunk and follow it live; or, with
    `position` or a `Last-Event-ID` header, only the chunks after that position."""
    env = get_env(request)
    _readable(await store.get_chat(env.DB, chat_id), user)
    after = position
    if after is None:
        try:
            after = sse.parse_position(request.headers.get("last-event-id"))
        except ValueError as e:
            raise ApiError(400, "bad_request", f"Last-Event-ID: {e}") from None
    stub = _streams(env, chat_id)
    first = await stub.read_events(None, after or 0, 0.0)
    if first is None:
        return Response(status_code=204)
    return EventStreamResponse(follow(stub, first[0], after or 0, first))


@router.post("/api/chat/{chat_id}/stop", response_model=Stopped, responses=_ERRORS)
async def stop_chat(chat_id: str, request: Request, user: CurrentUser) -> dict[str, Any]:
    """Stop the chat's running answer, from any server instance (the chat's Durable
    Object holds the flag). The answer ends with an `abort` chunk; what was generated is
    saved before this returns."""
    env = get_env(request)
    _writable(await store.get_chat(env.DB, chat_id), user)
    return {"stopped": await _streams(env, chat_id).stop()}


# -- chats ----------------------------------------------------------------------------------
@router.get("/api/chat/{chat_id}", response_model=ChatOut, responses=_ERRORS)
async def get_chat(chat_id: str, request: Request, user: OptionalUser) -> dict[str, Any]:
    """A chat's title, visibility, model and status."""
    return store.chat_out(_readable(await store.get_chat(get_env(request).DB, chat_id), user))


@router.patch("/api/chat/{chat_id}", response_model=ChatOut, responses=_ERRORS)
async def update_chat(
    chat_id: str, body: ChatUpdate, request: Request, user: CurrentUser
) -> dict[str, Any]:
    """Rename a chat or change its visibility (public chats are readable by anyone)."""
    db = get_env(request).DB
    _writable(await store.get_chat(db, chat_id), user)
    await store.update_chat(db, chat_id, **body.model_dump(exclude_none=True))
    chat = await store.get_chat(db, chat_id)
    assert chat is not None
    return store.chat_out(chat)


@router.delete("/api/chat", response_model=ChatOut, responses=_ERRORS)
async def delete_chat(
    request: Request, user: CurrentUser, id: Annotated[str, Query(min_length=1)]
) -> dict[str, Any]:
    """Delete a chat: its messages, votes, stream buffers and R2 objects. Answers the
    deleted chat."""
    env = get_env(request)
    chat = _writable(await store.get_chat(env.DB, id), user)
    await _streams(env, id).clear()
    await store.delete_chat(env.DB, env.BUCKET, id)
    return store.chat_out(chat)


@router.get("/api/history", response_model=HistoryOut, responses=_ERRORS)
async def history(
    request: Request,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[str | None, Query(description="chats newer than this one")] = None,
    ending_before: Annotated[str | None, Query(description="chats older than this one")] = None,
) -> Response:
    """Your chats, newest first, a page at a time (vercel/chatbot's cursors)."""
    if starting_after and ending_before:
        raise ApiError(
            400, "bad_request", "Only one of starting_after or ending_before can be provided."
        )
    db = get_env(request).DB
    cursor_id = starting_after or ending_before
    cursor = None
    if cursor_id:
        cursor = await store.get_chat(db, cursor_id)
        if cursor is None or cursor["user_id"] != user.id:
            raise not_found(f"chat {cursor_id}")
    chats, more = await store.list_chats(
        db,
        user.id,
        limit,
        starting_after=cursor if starting_after else None,
        ending_before=cursor if ending_before else None,
    )
    # (a Response skips re-validating what the queries built; the model documents it)
    return JSONResponse({"chats": [store.chat_out(c) for c in chats], "hasMore": more})


@router.delete("/api/history", response_model=Deleted, responses=_ERRORS)
async def delete_history(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Delete all your chats."""
    env, settings = get_env(request), get_settings(request)
    kept = max(settings.chat_stream_ttl, settings.chat_stream_abandoned_ttl) + 3600
    buffered = await store.chats_with_buffers(env.DB, user.id, kept)
    for i in range(0, len(buffered), 20):  # stop and forget their streams, 20 at a time
        await asyncio.gather(*(_streams(env, chat_id).clear() for chat_id in buffered[i : i + 20]))
    return {"deletedCount": await store.delete_user_chats(env.DB, env.BUCKET, user.id)}


# -- messages and votes -------------------------------------------------------------------------
@router.get("/api/messages", response_model=MessagesOut, responses=_ERRORS)
async def messages(
    request: Request, user: OptionalUser, chatId: Annotated[str, Query(min_length=1)]
) -> Response:
    """A chat's messages as AI SDK UIMessages (large parts read back from R2)."""
    env = get_env(request)
    chat = _readable(await store.get_chat(env.DB, chatId), user)
    rows = await store.list_messages(env.DB, env.BUCKET, chatId)
    return JSONResponse(
        {
            "chat": store.chat_out(chat),
            "messages": [store.ui_message(row) for row in rows],
            "isReadonly": user is None or chat["user_id"] != user.id,
        }
    )


@router.get("/api/vote", response_model=list[VoteOut], responses=_ERRORS)
async def votes(
    request: Request, user: OptionalUser, chatId: Annotated[str, Query(min_length=1)]
) -> list[dict[str, Any]]:
    """The votes on a chat's messages."""
    db = get_env(request).DB
    _readable(await store.get_chat(db, chatId), user)
    return await store.list_votes(db, chatId)


@router.patch("/api/vote", response_model=VoteOut, responses=_ERRORS)
async def vote(body: VoteIn, request: Request, user: CurrentUser) -> dict[str, Any]:
    """Vote a message of your chat up or down (a second vote replaces the first)."""
    db = get_env(request).DB
    _writable(await store.get_chat(db, body.chatId), user)
    message = await store.get_message(db, body.messageId)
    if message is None or message["chat_id"] != body.chatId:
        raise not_found("message")
    await store.vote(db, body.chatId, body.messageId, body.type == "up")
    return {"chatId": body.chatId, "messageId": body.messageId, "isUpvoted": body.type == "up"}
