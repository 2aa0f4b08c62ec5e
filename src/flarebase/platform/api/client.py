"""One Cloudflare REST API client for the `api` provider's bindings.

Every call goes through `ApiClient.call`, which
- waits for the client-side rate limiter (see the provider's docstring for the limits),
- turns the SDK's exceptions into the binding's typed flarebase error, carrying
  Cloudflare's own messages and codes (`ApiFailure`),
- retries answers that mean "not done, try again" (429, 500, 502, 503, 504) and
  connection failures, but only for idempotent calls: a write whose answer was lost
  may have happened, and repeating it could do it twice.

The SDK's own retries are switched off (`max_retries=0`): it would retry any POST,
idempotent or not.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import cloudflare

from ..errors import ConfigError, FlarebaseError

T = TypeVar("T")

API_LIMIT = 1200  # requests per user per window (Cloudflare's global API limit)
API_WINDOW = 300.0  # seconds
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ApiFailure:
    """What Cloudflare answered (or that nothing came back: `status` None)."""

    status: int | None
    code: int | None
    message: str
    retry_after: float | None = None

    def describe(self) -> str:
        """Cloudflare's message with its code, as wrangler prints it."""
        return self.message if self.code is None else f"{self.message} [code: {self.code}]"


ErrorFactory = Callable[[ApiFailure], FlarebaseError]


def failure_of(exc: cloudflare.APIError) -> ApiFailure:
    """The envelope's `errors` ({code, message} each), or the HTTP status alone."""
    if not isinstance(exc, cloudflare.APIStatusError):
        return ApiFailure(None, None, f"no answer from the Cloudflare API: {exc}")
    errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
    entries = [e for e in errors or [] if isinstance(e, dict)]
    message = "; ".join(str(e.get("message", "")) for e in entries) or (
        f"HTTP {exc.status_code} {exc.response.reason_phrase}"
    )
    code = entries[0].get("code") if entries else None
    return ApiFailure(
        exc.status_code,
        code if isinstance(code, int) else None,
        message,
        retry_after(exc.response.headers.get("retry-after")),
    )


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: Cloudflare sends a number; an HTTP date is allowed too."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RateLimiter:
    """At most `limit` requests in any `window` seconds, counted in this process.

    Cloudflare counts per user across every client (dashboard, wrangler, other
    scripts), so this only keeps one migration from tripping the limit by itself.
    """

    def __init__(
        self,
        limit: int,
        window: float = API_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                await self._sleep(self._sent[0] + self.window - now)


class ApiClient:
    """The SDK client, the account it acts on, and the retry and rate-limit policy.

    The SDK client is made on first use, and a missing account id or token is a
    ConfigError then: a project may declare bindings its user never calls.
    """

    def __init__(
        self,
        account_id: str | None,
        api_token: str | None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        max_retry_wait: float = API_WINDOW,
        rate_limit: int | None = API_LIMIT,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._account_id = account_id
        self._api_token = api_token
        self._base_url = base_url
        self._timeout = timeout
        self._sdk: cloudflare.AsyncCloudflare | None = None
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self.limiter = RateLimiter(rate_limit, sleep=sleep) if rate_limit else None

    @property
    def account_id(self) -> str:
        if not self._account_id:
            raise ConfigError("api provider: give account_id= (or set CLOUDFLARE_ACCOUNT_ID)")
        return self._account_id

    @property
    def sdk(self) -> cloudflare.AsyncCloudflare:
        if self._sdk is None:
            if not self._api_token:
                raise ConfigError("api provider: give api_token= (or set CLOUDFLARE_API_TOKEN)")
            self._sdk = cloudflare.AsyncCloudflare(
                api_token=self._api_token,
                base_url=self._base_url,
                timeout=self._timeout,
                max_retries=0,
            )
        return self._sdk

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    def account_path(self, *segments: str) -> str:
        """`/accounts/{account}/...`, each segment percent-encoded."""
        return "/".join(["/accounts", quote(self.account_id, safe=""), *segments])

    async def post(
        self,
        path: str,
        body: Any,
        error: ErrorFactory,
        *,
        idempotent: bool,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST JSON (or raw `content`); the envelope's `result` as plain JSON values.
        The SDK's typed models are bypassed where they would coerce user data
        (1 into 1.0) or send bodies in ways it deprecates."""
        options: Any = {"headers": headers} if headers else {}
        answer = await self.call(
            lambda: self.sdk.post(
                path, body=body, content=content, options=options, cast_to=object
            ),
            error,
            idempotent=idempotent,
        )
        return answer.get("result") if isinstance(answer, dict) else None

    async def get(self, path: str, error: ErrorFactory) -> Any:
        """GET; the envelope's `result` as plain JSON values (reads are idempotent)."""
        answer = await self.call(lambda: self.sdk.get(path, cast_to=object), error, idempotent=True)
        return answer.get("result") if isinstance(answer, dict) else None

    async def call(
        self, request: Callable[[], Awaitable[T]], error: ErrorFactory, *, idempotent: bool
    ) -> T:
        """Run `request()` (an SDK call); raise `error(failure)` if Cloudflare refuses it."""
        attempt = 0
        while True:
            if self.limiter is not None:
                await self.limiter.acquire()
            try:
                return await request()
            except cloudflare.APIError as e:
                failure = failure_of(e)
            wait = self._retry_wait(failure, attempt) if idempotent else None
            if wait is None:
                raise error(failure) from None
            await self._sleep(wait)
            attempt += 1

    def _retry_wait(self, failure: ApiFailure, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        retryable = failure.status is None or failure.status in RETRYABLE
        if not retryable or attempt >= self.retries:
            return None
        if failure.retry_after is not None:
            # Waiting less than Cloudflare asks only earns another 429.
            return failure.retry_after if failure.retry_after <= self.max_retry_wait else None
        backoff = min(self.max_retry_wait, 0.5 * 2**attempt)
        return backoff * random.uniform(0.5, 1.0)  # jitter: parallel callers spread out
