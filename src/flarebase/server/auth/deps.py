"""FastAPI dependencies that resolve the request's session to a `User`.

The token is looked for in `Authorization: Bearer`, then the session cookies (see
sessions.py), decrypted with any AUTH_SECRET, and its user (`sub`, else `id`)
loaded from D1 in one query that also refuses signed-out tokens. The D1 row is
authoritative for role and type: a token's own `role` claim is never trusted. A
token made by the front end's Auth.js for a user D1 does not know yet creates
that user's row from the token's claims (role "user"); one that flarebase made
for a user that no longer exists is refused. The result is resolved once per
request and cached on `request.state`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request

from ..deps import get_env, get_settings
from ..errors import ApiError
from ..settings import Settings
from . import sessions, tokens, users
from .sessions import Presented
from .users import User

log = logging.getLogger("flarebase.server.auth")
_STATE = "flarebase_session"
_INVALID = "flarebase_session_invalid"


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: the user, the token's claims and where the token came from."""

    user: User
    claims: dict[str, Any]
    presented: Presented


async def get_session(request: Request) -> Session | None:
    """The request's verified session, or None (no token, or an invalid one)."""
    if hasattr(request.state, _STATE):
        cached: Session | None = getattr(request.state, _STATE)
        return cached
    session = await _resolve(request)
    setattr(request.state, _STATE, session)
    return session


async def _resolve(request: Request) -> Session | None:
    settings = get_settings(request)
    secrets = sessions.secrets(settings)
    presented = sessions.presented(request, settings)
    if presented is None:
        return None
    try:
        claims = tokens.decode(presented.token, secrets, presented.salts)
    except tokens.TokenError as e:
        log.info("refused a session token from %s: %s", presented.source, e)
        setattr(request.state, _INVALID, True)
        return None
    user_id = claims.get("sub") or claims.get("id")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= 255:
        setattr(request.state, _INVALID, True)
        return None
    db = get_env(request).DB
    user, revoked = await users.for_session(db, user_id, sessions.token_ids(claims))
    if revoked or (user is None and claims.get("iss") == sessions.ISSUER):
        setattr(request.state, _INVALID, True)
        return None
    if user is None:
        user = await users.provision(db, user_id, claims)
    return Session(user, claims, presented)


async def optional_user(request: Request) -> User | None:
    """The signed-in user (regular or guest), or None."""
    session = await get_session(request)
    return session.user if session else None


async def current_user(request: Request) -> User:
    """The signed-in user (regular or guest). Without a valid session: a browser
    asking for a page (GET/HEAD accepting text/html) is redirected to the sign-in
    page (303, `?callbackUrl=` back here); anything else gets 401 JSON."""
    user = await optional_user(request)
    if user is None:
        raise sign_in_required(request)
    return user


async def regular_user(user: Annotated[User, Depends(current_user)]) -> User:
    """A signed-in user who is not a guest (403 `guest_not_allowed` for guests)."""
    if user.is_guest:
        raise ApiError(403, "guest_not_allowed", "sign up or sign in to do this")
    return user


def require_role(*roles: str) -> Any:
    """A dependency: the signed-in user if their role is one of `roles`, else 403."""
    if not roles:
        raise ValueError("require_role needs at least one role")

    async def with_role(user: Annotated[User, Depends(current_user)]) -> User:
        if not user.has_role(*roles):
            raise ApiError(403, "forbidden", f"requires the role {' or '.join(roles)}")
        return user

    with_role.__name__ = f"require_role_{'_'.join(roles)}"
    return with_role


def wants_html(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def signin_location(request: Request, settings: Settings) -> str:
    target = settings.auth_signin_url
    if target.startswith("/"):
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:  # the front end's page: send it an absolute URL back here
        back = str(request.url)
    separator = "&" if "?" in target else "?"
    return f"{target}{separator}callbackUrl={quote(back, safe='')}"


def sign_in_required(request: Request) -> ApiError:
    if wants_html(request):
        error = ApiError(303, "sign_in_required", "sign in to see this page")
        error.headers["Location"] = signin_location(request, get_settings(request))
        return error
    invalid = getattr(request.state, _INVALID, False)
    message = "the session is invalid or has expired" if invalid else "sign in required"
    error = ApiError(401, "unauthorized", message)
    error.headers["WWW-Authenticate"] = "Bearer"
    return error


def client_ip(request: Request, settings: Settings) -> str:
    """The client's address: CLIENT_IP_HEADER's first entry when configured (a proxy
    you trust sets it), else the connection's peer."""
    if settings.client_ip_header:
        value = request.headers.get(settings.client_ip_header, "")
        first = value.split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else "unknown"
