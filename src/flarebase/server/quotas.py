"""Quotas without Redis: messages per user type per time window, requests per IP.

Charging a message (for POST /api/chat)
---------------------------------------
    from flarebase.server.quotas import MessageQuota

    @router.post("/api/chat")
    async def chat(body: ChatRequest, user: CurrentUser, quota: MessageQuota) -> ...:
        ...   # quota.limit, quota.used, quota.remaining, quota.window (seconds)

`MessageQuota` (an `Annotated[Usage, Depends(message_quota)]`) charges one message to
the signed-in user (it depends on `current_user`: 401 without a session) and lets
the handler run, or answers 429 before it runs:

    429  Retry-After: <seconds>
    {"code": "quota_exceeded", "message": "...", "limit": 20, "window": 86400,
     "retry_after": <seconds>}

The limit is per user type: QUOTA_MESSAGES_REGULAR (default 100) and
QUOTA_MESSAGES_GUEST (default 20) per QUOTA_MESSAGES_WINDOW seconds (default 86400),
as vercel/chatbot's entitlements; 0 turns a limit off. FastAPI runs dependencies
before it validates the body, so a request with an invalid body is charged too; to
charge only valid requests, call `await charge_message(request, user)` in the
handler instead (same 429). `dependencies=[Depends(message_quota)]` works as well.

Requests per IP
---------------
`IpQuota` (middleware, installed by create_app) counts every request whose path
starts with /api/ against its client address (CLIENT_IP_HEADER, else the peer; IPv6
by /64) and answers 429 `rate_limited` with Retry-After past QUOTA_IP_REQUESTS per
QUOTA_IP_WINDOW seconds. QUOTA_IP_REQUESTS defaults to 0 (off) for the library and
its tests; `flarebase init` turns it on in the projects it scaffolds.

How counting works
------------------
A sliding window over D1 (table `quota_counters`, 0004_quotas.sql), as Cloudflare's
own rate limiting estimates it: the count of the current fixed window plus the
previous window's count weighted by how much of it the sliding window still covers.
Checking and counting are one atomic `INSERT ... SELECT ... WHERE estimate < limit
ON CONFLICT DO UPDATE ... RETURNING`, so concurrent requests on any number of
servers never exceed the limit; a refused request is not counted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import User, client_ip, current_user
from .deps import get_env, get_settings
from .errors import ApiError
from .settings import Settings

CLEANUP_PROBABILITY = 1 / 64  # a charge that also deletes expired counters


@dataclass(frozen=True, slots=True)
class Rule:
    """`limit` events per `window` seconds for `key`."""

    key: str
    limit: int
    window: int


@dataclass(frozen=True, slots=True)
class Usage:
    """A successful charge: `used` of `limit` in the sliding `window` (estimated)."""

    limit: int
    used: int
    window: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class Exceeded(Exception):
    def __init__(self, rule: Rule, retry_after: int) -> None:
        super().__init__(f"{rule.key}: over {rule.limit} per {rule.window} s")
        self.rule = rule
        self.retry_after = retry_after


_CHARGE = (
    "INSERT INTO quota_counters (key, window_start, count, expires_at) "
    "SELECT ?, ?, 1, ? WHERE ("
    "SELECT coalesce(sum(CASE WHEN window_start = ? THEN count ELSE count * ? END), 0) "
    "FROM quota_counters WHERE key = ? AND window_start IN (?, ?)"
    ") + 1 <= ? "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 "
    "RETURNING count, "
    "(SELECT count FROM quota_counters AS p WHERE p.key = ? AND p.window_start = ?) AS previous"
)
_COUNTS = "SELECT window_start, count FROM quota_counters WHERE key = ? AND window_start IN (?, ?)"


async def charge(db: Any, rule: Rule, now: float | None = None) -> Usage:
    """Count one event against `rule`, or raise Exceeded (counting nothing)."""
    now = time.time() if now is None else now
    window = rule.window
    start = int(now // window) * window
    previous = start - window
    weight = 1 - (now - start) / window  # the previous window's share still covered
    charge_stmt = db.prepare(_CHARGE).bind(
        rule.key,
        start,
        start + 2 * window,
        start,
        weight,
        rule.key,
        start,
        previous,
        rule.limit,
        rule.key,
        previous,
    )
    if random.random() < CLEANUP_PROBABILITY:
        cleanup = db.prepare("DELETE FROM quota_counters WHERE expires_at <= ?").bind(int(now))
        row = ((await db.batch([cleanup, charge_stmt]))[1].results or [None])[0]
    else:
        row = await charge_stmt.first()
    if row is not None:
        used = row["count"] + math.floor((row["previous"] or 0) * weight)
        return Usage(limit=rule.limit, used=min(used, rule.limit), window=window)
    counts = await _counts(db, rule, start, previous)
    return_at = _next_allowed(rule, now, start, counts.get(start, 0), counts.get(previous, 0))
    raise Exceeded(rule, max(1, math.ceil(return_at - now)))


async def _counts(db: Any, rule: Rule, start: int, previous: int) -> dict[int, int]:
    rows = (await db.prepare(_COUNTS).bind(rule.key, start, previous).all()).results
    return {r["window_start"]: r["count"] for r in rows}


def _next_allowed(rule: Rule, now: float, start: int, current: int, previous: int) -> float:
    """When the estimate first leaves room for one more event (none being added)."""
    limit, window = rule.limit, rule.window
    if current + 1 <= limit and previous > 0:
        # The previous window's weight must fall until previous * w <= limit - 1 - current.
        return start + window * (1 - (limit - 1 - current) / previous)
    # Wait for the next window, where this window's count is the weighted one.
    return start + window + window * max(0.0, 1 - (limit - 1) / max(current, 1))


# -- messages per user type --------------------------------------------------------------


def message_rule(settings: Settings, user: User) -> Rule | None:
    """The user's message quota (None when off for their type)."""
    limit = settings.quota_messages_guest if user.is_guest else settings.quota_messages_regular
    if limit <= 0:
        return None
    window = settings.quota_messages_window
    return Rule(f"msg:{window}:{user.id}", limit, window)


