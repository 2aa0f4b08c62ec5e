"""Users in D1 (the `users` table of 0001_accounts.sql): the queries, nothing else."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from ...platform.errors import D1Error

UserType = Literal["regular", "guest"]
_COLUMNS = "id, name, email, image, role, type"


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user, as handlers receive it from `current_user`."""

    id: str
    email: str | None
    name: str | None
    image: str | None
    role: str
    type: UserType

    @property
    def is_guest(self) -> bool:
        return self.type == "guest"

    def has_role(self, *roles: str) -> bool:
        return self.role in roles

    def public(self) -> dict[str, Any]:
        """The `session.user` shape: Auth.js's name, email, image plus id, role, type."""
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "image": self.image,
            "role": self.role,
            "type": self.type,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> User:
        return cls(
            id=str(row["id"]),
            email=row.get("email"),
            name=row.get("name"),
            image=row.get("image"),
            role=row.get("role") or "user",
            type="guest" if row.get("type") == "guest" else "regular",
        )


class EmailTaken(Exception):
    """Another user has this email."""


def _is_unique_violation(e: D1Error) -> bool:
    return "UNIQUE constraint failed" in str(e)


async def by_id(db: Any, user_id: str) -> User | None:
    row = await db.prepare(f"SELECT {_COLUMNS} FROM users WHERE id = ?").bind(user_id).first()
    return User.from_row(row) if row else None


async def credentials(db: Any, email: str) -> tuple[User, str | None] | None:
    """The user with this email and their password hash."""
    row = (
        await db.prepare(f"SELECT {_COLUMNS}, password_hash FROM users WHERE email = ?")
        .bind(email)
        .first()
    )
    return (User.from_row(row), row.get("password_hash")) if row else None


async def email_exists(db: Any, email: str) -> bool:
    return bool(await db.prepare("SELECT 1 AS one FROM users WHERE email = ?").bind(email).first())


async def create(
    db: Any,
    *,
    email: str | None,
    password_hash: str | None,
    name: str | None = None,
    type: UserType = "regular",
) -> User:
    """A new user with role "user". Raises EmailTaken."""
    user_id = str(uuid.uuid4())
    try:
        await (
            db.prepare(
                "INSERT INTO users (id, name, email, type, password_hash) VALUES (?, ?, ?, ?, ?)"
            )
            .bind(user_id, name, email, type, password_hash)
            .run()
        )
    except D1Error as e:
        if _is_unique_violation(e):
            raise EmailTaken(email) from None
        raise
    return User(user_id, email, name, None, "user", type)


async def upgrade_guest(
    db: Any, user_id: str, *, email: str, password_hash: str, name: str | None
) -> User | None:
    """Make a guest a regular user (same id: their chats stay theirs). None if the
    user is not (or no longer) a guest. Raises EmailTaken."""
    try:
        result = await (
            db.prepare(
                "UPDATE users SET email = ?, password_hash = ?, name = coalesce(?, name), "
                "type = 'regular' WHERE id = ? AND type = 'guest'"
            )
            .bind(email, password_hash, name, user_id)
            .run()
        )
    except D1Error as e:
        if _is_unique_violation(e):
            raise EmailTaken(email) from None
        raise
    return await by_id(db, user_id) if result.meta.changes else None


async def for_session(db: Any, user_id: str, token_ids: list[str]) -> tuple[User | None, bool]:
    """The user a session names, and whether the session was signed out (any of
    `token_ids`, its jti and sid, revoked): one query."""
    ids = [*token_ids, "", ""][:2]
    row = (
        await db.prepare(
            "SELECT EXISTS (SELECT 1 FROM auth_revoked_tokens WHERE id IN (?, ?)) AS revoked, "
            "u.id, u.name, u.email, u.image, u.role, u.type "
            "FROM (SELECT 1) LEFT JOIN users AS u ON u.id = ?"
        )
        .bind(*ids, user_id)
        .first()
    )
    revoked = bool(row and row["revoked"])
    return (User.from_row(row) if row and row["id"] is not None else None), revoked


async def provision(db: Any, user_id: str, claims: dict[str, Any]) -> User:
    """The row of a user known only from a token the front end made (its own Auth.js
    with the shared secret): created from the token's claims with role "user", so that
    other tables can refer to it. An email another user already has is left out."""
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    image = claims.get("picture") if isinstance(claims.get("picture"), str) else None
    kind = "guest" if claims.get("type") == "guest" else "regular"
    email = email.strip().lower()[:254] if email else None
    await (
        db.prepare(
            "INSERT OR IGNORE INTO users (id, name, email, image, type) VALUES (?, ?, "
            "CASE WHEN EXISTS (SELECT 1 FROM users WHERE email = ?) THEN NULL ELSE ? END, ?, ?)"
        )
        .bind(user_id, name and name[:200], email, email, image and image[:2048], kind)
        .run()
    )
    user = await by_id(db, user_id)
    if user is None:  # pragma: no cover - the insert above or a concurrent one made it
        raise D1Error(f"D1_ERROR: user {user_id} could not be provisioned")
    return user


async def revoke(db: Any, token_ids: list[str], expires_at: int) -> None:
    """Refuse tokens carrying any of these ids (jti, sid) until `expires_at` (sign-out);
    forget revocations that have run out."""
    now = int(time.time())
    statements = [db.prepare("DELETE FROM auth_revoked_tokens WHERE expires_at < ?").bind(now)]
    statements += [
        db.prepare(
            "INSERT INTO auth_revoked_tokens (id, expires_at) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)"
        ).bind(token_id, expires_at)
        for token_id in token_ids
    ]
    await db.batch(statements)


@dataclass(frozen=True, slots=True)
class Listed:
    user: User
    created_at: str


async def page(db: Any, limit: int, after: str | None) -> tuple[list[Listed], str | None]:
    """Users oldest first, `limit` per page; the cursor is the last user's id."""
    sql = f"SELECT {_COLUMNS}, created_at FROM users"
    args: list[Any] = []
    if after is not None:
        sql += " WHERE (created_at, id) > (SELECT created_at, id FROM users WHERE id = ?)"
        args.append(after)
    sql += " ORDER BY created_at, id LIMIT ?"
    args.append(limit + 1)
    rows = (await db.prepare(sql).bind(*args).all()).results
    listed = [Listed(User.from_row(r), r["created_at"]) for r in rows[:limit]]
    more = len(rows) > limit
    return listed, (listed[-1].user.id if more and listed else None)


async def set_role(db: Any, user_id: str, role: str) -> User | None:
    result = await db.prepare("UPDATE users SET role = ? WHERE id = ?").bind(role, user_id).run()
    return await by_id(db, user_id) if result.meta.changes else None
