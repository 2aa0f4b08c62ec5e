"""Memory's rows in D1 (0006_memory.sql): the queries, nothing else.

Functions that act for a user take `user_id` and touch only what that user may
touch: another user's document looks exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .chunking import Chunk

# D1 binds at most 100 values per statement: chunk rows go 12 at a time (8 columns).
_CHUNK_COLUMNS = ("document_id", "idx", "vector_id", "char_start", "char_end", "page", "heading")
_CHUNK_ROWS_PER_INSERT = 12
_STATEMENTS_PER_BATCH = 50
_DOCUMENT_COLUMNS = (
    "id, user_id, title, kind, r2_key, file_id, shared, model, status, size, chars, chunks, "
    "indexed, error, created_at, updated_at"
)


def now_iso() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def vector_id(document_id: str, index: int) -> str:
    """The Vectorize id of chunk `index` (at most 36 + 1 + 6 bytes: under the 64 limit)."""
    return f"{document_id}:{index}"


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    user_id: str
    title: str
    kind: str
    r2_key: str
    file_id: str | None
    shared: bool
    model: str
    status: str
    size: int
    chars: int
    chunks: int
    indexed: int
    error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DocumentRow:
        values = {name: row[name] for name in cls.__slots__}
        values["shared"] = bool(values["shared"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The API's camelCase shape."""
        return {
            "id": self.id,
            "userId": self.user_id,
            "title": self.title,
            "kind": self.kind,
            "status": self.status,
            "shared": self.shared,
            "fileId": self.file_id,
            "size": self.size,
            "chars": self.chars,
            "chunks": self.chunks,
            "indexed": self.indexed,
            "model": self.model,
            "error": self.error,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


async def insert_document(db: Any, row: DocumentRow) -> None:
    marks = ", ".join("?" for _ in DocumentRow.__slots__)
    values = [getattr(row, name) for name in DocumentRow.__slots__]
    values[DocumentRow.__slots__.index("shared")] = int(row.shared)
    await (
        db.prepare(f"INSERT INTO memory_documents ({_DOCUMENT_COLUMNS}) VALUES ({marks})")
        .bind(*values)
        .run()
    )


async def get_document(db: Any, document_id: str) -> DocumentRow | None:
    row = (
        await db.prepare(f"SELECT {_DOCUMENT_COLUMNS} FROM memory_documents WHERE id = ?")
        .bind(document_id)
        .first()
    )
    return DocumentRow.from_row(row) if row else None


async def get_visible(db: Any, document_id: str, user_id: str) -> DocumentRow | None:
    """The document if `user_id` owns it or it is shared (and not being deleted)."""
    row = (
        await db.prepare(
            f"SELECT {_DOCUMENT_COLUMNS} FROM memory_documents WHERE id = ? "
            "AND (user_id = ? OR shared = 1) AND status != 'deleting'"
        )
        .bind(document_id, user_id)
        .first()
    )
    return DocumentRow.from_row(row) if row else None


async def list_documents(
    db: Any, user_id: str, *, include_shared: bool, limit: int, before: str | None
) -> list[DocumentRow]:
    """Newest first; `before` is a `created_at|id` cursor from a previous page."""
    where = [
        "status != 'deleting'",
        "(user_id = ? OR shared = 1)" if include_shared else "user_id = ?",
    ]
    params: list[Any] = [user_id]
    if before:
        stamp, _, last_id = before.partition("|")
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params += [stamp, stamp, last_id]
    rows = (
        await db.prepare(
            f"SELECT {_DOCUMENT_COLUMNS} FROM memory_documents WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        .bind(*params, limit)
        .all()
    )
    return [DocumentRow.from_row(r) for r in rows.results]


async def unfinished(db: Any, limit: int = 100) -> list[DocumentRow]:
    """Documents whose ingest or delete did not finish (oldest first)."""
    rows = (
        await db.prepare(
            f"SELECT {_DOCUMENT_COLUMNS} FROM memory_documents "
            "WHERE status IN ('pending', 'indexing', 'deleting') ORDER BY updated_at LIMIT ?"
        )
        .bind(limit)
        .all()
    )
    return [DocumentRow.from_row(r) for r in rows.results]


async def save_chunks(
    db: Any, document_id: str, chunks: Sequence[Chunk], pages: list[int | None]
) -> None:
    """Every chunk row, then status 'indexing' with the count, in as few batches as D1
    allows. A crash in between leaves 'pending', and the next attempt starts over
    (`clear_chunks` first)."""
    width = len(_CHUNK_COLUMNS) + 1  # + text
    row_marks = "(" + ", ".join("?" for _ in range(width)) + ")"
    columns = ", ".join(f'"{c}"' for c in (*_CHUNK_COLUMNS, "text"))
    statements = []
    for start in range(0, len(chunks), _CHUNK_ROWS_PER_INSERT):
        group = chunks[start : start + _CHUNK_ROWS_PER_INSERT]
        values: list[Any] = []
        for chunk in group:
            values += [
                document_id,
                chunk.index,
                vector_id(document_id, chunk.index),
                chunk.start,
                chunk.end,
                pages[chunk.index],
                chunk.heading,
                chunk.text,
            ]
        sql = f"INSERT INTO memory_chunks ({columns}) VALUES {', '.join([row_marks] * len(group))}"
        statements.append(db.prepare(sql).bind(*values))
    for start in range(0, len(statements), _STATEMENTS_PER_BATCH):
        await db.batch(statements[start : start + _STATEMENTS_PER_BATCH])
    await (
        db.prepare(
            "UPDATE memory_documents SET status = 'indexing', chunks = ?, indexed = 0, "
            "error = NULL, updated_at = ? WHERE id = ? AND status = 'pending'"
        )
        .bind(len(chunks), now_iso(), document_id)
        .run()
    )


async def clear_chunks(db: Any, document_id: str) -> None:
    await db.prepare("DELETE FROM memory_chunks WHERE document_id = ?").bind(document_id).run()


async def set_chars(db: Any, document_id: str, chars: int) -> None:
    await (
        db.prepare("UPDATE memory_documents SET chars = ?, updated_at = ? WHERE id = ?")
        .bind(chars, now_iso(), document_id)
        .run()
    )


async def chunk_rows(db: Any, document_id: str, start: int, stop: int) -> list[dict[str, Any]]:
    """Chunks [start, stop) of a document, in order."""
    rows = (
        await db.prepare(
            "SELECT idx, vector_id, heading, text FROM memory_chunks "
            "WHERE document_id = ? AND idx >= ? AND idx < ? ORDER BY idx"
        )
        .bind(document_id, start, stop)
        .all()
    )
    return list(rows.results)


async def vector_ids(db: Any, document_id: str) -> list[str]:
    rows = (
        await db.prepare("SELECT vector_id FROM memory_chunks WHERE document_id = ? ORDER BY idx")
        .bind(document_id)
        .all()
    )
    return [r["vector_id"] for r in rows.results]


async def set_progress(db: Any, document_id: str, indexed: int, *, done: bool) -> None:
    """Record that chunks [0, indexed) have vectors; `done` marks the document ready."""
    status = "ready" if done else "indexing"
    await (
        db.prepare(
            "UPDATE memory_documents SET indexed = MAX(indexed, ?), status = ?, error = NULL, "
            "updated_at = ? WHERE id = ? AND status = 'indexing'"
        )
        .bind(indexed, status, now_iso(), document_id)
        .run()
    )


async def set_error(db: Any, document_id: str, message: str) -> None:
    await (
        db.prepare("UPDATE memory_documents SET error = ?, updated_at = ? WHERE id = ?")
        .bind(message[:1000], now_iso(), document_id)
        .run()
    )


async def mark_deleting(db: Any, document_id: str) -> None:
    await (
        db.prepare("UPDATE memory_documents SET status = 'deleting', updated_at = ? WHERE id = ?")
        .bind(now_iso(), document_id)
        .run()
    )


async def delete_document(db: Any, document_id: str) -> None:
    """The row and its chunk rows (ON DELETE CASCADE), once its vectors are gone."""
    await db.prepare("DELETE FROM memory_documents WHERE id = ?").bind(document_id).run()


async def search_rows(db: Any, ids: Sequence[str], user_id: str) -> dict[str, dict[str, Any]]:
    """Chunk and document fields of the vectors `ids`, for documents `user_id` may see
    that are ready; keyed by vector id. At most 90 ids (D1's 100 bound values)."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = (
        await db.prepare(
            "SELECT c.vector_id, c.idx, c.char_start, c.char_end, c.page, c.heading, c.text, "
            "d.id AS document_id, d.title, d.kind, d.shared, d.file_id, d.user_id "
            "FROM memory_chunks c JOIN memory_documents d ON d.id = c.document_id "
            f"WHERE c.vector_id IN ({marks}) AND d.status = 'ready' "
            "AND (d.user_id = ? OR d.shared = 1)"
        )
        .bind(*ids, user_id)
        .all()
    )
    return {r["vector_id"]: r for r in rows.results}


# -- which model an index holds


async def index_model(db: Any, binding: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await db.prepare("SELECT model, dimensions FROM memory_indexes WHERE binding = ?")
        .bind(binding)
        .first()
    )
    return row


async def set_index_model(db: Any, binding: str, model: str, dimensions: int) -> None:
    await (
        db.prepare(
            "INSERT INTO memory_indexes (binding, model, dimensions, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (binding) DO UPDATE SET model = excluded.model, "
            "dimensions = excluded.dimensions, updated_at = excluded.updated_at"
        )
        .bind(binding, model, dimensions, now_iso())
        .run()
    )


async def documents_of_model(db: Any, model: str) -> int:
    count = await (
        db.prepare("SELECT COUNT(*) AS n FROM memory_documents WHERE model = ?")
        .bind(model)
        .first("n")
    )
    return int(count or 0)
