"""The accounts API: sign-up, sign-in, guests, sign-out, the session; admin users.

Sign-up, sign-in, guest and sign-out take JSON (answering JSON, the session
token in both the body and the cookie) or a browser form (answering 303 to
`callbackUrl`, or back to the page with `?error=`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from ..deps import get_env, get_settings
from ..errors import ApiError, not_found
from ..settings import Settings
from . import forms, sessions, throttle, tokens, users
from .deps import client_ip, get_session, optional_user, require_role
from .passwords import check_password, new_hash
from .users import User


@asynccontextmanager
async def _check_settings(app: FastAPI) -> AsyncIterator[None]:
    """At start: no AUTH_SECRET is a ConfigError, so the server does not come up."""
    sessions.secrets(app.state.settings)
    yield


router = APIRouter(lifespan=_check_settings)
HOUR = 3600

# -- response shapes -------------------------------------------------------------------


class SessionUser(BaseModel):
    id: str
    name: str | None
    email: str | None
    image: str | None
    role: str
    type: str = Field(description="regular or guest")


class SessionOut(BaseModel):
    """Auth.js's session shape (`expires` is an ISO date) with id, role and type."""

    user: SessionUser
    expires: str


class SignedIn(SessionOut):
    token: str = Field(description="the session token, for `Authorization: Bearer`")


class ListedUser(SessionUser):
    created_at: str


class UserPage(BaseModel):
    users: list[ListedUser]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", examples=["admin", "user"])


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in, or wrong email or password"},
    403: {"description": "forbidden"},
    415: {"description": "neither JSON nor a form"},
    422: {"description": "invalid input; `fields` lists each problem"},
    429: {"description": "too many attempts; see Retry-After"},
}

# -- helpers ---------------------------------------------------------------------------


def _db(request: Request) -> Any:
    return get_env(request).DB


def _signed_in(user: User, issued: sessions.Issued) -> dict[str, Any]:
    return {"user": user.public(), "expires": issued.expires_iso, "token": issued.token}


def _same_site_form(request: Request) -> None:
    """A form post must come from a page of this site (the browser's Origin says)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    hosts = {request.headers.get("host", "").lower()}
    hosts.add(request.headers.get("x-forwarded-host", "").split(",")[0].strip().lower())
    if origin == "null" or urlsplit(origin).netloc.lower() not in hosts - {""}:
        raise ApiError(403, "cross_site_form", "forms must be posted from this site")


def _back_to(page: str, error: str, callback: str | None) -> RedirectResponse:
    query = {"error": error} | ({"callbackUrl": callback} if callback else {})
    return RedirectResponse(f"{page}?{urlencode(query)}", status_code=303)


def _too_many(seconds: int) -> ApiError:
    message = f"too many attempts; try again in {seconds} s"
    error = ApiError(429, "too_many_attempts", message, retry_after=seconds)
    error.headers["Retry-After"] = str(seconds)
    return error


async def _new_account_allowed(request: Request, settings: Settings) -> throttle.Rule:
    rule = throttle.Rule(
        f"new-account:ip:{client_ip(request, settings)}", settings.auth_new_accounts_per_ip, HOUR
    )
    wait = await throttle.blocked(_db(request), [rule])
    if wait:
        raise _too_many(wait)
    return rule


def _signed_in_response(
    request: Request, response: Response, settings: Settings, user: User, body: forms.Body
) -> Any:
    if body.is_form:
        redirect = RedirectResponse(forms.safe_callback(body.data.get("callbackUrl")), 303)
        sessions.issue(request, redirect, settings, user)
        return redirect
    return _signed_in(user, sessions.issue(request, response, settings, user))


# -- the API ---------------------------------------------------------------------------


@router.post(
    "/api/auth/signup",
    tags=["auth"],
    status_code=201,
    response_model=SignedIn,
    responses={**_ERRORS, 409: {"description": "the email is taken"}},
    openapi_extra=forms.request_body(forms.SignUpBody),
)
async def sign_up(
    request: Request, response: Response, settings: Annotated[Settings, Depends(get_settings)]
) -> Any:
    """Create an account with email and password and sign in. A guest who signs up
    keeps their id (and so their chats)."""
    body = await forms.read_body(request)
    if body.is_form:
        _same_site_form(request)
    callback = body.data.get("callbackUrl") if body.is_form else None
    if not settings.auth_signup:
        raise ApiError(403, "signup_disabled", "sign-up is disabled")
    try:
        data = forms.parse(forms.SignUpBody, body.data)
        email, name = forms.check_sign_up(data, settings.auth_password_min_length)
    except RequestValidationError:
        if body.is_form:
            return _back_to("/signup", "InvalidInput", callback)
        raise
    db = _db(request)
    current = await optional_user(request)
    guest = current if current is not None and current.is_guest else None
    try:
        rule = await _new_account_allowed(request, settings) if guest is None else None
    except ApiError:
        if body.is_form:
            return _back_to("/signup", "TooManyAttempts", callback)
        raise
    password_hash = await new_hash(data.password, settings.auth_bcrypt_rounds)
    user: User | None = None
    try:
        if guest is not None:
            user = await users.upgrade_guest(
                db, guest.id, email=email, password_hash=password_hash, name=name
            )
        if user is None:
            user = await users.create(db, email=email, password_hash=password_hash, name=name)
    except users.EmailTaken:
        if body.is_form:
            return _back_to("/signup", "EmailTaken", callback)
        raise ApiError(409, "email_taken", "an account with this email exists; sign in") from None
    if rule is not None:
        await throttle.hit(db, [rule])
    return _signed_in_response(request, response, settings, user, body)


@router.post(
    "/api/auth/signin",
    tags=["auth"],
    response_model=SignedIn,
    responses=_ERRORS,
    openapi_extra=forms.request_body(forms.SignInBody),
)
async def sign_in(
    request: Request, response: Response, settings: Annotated[Settings, Depends(get_settings)]
) -> Any:
    """Sign in with email and password. The same answer for an unknown email and a
    wrong password; repeated failures are throttled per account and per IP."""
    body = await forms.read_body(request)
    if body.is_form:
        _same_site_form(request)
    callback = body.data.get("callbackUrl") if body.is_form else None
    try:
        data = forms.parse(forms.SignInBody, body.data)
        email = forms.check_sign_in(data)
    except RequestValidationError:
        if body.is_form:
            return _back_to("/signin", "CredentialsSignin", callback)
        raise
    db = _db(request)
    window = settings.auth_signin_window
    account = throttle.Rule(f"signin:account:{email}", settings.auth_max_failed_signins, window)
    ip = client_ip(request, settings)
    per_ip = throttle.Rule(f"signin:ip:{ip}", settings.auth_max_failed_signins_per_ip, window)
    wait = await throttle.blocked(db, [account, per_ip])
    if wait:
        if body.is_form:
            return _back_to("/signin", "TooManyAttempts", callback)
        raise _too_many(wait)
    found = await users.credentials(db, email)
    hashed = found[1] if found else None
    rounds = settings.auth_bcrypt_rounds
    if found is None or not await check_password(data.password, hashed, rounds):
        await throttle.hit(db, [account, per_ip])
        if body.is_form:
            return _back_to("/signin", "CredentialsSignin", callback)
        raise ApiError(401, "invalid_credentials", "wrong email or password")
    await throttle.reset(db, [account.key])
    return _signed_in_response(request, response, settings, found[0], body)


@router.post(
    "/api/auth/guest",
    tags=["auth"],
    status_code=201,
    response_model=SignedIn,
    responses={**_ERRORS, 200: {"description": "already signed in: that session, renewed"}},
    openapi_extra=forms.request_body(forms.GuestBody, required=False),
)
async def guest(
    request: Request, response: Response, settings: Annotated[Settings, Depends(get_settings)]
) -> Any:
    """Sign in as a new guest user (type "guest", no email). Already signed in: the
    current user's session, renewed."""
    body = await forms.read_body(request, required=False)
    if body.is_form:
        _same_site_form(request)
    current = await optional_user(request)
    if current is not None:
        response.status_code = 200
        return _signed_in_response(request, response, settings, current, body)
    if not settings.auth_guests:
        raise ApiError(403, "guests_disabled", "guest users are disabled; sign up")
    try:
        rule = await _new_account_allowed(request, settings)
    except ApiError:
        if body.is_form:
            return _back_to("/signin", "TooManyAttempts", body.data.get("callbackUrl"))
        raise
    db = _db(request)
    user = await users.create(db, email=None, password_hash=None, type="guest")
    await throttle.hit(db, [rule])
    return _signed_in_response(request, response, settings, user, body)


