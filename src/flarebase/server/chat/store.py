"""Chats, messages, votes and stream records in D1 (0002_chats.sql): the queries.

Rows use snake_case; what the API returns uses vercel/chatbot's camelCase names.
Large message parts go through `large` (R2).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from . import large

_CHAT_COLUMNS = "id, user_id, title, visibility, model, status, created_at, updated_at"
_MESSAGE_COLUMNS = "id, chat_id, role, parts, attachments, metadata, parts_in_r2, created_at"
_clock = threading.Lock()
_last_ms = 0


def now_iso() -> str:
    """The current time as ISO-8601 UTC with milliseconds, strictly increasing within
    this process (so that messages saved one after the other keep their order)."""
    global _last_ms
    with _clock:
        ms = max(int(time.time() * 1000), _last_ms + 1)
        _last_ms = ms
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def chat_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "title": row["title"],
        "userId": row["user_id"],
        "visibility": row["visibility"],
        "model": row["model"],
        "status": row["status"],
    }


# -- chats -------------------------------------------------------------------------------
async def get_chat(db: Any, chat_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await db.prepare(f"SELECT {_CHAT_COLUMNS} FROM chats WHERE id = ?").bind(chat_id).first()
    )
    return row


async def create_chat(
    db: Any, chat_id: str, user_id: str, title: str, visibility: str, model: str | None
) -> bool:
    """Create the chat; False if the id is already taken."""
    now = now_iso()
    result = (
        await db.prepare(
            "INSERT INTO chats (id, user_id, title, visibility, model, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )
        .bind(chat_id, user_id, title, visibility, model, now, now)
        .run()
    )
    return bool(result.meta.changes)


async def update_chat(db: Any, chat_id: str, **fields: Any) -> None:
    """Set `title`, `visibility`, `model` and/or `status`."""
    allowed = {"title", "visibility", "model", "status"}
    names = [name for name in fields if name in allowed]
    if not names:
        return
    assignments = ", ".join(f"{name} = ?" for name in names)
    await (
        db.prepare(f"UPDATE chats SET {assignments}, updated_at = ? WHERE id = ?")
        .bind(*(fields[name] for name in names), now_iso(), chat_id)
        .run()
    )


async def list_chats(
    db: Any,
    user_id: str,
    limit: int,
    starting_after: dict[str, Any] | None = None,
    ending_before: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A user's chats, newest first (vercel/chatbot's cursors): `starting_after` gives
    chats newer than that chat, `ending_before` older ones. (chats, has_more)."""
    where, params = "user_id = ?", [user_id]
    if starting_after is not None:
        where += " AND (created_at, id) > (?, ?)"
        params += [starting_after["created_at"], starting_after["id"]]
    elif ending_before is not None:
        where += " AND (created_at, id) < (?, ?)"
        params += [ending_before["created_at"], ending_before["id"]]
    rows = (
        await db.prepare(
            f"SELECT {_CHAT_COLUMNS} FROM chats WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        .bind(*params, limit + 1)
        .all()
    ).results
    return rows[:limit], len(rows) > limit


async def chats_with_r2(db: Any, chat_ids: list[str]) -> list[str]:
    """Which of these chats have message parts in R2."""
    out: list[str] = []
    for i in range(0, len(chat_ids), 90):  # D1 binds at most 100 parameters
        batch = chat_ids[i : i + 90]
        marks = ", ".join("?" for _ in batch)
        rows = (
            await db.prepare(
                f"SELECT DISTINCT chat_id FROM messages WHERE parts_in_r2 = 1 "
                f"AND chat_id IN ({marks})"
            )
            .bind(*batch)
            .all()
        ).results
        out += [row["chat_id"] for row in rows]
    return out


async def chats_with_buffers(db: Any, user_id: str, kept_seconds: float) -> list[str]:
    """The user's chats whose stream buffers may still exist: a stream still running,
    or one that finished less than `kept_seconds` ago."""
    cutoff_ms = int(time.time() * 1000 - kept_seconds * 1000)
    cutoff = datetime.fromtimestamp(max(0, cutoff_ms) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rows = (
        await db.prepare(
            "SELECT DISTINCT s.chat_id FROM streams s JOIN chats c ON c.id = s.chat_id "
            "WHERE c.user_id = ? AND (s.finished_at IS NULL OR s.finished_at >= ?)"
        )
        .bind(user_id, cutoff)
        .all()
    ).results
    return [row["chat_id"] for row in rows]


async def delete_chat(db: Any, bucket: Any, chat_id: str) -> None:
    """Delete the chat (its messages, votes and stream records follow) and its R2 objects."""
    await db.prepare("DELETE FROM chats WHERE id = ?").bind(chat_id).run()
    await large.delete_prefix(bucket, f"chats/{chat_id}/")


async def user_chat_ids(db: Any, user_id: str) -> list[str]:
    rows = await db.prepare("SELECT id FROM chats WHERE user_id = ?").bind(user_id).raw()
    return [row[0] for row in rows]


async def delete_user_chats(db: Any, bucket: Any, user_id: str) -> int:
    ids = await user_chat_ids(db, user_id)
    with_r2 = await chats_with_r2(db, ids)
    await db.prepare("DELETE FROM chats WHERE user_id = ?").bind(user_id).run()
    for chat_id in with_r2:
        await large.delete_prefix(bucket, f"chats/{chat_id}/")
    return len(ids)  # (meta.changes would count the cascaded rows too)


# -- messages -----------------------------------------------------------------------------
async def get_message(db: Any, message_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await db.prepare(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?")
        .bind(message_id)
        .first()
    )
    return row


async def save_message(
    db: Any,
    bucket: Any,
    chat_id: str,
    message: dict[str, Any],
    created_at: str | None = None,
) -> None:
    """Insert the message, or replace the parts and metadata of the one with its id
    (in this chat). Large parts go to R2; replaced R2 parts are deleted."""
    message_id = str(message["id"])
    parts_json, in_r2 = await large.pack(bucket, chat_id, message_id, list(message["parts"]))
    metadata = message.get("metadata")
    metadata_json = None if metadata is None else json.dumps(metadata, ensure_ascii=False)
    attachments = json.dumps(message.get("attachments") or [])
    inserted = await (
        db.prepare(
            "INSERT INTO messages (id, chat_id, role, parts, attachments, metadata, "
            "parts_in_r2, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )
        .bind(
            message_id,
            chat_id,
            message["role"],
            parts_json,
            attachments,
            metadata_json,
            int(in_r2),
            created_at or now_iso(),
        )
        .run()
    )
    if inserted.meta.changes:  # (the usual case: a new message, one statement)
        return
    existing = await get_message(db, message_id)
    if existing is None or existing["chat_id"] != chat_id:
        return
    await (
        db.prepare(
            "UPDATE messages SET parts = ?, metadata = ?, parts_in_r2 = ? "
            "WHERE id = ? AND chat_id = ?"
        )
        .bind(parts_json, metadata_json, int(in_r2), message_id, chat_id)
        .run()
    )
    if existing["parts_in_r2"]:
        await _delete_stale_parts(bucket, chat_id, message_id, parts_json)


async def _delete_stale_parts(bucket: Any, chat_id: str, message_id: str, parts_json: str) -> None:
    keep = {
        part[large.STUB]["key"]
        for part in json.loads(parts_json)
        if isinstance(part, dict) and large.STUB in part
    }
    prefix = large.message_prefix(chat_id, message_id)
    listing = await bucket.list(prefix=prefix)
    stale = [obj.key for obj in listing.objects if obj.key not in keep]
    if stale:
        await bucket.delete(stale)


async def delete_messages_from(db: Any, bucket: Any, chat_id: str, message: dict[str, Any]) -> int:
    """Delete `message` and every later message of the chat (an edit or a regenerate)."""
    rows = (
        await db.prepare(
            "SELECT id, parts_in_r2 FROM messages WHERE chat_id = ? AND (created_at, id) >= (?, ?)"
        )
        .bind(chat_id, message["created_at"], message["id"])
        .all()
    ).results
    if not rows:
        return 0
    await (
        db.prepare("DELETE FROM messages WHERE chat_id = ? AND (created_at, id) >= (?, ?)")
        .bind(chat_id, message["created_at"], message["id"])
        .run()
    )
    for row in rows:
        if row["parts_in_r2"]:
            await large.delete_prefix(bucket, large.message_prefix(chat_id, row["id"]))
    return len(rows)


async def delete_messages_after(db: Any, bucket: Any, chat_id: str, message: dict[str, Any]) -> int:
    """Delete every message of the chat later than `message` (kept)."""
    later = (
        await db.prepare(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? "
            "AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT 1"
        )
        .bind(chat_id, message["created_at"], message["id"])
        .first()
    )
    return 0 if later is None else await delete_messages_from(db, bucket, chat_id, later)


async def list_messages(db: Any, bucket: Any, chat_id: str) -> list[dict[str, Any]]:
    """The chat's messages in order, as rows whose `parts` are resolved (R2 included)."""
    rows = (
        await db.prepare(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? ORDER BY created_at, id"
        )
        .bind(chat_id)
        .all()
    ).results
    for row in rows:
        parts = json.loads(row["parts"])
        row["parts"] = await large.unpack(bucket, parts) if row["parts_in_r2"] else parts
        row["metadata"] = None if row["metadata"] is None else json.loads(row["metadata"])
    return rows


def ui_message(row: dict[str, Any]) -> dict[str, Any]:
    """A message row (from list_messages) as the AI SDK's UIMessage; metadata gets
    `createdAt`, as vercel/chatbot's messages have."""
    metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
    return {
        "id": row["id"],
        "role": row["role"],
        "parts": row["parts"],
        "metadata": {**metadata, "createdAt": row["created_at"]},
    }


def model_message(row: dict[str, Any]) -> dict[str, Any]:
    """A message row as the model sees it (no server metadata)."""
    return {"id": row["id"], "role": row["role"], "parts": row["parts"]}


# -- votes ---------------------------------------------------------------------------------
async def list_votes(db: Any, chat_id: str) -> list[dict[str, Any]]:
    rows = (
        await db.prepare(
            "SELECT chat_id, message_id, is_upvoted FROM votes WHERE chat_id = ? "
            "ORDER BY message_id"
        )
        .bind(chat_id)
        .all()
    ).results
    return [
        {"chatId": r["chat_id"], "messageId": r["message_id"], "isUpvoted": bool(r["is_upvoted"])}
        for r in rows
    ]


async def vote(db: Any, chat_id: str, message_id: str, up: bool) -> None:
    await (
        db.prepare(
            "INSERT INTO votes (chat_id, message_id, is_upvoted) VALUES (?, ?, ?) "
            "ON CONFLICT (chat_id, message_id) DO UPDATE SET is_upvoted = excluded.is_upvoted"
        )
        .bind(chat_id, message_id, int(up))
        .run()
    )


# -- stream records ---------------------------------------------------------------------------
async def start_stream(db: Any, stream_id: str, chat_id: str, message_id: str) -> None:
    now = now_iso()
    await db.batch(
        [
            db.prepare(
                "INSERT INTO streams (id, chat_id, message_id, status, created_at) "
                "VALUES (?, ?, ?, 'streaming', ?)"
            ).bind(stream_id, chat_id, message_id, now),
            db.prepare("UPDATE chats SET status = 'streaming', updated_at = ? WHERE id = ?").bind(
                now, chat_id
            ),
        ]
    )


CHAT_STATUS = {
    "completed": "ready",
    "stopped": "stopped",
    "error": "error",
    "interrupted": "interrupted",
}


async def finish_stream(
    db: Any, stream_id: str, chat_id: str, status: str, error: str | None
) -> None:
    """Record how a stream ended, on the stream and (if it is the chat's latest) the chat."""
    now = now_iso()
    await db.batch(
        [
            db.prepare(
                "UPDATE streams SET status = ?, error = ?, finished_at = ? WHERE id = ?"
            ).bind(status, error, now, stream_id),
            db.prepare(
                "UPDATE chats SET status = ?, updated_at = ? WHERE id = ? AND ? = "
                "(SELECT id FROM streams WHERE chat_id = ? ORDER BY created_at DESC LIMIT 1)"
            ).bind(CHAT_STATUS[status], now, chat_id, stream_id, chat_id),
        ]
    )
