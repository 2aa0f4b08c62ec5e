"""Accounts and sign-in.

Requiring a user, in any feature
--------------------------------
    from flarebase.server.auth import CurrentUser, OptionalUser, RegularUser, User, require_role

    @router.get("/api/history")
    async def history(user: CurrentUser) -> ...:          # regular or guest; else 401 / redirect
        ... user.id, user.email, user.role, user.type, user.is_guest ...

    @router.get("/api/chat/{id}")
    async def read(id: str, user: OptionalUser) -> ...:   # None when signed out (public chats)

    @router.post("/api/files/upload")
    async def upload(user: RegularUser) -> ...:           # 403 guest_not_allowed for guests

    @router.get("/api/admin/stats", dependencies=[Depends(require_role("admin"))])
    async def stats() -> ...:                             # 403 forbidden without the role

Without a valid session, `CurrentUser` (and everything built on it) answers 401
JSON `{code: "unauthorized", message}` with `WWW-Authenticate: Bearer`, except that
a browser asking for a page (GET/HEAD with `Accept: text/html`) is sent with 303 to
the sign-in page (AUTH_SIGNIN_URL, default `/signin?callbackUrl=<this path>`).
`get_session(request)` also gives the token's claims and where it came from.

Sessions
--------
Auth.js v5 session tokens (encrypted JWT, A256CBC-HS512, HKDF salt = cookie name,
kid = key thumbprint) in the cookie `authjs.session-token` (`__Secure-` over HTTPS,
chunked `.0`, `.1`, ... when large) or `Authorization: Bearer <token>`. Tokens made
by the front end's Auth.js v5 or NextAuth v4 with the same AUTH_SECRET are accepted;
AUTH_SECRET may list several secrets (comma-separated) to rotate: the first
encrypts, any decrypts. `exp` is enforced with 15 s of clock skew; signed-out
tokens are refused until they expire. Roles and types come from D1 (`users`),
never from the token.

AUTH_SECRET is required: without it the app refuses to start (ConfigError from
its lifespan) and any request that needs a session answers 500 `config_error`.
There is no built-in development secret: `flarebase dev` reads it from
`.dev.vars` beside wrangler.toml (`AUTH_SECRET=...`, `openssl rand -base64 33`).

Routes
------
POST /api/auth/signup, /api/auth/signin, /api/auth/guest, /api/auth/signout;
GET /api/auth/session (Auth.js's shape, `null` when signed out); GET /signin,
/signup (HTML); GET /api/admin/users, PATCH /api/admin/users/{id} (role admin).
Settings: the AUTH_* fields of `flarebase.server.settings.Settings`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ..settings import Settings
from . import pages, routes
from .deps import (
    Session,
    client_ip,
    current_user,
    get_session,
    optional_user,
    regular_user,
    require_role,
)
from .sessions import secrets
from .users import User

CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
RegularUser = Annotated[User, Depends(regular_user)]
AdminUser = Annotated[User, Depends(require_role("admin"))]

router = APIRouter()
router.include_router(routes.router)
router.include_router(pages.router)


def check_settings(settings: Settings) -> None:
    """Raise ConfigError now if accounts cannot work (no AUTH_SECRET), e.g. from the CLI
    before serving; the app's lifespan checks the same at start."""
    secrets(settings)


__all__ = [
    "AdminUser",
    "CurrentUser",
    "OptionalUser",
    "RegularUser",
    "Session",
    "User",
    "check_settings",
    "client_ip",
    "current_user",
    "get_session",
    "optional_user",
    "regular_user",
    "require_role",
    "router",
]