@router.post(
    "/api/auth/signout",
    tags=["auth"],
    status_code=204,
    response_class=Response,
    response_model=None,
    responses={303: {"description": "forms: back to the sign-in page"}},
)
async def sign_out(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Any:
    """End the session: its token is refused from now on (cookie or Bearer) and the
    session cookies are cleared."""
    session = await get_session(request)
    if session is not None:
        # Renewed tokens of this session expire at most one max age from now.
        latest = max(int(session.claims["exp"]), int(time.time()) + settings.auth_session_max_age)
        ids = sessions.token_ids(session.claims)
        await users.revoke(_db(request), ids, latest + tokens.CLOCK_SKEW)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == forms.FORM:
        _same_site_form(request)
        response: Response = RedirectResponse(settings.auth_signin_url, 303)
    else:
        response = Response(status_code=204)
    sessions.clear_session_cookies(request, response, settings)
    return response


@router.get(
    "/api/auth/session",
    tags=["auth"],
    response_model=SessionOut | None,
    responses={200: {"description": "the session, or null when signed out (as Auth.js)"}},
)
async def session(
    request: Request, response: Response, settings: Annotated[Settings, Depends(get_settings)]
) -> Any:
    """The current session in Auth.js's shape, or `null`. A session from the session
    cookie is renewed (new expiry), as Auth.js renews it."""
    response.headers["Cache-Control"] = "private, no-cache, no-store"
    current = await get_session(request)
    if current is None:
        sessions.clear_session_cookies(request, response, settings)
        return None
    expires = current.claims["exp"]
    if current.presented.source in sessions.v5_names(settings):
        expires = sessions.renew(request, response, settings, current.presented, current.claims)
    return {"user": current.user.public(), "expires": sessions.iso(expires)}


# -- administration --------------------------------------------------------------------


@router.get("/api/admin/users", tags=["admin"], response_model=UserPage, responses=_ERRORS)
async def list_users(
    request: Request,
    _: Annotated[User, Depends(require_role("admin"))],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=255)] = None,
) -> Any:
    """Every user, oldest first (role admin)."""
    listed, next_cursor = await users.page(_db(request), limit, cursor)
    return {
        "users": [{**item.user.public(), "created_at": item.created_at} for item in listed],
        "next_cursor": next_cursor,
    }


@router.patch(
    "/api/admin/users/{user_id}",
    tags=["admin"],
    response_model=SessionUser,
    responses={**_ERRORS, 404: {"description": "no such user"}},
)
async def change_role(
    request: Request,
    user_id: str,
    change: RoleChange,
    _: Annotated[User, Depends(require_role("admin"))],
) -> Any:
    """Set a user's role (role admin). Takes effect on their next request."""
    user = await users.set_role(_db(request), user_id, change.role)
    if user is None:
        raise not_found("user")
    return user.public()
