"""Message parts too large for a D1 row go to R2, and come back transparently.

D1 refuses a row over 2,000,000 bytes. When a message's parts JSON would pass
`INLINE_BUDGET`, its largest parts are written to R2 (one object each, under
`chats/<chat id>/messages/<message id>/`) and replaced in the row by stubs
`{"type": <the part's type>, "flarebase_r2": {"key": ..., "bytes": ...}}`, until the
row fits. If the stubs alone would not fit (tens of thousands of parts), the whole
parts list goes to one object and the row keeps a single stub of type
`flarebase-r2-parts`. Reading replaces every stub with what it points to.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

INLINE_BUDGET = 1_800_000  # bytes of parts JSON kept in the row (the limit is 2,000,000)
STUB = "flarebase_r2"
WHOLE = "flarebase-r2-parts"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def message_prefix(chat_id: str, message_id: str) -> str:
    return f"chats/{chat_id}/messages/{message_id}/"


async def pack(
    bucket: Any, chat_id: str, message_id: str, parts: list[dict[str, Any]]
) -> tuple[str, bool]:
    """The parts JSON for the row, and whether some parts went to R2."""
    encoded = [_dumps(part) for part in parts]
    size = sum(len(e.encode()) for e in encoded) + len(encoded) + 1
    if size <= INLINE_BUDGET:
        return "[" + ",".join(encoded) + "]", False
    prefix = message_prefix(chat_id, message_id)
    version = uuid.uuid4().hex[:12]
    sizes = sorted(
        ((len(e.encode()), i) for i, e in enumerate(encoded)), key=lambda t: t[0], reverse=True
    )
    row = list(encoded)
    uploads: list[tuple[str, bytes]] = []
    for nbytes, i in sizes:
        if size <= INLINE_BUDGET:
            break
        key = f"{prefix}{version}-{i}.json"
        stub = _dumps({"type": parts[i].get("type"), STUB: {"key": key, "bytes": nbytes}})
        uploads.append((key, encoded[i].encode()))
        row[i] = stub
        size += len(stub.encode()) - nbytes
    if size > INLINE_BUDGET:  # too many parts: the whole list goes to one object
        key = f"{prefix}{version}-all.json"
        whole = ("[" + ",".join(encoded) + "]").encode()
        await bucket.put(key, whole, http_metadata={"contentType": "application/json"})
        return _dumps([{"type": WHOLE, STUB: {"key": key, "bytes": len(whole)}}]), True
    await asyncio.gather(
        *(
            bucket.put(key, body, http_metadata={"contentType": "application/json"})
            for key, body in uploads
        )
    )
    return "[" + ",".join(row) + "]", True


async def unpack(bucket: Any, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parts with every R2 stub replaced by what it points to."""
    stubs = [i for i, part in enumerate(parts) if isinstance(part, dict) and STUB in part]
    if not stubs:
        return parts

    async def load(key: str) -> Any:
        obj = await bucket.get(key)
        if obj is None:
            return None
        return json.loads(await obj.text())

    loaded = await asyncio.gather(*(load(parts[i][STUB]["key"]) for i in stubs))
    out: list[dict[str, Any]] = []
    found = dict(zip(stubs, loaded, strict=True))
    for i, part in enumerate(parts):
        if i not in found:
            out.append(part)
        elif found[i] is None:  # the object is gone: say so rather than fail the chat
            out.append({"type": "text", "text": "[this part is no longer stored]"})
        elif part.get("type") == WHOLE:
            out.extend(found[i])
        else:
            out.append(found[i])
    return out


async def delete_prefix(bucket: Any, prefix: str) -> int:
    """Delete every object under `prefix`; how many."""
    deleted = 0
    cursor = None
    while True:
        listing = await bucket.list(prefix=prefix, cursor=cursor, limit=1000)
        keys = [obj.key for obj in listing.objects]
        if keys:
            await bucket.delete(keys)
            deleted += len(keys)
        if not listing.truncated:
            return deleted
        cursor = listing.cursor
