"""Uploaded files' metadata in D1 (the `files` table of 0003_files.sql): queries only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

_COLUMNS = "id, user_id, key, content_type, size, name, etag, created_at"


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    user_id: str
    key: str  # the R2 object: users/<user id>/uploads/<id>.<ext>
    content_type: str  # sniffed from the content
    size: int
    name: str  # the client's file name, sanitized (display only)
    etag: str  # R2's etag (unquoted MD5 hex)
    created_at: str  # ISO 8601, UTC, milliseconds

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FileRow:
        return cls(**{name: row[name] for name in cls.__slots__})

    @property
    def http_etag(self) -> str:
        return f'"{self.etag}"'

    @property
    def last_modified(self) -> str:
        stamp = datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        return format_datetime(stamp.astimezone(UTC), usegmt=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def object_key(user_id: str, file_id: str, extension: str) -> str:
    return f"users/{user_id}/uploads/{file_id}.{extension}"


async def insert(db: Any, row: FileRow) -> None:
    marks = ", ".join("?" for _ in FileRow.__slots__)
    await (
        db.prepare(f"INSERT INTO files ({_COLUMNS}) VALUES ({marks})")
        .bind(*(getattr(row, name) for name in FileRow.__slots__))
        .run()
    )


async def get(db: Any, file_id: str) -> FileRow | None:
    """Any user's file (for signed links, whose signature is the permission)."""
    row = await db.prepare(f"SELECT {_COLUMNS} FROM files WHERE id = ?").bind(file_id).first()
    return FileRow.from_row(row) if row else None


async def get_owned(db: Any, file_id: str, user_id: str) -> FileRow | None:
    """The file if `user_id` owns it; None whether it is missing or someone else's."""
    row = (
        await db.prepare(f"SELECT {_COLUMNS} FROM files WHERE id = ? AND user_id = ?")
        .bind(file_id, user_id)
        .first()
    )
    return FileRow.from_row(row) if row else None


async def delete_owned(db: Any, file_id: str, user_id: str) -> bool:
    result = (
        await db.prepare("DELETE FROM files WHERE id = ? AND user_id = ?")
        .bind(file_id, user_id)
        .run()
    )
    return bool(result.meta.changes)
