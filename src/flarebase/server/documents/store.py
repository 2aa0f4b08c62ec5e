"""Documents and suggestions in D1 (0005_documents.sql): the queries, nothing else.

Every function takes the user on whose behalf it acts and touches only that user's
rows: another user's document is indistinguishable from a missing one. Rows are
snake_case; `Document` and `Suggestion` have vercel/chatbot's camelCase JSON names.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ...platform.errors import D1Error

Kind = Literal["text", "code", "image", "sheet"]
KINDS: tuple[Kind, ...] = ("text", "code", "image", "sheet")
# D1 stores at most 2,000,000 bytes in a row; title and content share what is left.
MAX_DOCUMENT_BYTES = 1_900_000
_DOC = 'id, created_at AS "createdAt", title, content, kind, user_id AS "userId"'
_SUGGESTION = (
    'id, document_id AS "documentId", document_created_at AS "documentCreatedAt", '
    'original_text AS "originalText", suggested_text AS "suggestedText", description, '
    'is_resolved AS "isResolved", user_id AS "userId", created_at AS "createdAt"'
)
_SUGGESTION_COLUMNS = (
    "id, document_id, document_created_at, original_text, suggested_text, description, "
    "is_resolved, user_id, created_at"
)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z` (JavaScript's `toISOString()`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse(stamp: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Document:
    """One version of a document, in vercel/chatbot's JSON shape."""

    id: str
    createdAt: str
    title: str
    content: str | None
    kind: str
    userId: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A suggested edit to one version of a document (vercel/chatbot's shape)."""

    documentId: str
    documentCreatedAt: str
    originalText: str
    suggestedText: str
    userId: str
    description: str | None = None
    isResolved: bool = False
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    createdAt: str = field(default_factory=lambda: iso(datetime.now(UTC)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Suggestion:
        return cls(**{**row, "isResolved": bool(row["isResolved"])})


async def versions(db: Any, document_id: str, user_id: str) -> list[Document]:
    """The user's versions of the document, oldest first (empty: none, or not theirs)."""
    rows = (
        await db.prepare(
            f"SELECT {_DOC} FROM documents WHERE id = ? AND user_id = ? ORDER BY created_at"
        )
        .bind(document_id, user_id)
        .all()
    ).results
    return [Document(**row) for row in rows]


_INSERT_VERSION = (
    "INSERT INTO documents (id, created_at, title, content, kind, user_id) "
    "SELECT ?, ?, ?, ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM documents WHERE id = ? AND user_id != ?)"
)


async def save_version(
    db: Any, document_id: str, user_id: str, *, title: str, kind: str, content: str | None
) -> Document | None:
    """Add a version (a new document when the id is new). None when the id is another
    user's document: checked in the same statement that inserts, so two users can never
    share an id. A version is stamped now, or 1 ms after the latest one if the clock
    says otherwise, so versions stay ordered and distinct."""
    for _attempt in range(5):
        latest = (
            await db.prepare("SELECT max(created_at) AS at FROM documents WHERE id = ?")
            .bind(document_id)
            .first()
        )
        moment = datetime.now(UTC)
        previous = _parse(latest["at"]) if latest and latest["at"] else None
        if previous is not None and previous >= moment:
            moment = previous + timedelta(milliseconds=1)
        version = Document(document_id, iso(moment), title, content, kind, user_id)
        try:
            result = await (
                db.prepare(_INSERT_VERSION)
                .bind(*asdict(version).values(), document_id, user_id)
                .run()
            )
        except D1Error as e:
            if "UNIQUE constraint failed" in str(e):
                continue  # another version got this millisecond: stamp again
            raise
        return version if result.meta.changes else None
    raise D1Error("could not stamp a new document version (too many concurrent saves)")


async def delete_versions_after(
    db: Any, document_id: str, user_id: str, after: str | None
) -> list[Document] | None:
    """Delete the user's versions created after `after` (all of them when None) and
    their suggestions; the deleted versions, oldest first. None when the user has no
    version of this document."""
    since = after if after is not None else ""
    owned = "EXISTS (SELECT 1 FROM documents WHERE id = ? AND user_id = ?)"
    results = await db.batch(
        [
            db.prepare(
                "DELETE FROM suggestions WHERE document_id = ? AND document_created_at > ? "
                f"AND {owned}"
            ).bind(document_id, since, document_id, user_id),
            db.prepare(
                "DELETE FROM documents WHERE id = ? AND user_id = ? AND created_at > ? "
                f"RETURNING {_DOC}"
            ).bind(document_id, user_id, since),
        ]
    )
    deleted = sorted((Document(**row) for row in results[1].results), key=lambda d: d.createdAt)
    if deleted:
        return deleted
    return [] if await versions(db, document_id, user_id) else None


async def suggestions(db: Any, document_id: str, user_id: str) -> list[Suggestion]:
    """The user's suggestions on any version of the document, oldest first."""
    rows = (
        await db.prepare(
            f"SELECT {_SUGGESTION} FROM suggestions WHERE document_id = ? AND user_id = ? "
            "ORDER BY created_at, id"
        )
        .bind(document_id, user_id)
        .all()
    ).results
    return [Suggestion.from_row(row) for row in rows]


async def save_suggestions(db: Any, items: Sequence[Suggestion]) -> None:
    """Store suggestions (e.g. from a chat tool), all or none. PermissionError, before
    anything is written, when one is on a version that does not exist or that its
    `userId` does not own."""
    if not items:
        return
    targets = sorted({(s.documentId, s.documentCreatedAt, s.userId) for s in items})
    checks = await db.batch(
        [
            db.prepare(
                "SELECT 1 AS ok FROM documents WHERE id = ? AND created_at = ? AND user_id = ?"
            ).bind(*target)
            for target in targets
        ]
    )
    missing = [t for t, r in zip(targets, checks, strict=True) if not r.results]
    if missing:
        raise PermissionError(f"no such document version of that user: {missing}")
    insert = f"INSERT INTO suggestions ({_SUGGESTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    await db.batch(
        [
            db.prepare(insert).bind(
                s.id,
                s.documentId,
                s.documentCreatedAt,
                s.originalText,
                s.suggestedText,
                s.description,
                1 if s.isResolved else 0,
                s.userId,
                s.createdAt,
            )
            for s in items
        ]
    )
