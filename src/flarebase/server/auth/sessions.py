"""Where a session token travels: the Auth.js cookie (chunked when large) or
`Authorization: Bearer`; and the cookies flarebase sets and clears.

Read, in this order: `Authorization: Bearer <token>` (percent-decoded, as Auth.js's
`getToken` does; v5 salts tried: both session cookie names), then the cookies
`__Secure-authjs.session-token`, `authjs.session-token` (salt: the cookie's own name)
and NextAuth v4's `__Secure-next-auth.session-token`, `next-auth.session-token`.
A cookie over 3936 characters is split into `<name>.0`, `<name>.1`, ..., exactly as
Auth.js's SessionStore splits and joins it.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import Request, Response

from ...platform.errors import ConfigError
from ..settings import Settings
from . import tokens
from .users import User

SECURE_PREFIX = "__Secure-"
V4_COOKIE = "next-auth.session-token"
CHUNK_SIZE = 4096 - 160  # Auth.js: ALLOWED_COOKIE_SIZE - ESTIMATED_EMPTY_COOKIE_SIZE
ISSUER = "flarebase"  # the `iss` of tokens flarebase makes (Auth.js's carry none)


def secrets(settings: Settings) -> tuple[str, ...]:
    """The secrets that decrypt sessions; the first encrypts. ConfigError if unset."""
    if not settings.auth_secrets:
        raise ConfigError(
            "AUTH_SECRET is not set: accounts and sign-in need the Auth.js secret "
            "(several, comma-separated, to rotate). For local development put "
            "AUTH_SECRET=<random> in .dev.vars beside wrangler.toml "
            "(make one with `openssl rand -base64 33`); on Cloudflare use "
            "`wrangler secret put AUTH_SECRET`."
        )
    return settings.auth_secrets


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _prefixed(name: str) -> str:
    return name if name.startswith(("__Secure-", "__Host-")) else SECURE_PREFIX + name


def cookie_name(settings: Settings, request: Request) -> str:
    """The name (and v5 salt) of the session cookie flarebase sets for this request."""
    mode = settings.auth_secure_cookies
    secure = mode == "true" or (mode == "auto" and is_https(request))
    return _prefixed(settings.auth_cookie_name) if secure else settings.auth_cookie_name


def v5_names(settings: Settings) -> tuple[str, ...]:
    base = settings.auth_cookie_name
    return (_prefixed(base), base) if _prefixed(base) != base else (base,)


@dataclass(frozen=True, slots=True)
class Presented:
    """A token as the request carried it: `source` is "bearer" or the cookie name."""

    token: str
    source: str
    salts: tuple[str, ...]


def read_cookie(cookies: dict[str, str], name: str) -> str | None:
    """The cookie `name`, or the join of its chunks `name.0`, `name.1`, ..."""
    if cookies.get(name):
        return cookies[name]
    chunks: list[str] = []
    while cookies.get(f"{name}.{len(chunks)}"):
        chunks.append(cookies[f"{name}.{len(chunks)}"])
    return "".join(chunks) or None


def presented(request: Request, settings: Settings) -> Presented | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        try:
            token = unquote(value.strip(), errors="strict")
        except UnicodeDecodeError:
            token = ""  # undecodable: presented, and invalid
        return Presented(token, "bearer", v5_names(settings))
    cookies = request.cookies
    for name in (*v5_names(settings), _prefixed(V4_COOKIE), V4_COOKIE):
        found = read_cookie(cookies, name)
        if found:
            return Presented(found, name, (name,))
    return None


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires: int  # epoch seconds

    @property
    def expires_iso(self) -> str:
        return iso(self.expires)


def iso(epoch: float) -> str:
    """A JavaScript `Date.toISOString()`: UTC, milliseconds, `Z`."""
    whole = math.floor(epoch)
    millis = round((epoch - whole) * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def user_claims(user: User) -> dict[str, Any]:
    """What flarebase's tokens carry: Auth.js's default claims (name, email, picture,
    sub) plus the `id`, `role` and `type` that apps commonly add in their callbacks."""
    return {
        "name": user.name,
        "email": user.email,
        "picture": user.image,
        "sub": user.id,
        "id": user.id,
        "role": user.role,
        "type": user.type,
        "iss": ISSUER,
        "sid": str(uuid.uuid4()),
    }


def token_ids(claims: dict[str, Any]) -> list[str]:
    """What sign-out revokes: the token's `jti` and the `sid` that every renewal of a
    flarebase session keeps (Auth.js keeps it too when it renews the token)."""
    ids = [claims.get("jti"), claims.get("sid")]
    return [i for i in ids if isinstance(i, str) and 0 < len(i) <= 255]


def issue(request: Request, response: Response, settings: Settings, user: User) -> Issued:
    """A new session token for `user`, set as the session cookie on `response`."""
    name = cookie_name(settings, request)
    now = time.time()
    max_age = settings.auth_session_max_age
    token = tokens.encode(user_claims(user), secrets(settings)[0], name, max_age=max_age, now=now)
    set_session_cookie(request, response, settings, name, token, max_age)
    return Issued(token, int(now) + max_age)


def renew(
    request: Request,
    response: Response,
    settings: Settings,
    presented: Presented,
    claims: dict[str, Any],
) -> int:
    """Re-issue a cookie session with a fresh expiry, keeping its claims (as Auth.js's
    session endpoint does); returns the new expiry (epoch seconds)."""
    now = time.time()
    max_age = settings.auth_session_max_age
    kept = {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}
    name = presented.source
    token = tokens.encode(kept, secrets(settings)[0], name, max_age=max_age, now=now)
    set_session_cookie(request, response, settings, name, token, max_age)
    return int(now) + max_age


def _present_names(request: Request, name: str) -> set[str]:
    prefix = name + "."
    return {n for n in request.cookies if n == name or n.startswith(prefix)}


def set_session_cookie(
    request: Request, response: Response, settings: Settings, name: str, token: str, max_age: int
) -> None:
    """Set `token` as cookie `name`, in chunks when too large; clear stale chunks."""
    if len(token) <= CHUNK_SIZE:
        pieces = {name: token}
    else:
        count = math.ceil(len(token) / CHUNK_SIZE)
        pieces = {f"{name}.{i}": token[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] for i in range(count)}
    for stale in sorted(_present_names(request, name) - set(pieces)):
        _cookie(response, settings, stale, "", 0)
    for piece_name, value in pieces.items():
        _cookie(response, settings, piece_name, value, max_age)


def clear_session_cookies(request: Request, response: Response, settings: Settings) -> None:
    """Expire every flarebase (Auth.js v5) session cookie and chunk the request carried."""
    for name in v5_names(settings):
        for present in sorted(_present_names(request, name)):
            _cookie(response, settings, present, "", 0)


def _cookie(response: Response, settings: Settings, name: str, value: str, max_age: int) -> None:
    secure = name.startswith(("__Secure-", "__Host-")) or settings.auth_secure_cookies == "true"
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        expires=max_age,
        path="/",
        domain=settings.auth_cookie_domain,
        secure=secure,
        httponly=True,
        samesite="lax",
    )
