"""Passwords: bcrypt hashes, compatible with those of Supabase (`$2a$`, Go),
vercel/chatbot (`bcrypt-ts`, `$2a$`/`$2b$`) and PHP (`$2y$`).

bcrypt reads at most 72 bytes: new passwords longer than that are refused at
sign-up, and a longer password is checked on its first 72 bytes, as the
JavaScript libraries that made the migrated hashes did. Hashing and checking run
in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

import bcrypt

MAX_BYTES = 72


def hash_password(password: str, rounds: int = 10) -> str:
    """A new `$2b$` hash."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether `password` matches `hashed`; False for a missing or foreign hash."""
    if not hashed:
        return False
    if hashed.startswith("$2y$"):  # PHP's name for the same algorithm as $2b$
        hashed = "$2b$" + hashed[4:]
    try:
        return bcrypt.checkpw(password.encode()[:MAX_BYTES], hashed.encode("ascii"))
    except (ValueError, UnicodeEncodeError):  # not a bcrypt hash
        return False


@lru_cache(maxsize=4)
def _decoy(rounds: int) -> str:
    return hash_password("flarebase decoy password", rounds)


async def check_password(password: str, hashed: str | None, rounds: int = 10) -> bool:
    """`verify_password` off the event loop. Without a hash (no such user, a guest)
    it still spends the time of one check, so timing does not tell who exists."""
    if not hashed or not hashed.startswith("$2"):
        await asyncio.to_thread(lambda: verify_password(password, _decoy(rounds)))
        return False
    return await asyncio.to_thread(verify_password, password, hashed)


async def new_hash(password: str, rounds: int = 10) -> str:
    return await asyncio.to_thread(hash_password, password, rounds)


def password_problems(password: str, min_length: int, email: str | None = None) -> list[str]:
    """What is wrong with a new password (empty when it is acceptable)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"must have at least {min_length} characters")
    if len(password.encode()) > MAX_BYTES:
        problems.append(f"must be at most {MAX_BYTES} bytes")
    if "\x00" in password:
        problems.append("must not contain NUL characters")
    if password.strip() == "" and password:
        problems.append("must not be only spaces")
    if email and password.strip().lower() == email.lower():
        problems.append("must not be the email address")
    return problems