def _quota_exceeded(e: Exceeded) -> ApiError:
    error = ApiError(
        429,
        "quota_exceeded",
        f"you have sent the maximum of {e.rule.limit} message{'' if e.rule.limit == 1 else 's'} "
        "per "
        f"{_duration(e.rule.window)}; try again in {_duration(e.retry_after)}",
        limit=e.rule.limit,
        window=e.rule.window,
        retry_after=e.retry_after,
    )
    error.headers["Retry-After"] = str(e.retry_after)
    return error


async def charge_message(request: Request, user: User) -> Usage:
    """Charge one message to `user`; ApiError 429 `quota_exceeded` when over quota."""
    settings = get_settings(request)
    rule = message_rule(settings, user)
    if rule is None:
        return Usage(limit=0, used=0, window=settings.quota_messages_window)
    try:
        return await charge(get_env(request).DB, rule)
    except Exceeded as e:
        raise _quota_exceeded(e) from None


async def message_quota(request: Request, user: Annotated[User, Depends(current_user)]) -> Usage:
    """The dependency behind MessageQuota."""
    return await charge_message(request, user)


MessageQuota = Annotated[Usage, Depends(message_quota)]


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}" if n != 1 else unit
    return f"{seconds} s"


# -- requests per IP -----------------------------------------------------------------------


def ip_key(address: str) -> str:
    """The address a client is counted by: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class IpQuota:
    """ASGI middleware: QUOTA_IP_REQUESTS per QUOTA_IP_WINDOW for each client address on
    /api/ paths (off when 0). Reads the settings and env of the app it serves."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        if settings.quota_ip_requests <= 0:
            await self.app(scope, receive, send)
            return
        env = scope.get("env")
        db = (env if env is not None else state.env).DB
        address = ip_key(client_ip(Request(scope), settings))
        window = settings.quota_ip_window
        rule = Rule(f"ip:{window}:{address}", settings.quota_ip_requests, window)
        try:
            await charge(db, rule)
        except Exceeded as e:
            await _too_many_requests(send, e)
            return
        await self.app(scope, receive, send)


async def _too_many_requests(send: Send, e: Exceeded) -> None:
    body = json.dumps(
        {
            "code": "rate_limited",
            "message": f"too many requests from this address; try again in {e.retry_after} s",
            "limit": e.rule.limit,
            "window": e.rule.window,
            "retry_after": e.retry_after,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(e.retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
