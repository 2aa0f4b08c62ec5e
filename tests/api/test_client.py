"""The `api` provider's client and configuration: retries of idempotent calls (429 with
Retry-After, 5xx, no answer), no retries of the others, the client-side rate limiter,
and where account, token and R2 credentials come from.

The Cloudflare API here is a recording fake on loopback (no real account is
reachable); waits are recorded by an injected `sleep` instead of slept.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from flarebase.platform import (
    ConfigError,
    D1Error,
    DurableObjectError,
    FlarebaseError,
    open_env,
)
from flarebase.platform.api import ApiClient, ApiFailure, RateLimiter

from .conftest import ACCOUNT, CONFIG, TOKEN, provider_options
from .fake_cloudflare import FakeCloudflare, Reply, fail, ok

PATH = f"/accounts/{ACCOUNT}/thing"


def error(failure: ApiFailure) -> FlarebaseError:
    return FlarebaseError(failure.describe(), code=f"HTTP_{failure.status}")


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(url: str, sleeps: Sleeps, **options: Any) -> ApiClient:
    return ApiClient(ACCOUNT, TOKEN, base_url=url, sleep=sleeps, **options)


def rate_limited(after: str) -> Reply:
    return fail(
        429, 971, "Please wait and consider throttling your request speed", {"retry-after": after}
    )


async def test_retry_after_is_waited_exactly(fake: FakeCloudflare):
    fake.answer("POST", PATH, rate_limited("7"), ok({"done": True}))
    sleeps = Sleeps()
    api = client(fake.url, sleeps)

    assert await api.post(PATH, {"a": 1}, error, idempotent=True) == {"done": True}
    assert sleeps.waits == [7.0]
    assert [r.json for r in fake.requests] == [{"a": 1}, {"a": 1}]
    await api.aclose()


async def test_a_retry_after_beyond_max_retry_wait_is_raised_at_once(fake: FakeCloudflare):
    fake.answer("GET", PATH, rate_limited("300"), ok(None))
    sleeps = Sleeps()
    api = client(fake.url, sleeps, max_retry_wait=60)

    with pytest.raises(FlarebaseError) as caught:
        await api.get(PATH, error)
    assert caught.value.code == "HTTP_429"
    assert "[code: 971]" in str(caught.value)
    assert sleeps.waits == []
    await api.aclose()


async def test_server_errors_back_off_until_retries_run_out(fake: FakeCloudflare):
    fake.answer("GET", PATH, Reply(502, b"bad gateway"))
    sleeps = Sleeps()
    api = client(fake.url, sleeps, retries=3)

    with pytest.raises(FlarebaseError, match="HTTP 502 Bad Gateway"):
        await api.get(PATH, error)
    assert len(fake.requests) == 4
    # 0.5 s, 1 s, 2 s, each with jitter down to half
    assert [0.25 <= w <= 0.5 for w in sleeps.waits[:1]] == [True]
    assert 0.5 <= sleeps.waits[1] <= 1.0 and 1.0 <= sleeps.waits[2] <= 2.0
    await api.aclose()


async def test_a_call_that_may_have_happened_is_never_retried(fake: FakeCloudflare):
    fake.answer("POST", PATH, rate_limited("0"), ok(None))
    sleeps = Sleeps()
    api = client(fake.url, sleeps)

    with pytest.raises(FlarebaseError):
        await api.post(PATH, {}, error, idempotent=False)
    assert len(fake.requests) == 1
    assert sleeps.waits == []
    await api.aclose()


async def test_no_answer_is_retried_for_reads_then_reported():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    api = client(f"http://127.0.0.1:{port}/client/v4", sleeps, retries=2, timeout=2)

    with pytest.raises(FlarebaseError, match="no answer from the Cloudflare API") as caught:
        await api.get(PATH, error)
    assert caught.value.code == "HTTP_None"
    assert len(sleeps.waits) == 2
    await api.aclose()


async def test_the_rate_limiter_spaces_requests_over_the_window():
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, 10.0, clock=lambda: now[0], sleep=sleep)
    for at in (0.0, 1.0, 2.0):
        now[0] = at
        await limiter.acquire()
    now[0] = 4.0
    await limiter.acquire()  # the 4th within 10 s waits for the 1st to age out

    assert waits == [6.0]
    assert now[0] == 10.0


async def test_every_request_goes_through_the_limiter(fake: FakeCloudflare):
    fake.answer("GET", PATH, ok(1))
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    api = client(fake.url, Sleeps(), rate_limit=2)
    assert api.limiter is not None and api.limiter.window == 300.0
    api.limiter = RateLimiter(2, api.limiter.window, clock=lambda: now[0], sleep=sleep)

    for _ in range(3):
        await api.get(PATH, error)
    assert waits == [300.0]  # the third request waited for the first to leave the window
    assert len(fake.requests) == 3
    await api.aclose()


async def test_account_and_token_come_from_the_environment(
    fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acc-from-env")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "tok-from-env")
    fake.answer("POST", "/accounts/acc-from-env/d1/database/.*/query", ok([{"results": []}]))

    async with open_env(CONFIG, provider="api", base_url=fake.url) as env:
        await env.DB.prepare("SELECT 1").all()

    assert fake.requests[0].auth == "Bearer tok-from-env"


async def test_missing_credentials_are_reported_when_used(
    fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch
):
    for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "R2_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)

    async with open_env(CONFIG, provider="api", base_url=fake.url) as env:
        with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
            await env.DB.prepare("SELECT 1").all()
        with pytest.raises(ConfigError, match="R2_ACCESS_KEY_ID"):
            await env.MEDIA.head("k")
    async with open_env(CONFIG, provider="api", account_id="a", base_url=fake.url) as env:
        with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
            await env.CACHE.get("k")
    assert fake.requests == []


async def test_durable_objects_are_declared_but_refuse_use(env: Any):
    with pytest.raises(DurableObjectError, match="not reachable through Cloudflare's REST API"):
        env.ROOMS.id_from_name("lobby")


async def test_unknown_options_and_python_hosted_code_are_refused(fake: FakeCloudflare):
    with pytest.raises(ConfigError, match="unknown options colour"):
        async with open_env(CONFIG, provider="api", colour="blue", **provider_options(fake)):
            pass
    with pytest.raises(ConfigError, match="queue_consumers"):
        async with open_env(
            CONFIG, provider="api", queue_consumers={"jobs": print}, **provider_options(fake)
        ):
            pass


async def test_a_d1_binding_without_database_id_is_a_config_error(
    tmp_path: Any, fake: FakeCloudflare
):
    config = tmp_path / "wrangler.toml"
    config.write_text('[[d1_databases]]\nbinding = "DB"\ndatabase_name = "app"\n')

    with pytest.raises(ConfigError, match="no database_id"):
        async with open_env(config, provider="api", **provider_options(fake)):
            pass


async def test_errors_of_the_binding_keep_their_type(env: Any, fake: FakeCloudflare):
    fake.answer("POST", ".*", fail(403, 10000, "Authentication error"))

    with pytest.raises(D1Error, match=r"D1_ERROR: Authentication error \[code: 10000\]"):
        await env.DB.prepare("SELECT 1").all()
