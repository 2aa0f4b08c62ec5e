"""Quotas without Redis: the sliding-window counter, MessageQuota and the per-IP limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flarebase.platform import ConfigError
from flarebase.server import quotas
from flarebase.server.quotas import MessageQuota, Rule, charge, ip_key

from .conftest import Server

T0 = 1_700_000_000 // 60 * 60  # the start of a 60 s window


def charge_at(server: Server, rule: Rule, now: float) -> Any:
    """The Usage, or the Exceeded error."""

    async def attempt() -> Any:
        try:
            return await charge(server.env.DB, rule, now)
        except quotas.Exceeded as e:
            return e

    return server.run(attempt)


def test_counts_up_to_the_limit_and_refused_events_are_not_counted(server: Server) -> None:
    rule = Rule("t:a", 3, 60)
    used = [charge_at(server, rule, T0 + 1).used for _ in range(3)]
    assert used == [1, 2, 3]
    refused = charge_at(server, rule, T0 + 2)
    assert isinstance(refused, quotas.Exceeded)
    # The next window opens at T0 + 60 with these 3 weighted 1 - e/60: room for one more
    # when 3 * (1 - e/60) + 1 <= 3, at e = 20, so 78 s from T0 + 2.
    assert refused.retry_after == 78
    assert charge_at(server, Rule("t:b", 3, 60), T0 + 2).used == 1  # other keys are apart
    assert server.sql("SELECT count FROM quota_counters WHERE key = 't:a'") == [{"count": 3}]


def test_sliding_window_and_retry_after_is_exact(server: Server) -> None:
    rule = Rule("t:slide", 4, 60)
    for _ in range(4):
        charge_at(server, rule, T0 + 50)
    # 15 s into the next window, 3/4 of the previous one still counts: 4 * 0.75 = 3,
    # so one more fits...
    assert charge_at(server, rule, T0 + 75).used == 4
    # ...but not a second: 3 + 1 + 1 > 4, until the weight drops to 2/4 at T0 + 90.
    refused = charge_at(server, rule, T0 + 76)
    assert isinstance(refused, quotas.Exceeded)
    assert refused.retry_after == 14
    assert isinstance(charge_at(server, rule, T0 + 76 + refused.retry_after - 1), quotas.Exceeded)
    assert charge_at(server, rule, T0 + 76 + refused.retry_after).used == 4
    # Two windows later nothing counts any more.
    assert charge_at(server, rule, T0 + 180).used == 1


def test_concurrent_charges_never_pass_the_limit(server: Server) -> None:
    rule = Rule("t:race", 5, 60)

    async def burst() -> list[Any]:
        async def one() -> Any:
            try:
                return await charge(server.env.DB, rule, T0 + 5)
            except quotas.Exceeded as e:
                return e

        return await asyncio.gather(*(one() for _ in range(25)))

    results = server.run(burst)
    assert sum(not isinstance(r, quotas.Exceeded) for r in results) == 5
    assert server.sql("SELECT count FROM quota_counters WHERE key = 't:race'") == [{"count": 5}]


def test_expired_counters_are_cleaned_up(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    charge_at(server, Rule("t:old", 5, 60), T0)
    monkeypatch.setattr(quotas, "CLEANUP_PROBABILITY", 1.0)
    charge_at(server, Rule("t:new", 5, 60), T0 + 600)
    assert [r["key"] for r in server.sql("SELECT key FROM quota_counters")] == ["t:new"]


# -- MessageQuota ---------------------------------------------------------------------------


def chat_client(server: Server, **settings: Any) -> TestClient:
    client = server.client(**settings)

    @client.app.post("/test/chat")  # type: ignore[attr-defined]
    async def chat(quota: MessageQuota) -> dict[str, int]:
        return {"used": quota.used, "remaining": quota.remaining, "limit": quota.limit}

    return client


def test_message_quota_by_user_type(server: Server) -> None:
    guest = chat_client(server, QUOTA_MESSAGES_GUEST=2, QUOTA_MESSAGES_REGULAR=3)
    assert guest.post("/api/auth/guest").status_code == 201
    assert guest.post("/test/chat").json() == {"used": 1, "remaining": 1, "limit": 2}
    assert guest.post("/test/chat").json()["remaining"] == 0
    r = guest.post("/test/chat")
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "quota_exceeded" and body["limit"] == 2 and body["window"] == 86400
    assert "2 messages per day" in body["message"]
    assert int(r.headers["retry-after"]) == body["retry_after"] > 0

    regular = chat_client(server, QUOTA_MESSAGES_GUEST=2, QUOTA_MESSAGES_REGULAR=3)
    server.sign_up(regular, "frank@example.com")
    assert [regular.post("/test/chat").status_code for _ in range(4)] == [200, 200, 200, 429]

    # Each user has their own budget.
    other = chat_client(server, QUOTA_MESSAGES_GUEST=2)
    other.post("/api/auth/guest")
    assert other.post("/test/chat").status_code == 200


def test_message_quota_zero_means_no_limit_and_needs_a_session(server: Server) -> None:
    client = chat_client(server, QUOTA_MESSAGES_GUEST=0)
    client.post("/api/auth/guest")
    assert all(client.post("/test/chat").status_code == 200 for _ in range(30))
    assert server.sql("SELECT * FROM quota_counters WHERE key LIKE 'msg:%'") == []
    signed_out = chat_client(server)
    assert signed_out.post("/test/chat").status_code == 401


def test_message_quota_window_is_configurable(server: Server) -> None:
    client = chat_client(server, QUOTA_MESSAGES_GUEST=1, QUOTA_MESSAGES_WINDOW=3600)
    client.post("/api/auth/guest")
    client.post("/test/chat")
    r = client.post("/test/chat")
    assert r.status_code == 429 and r.json()["window"] == 3600
    assert 0 < r.json()["retry_after"] <= 2 * 3600
    assert "maximum of 1 message per hour" in r.json()["message"]


# -- requests per IP ------------------------------------------------------------------------


def test_ip_limit_is_off_by_default(server: Server) -> None:
    client = server.client()
    assert all(client.get("/api/health").status_code == 200 for _ in range(50))
    assert server.sql("SELECT * FROM quota_counters") == []


def test_ip_limit_applies_to_api_paths_per_address(server: Server) -> None:
    client = server.client(
        QUOTA_IP_REQUESTS=3, QUOTA_IP_WINDOW=60, CLIENT_IP_HEADER="X-Forwarded-For"
    )
    one = {"X-Forwarded-For": "203.0.113.7"}
    assert [client.get("/api/health", headers=one).status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/health", headers=one)
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited" and r.json()["limit"] == 3
    assert int(r.headers["retry-after"]) == r.json()["retry_after"] > 0
    # Every /api/ route counts, unknown ones too; pages outside /api/ do not.
    assert client.get("/api/nope", headers=one).status_code == 429
    assert client.get("/openapi.json", headers=one).status_code == 200
    # Another address has its own budget; an IPv6 client is counted by its /64.
    assert client.get("/api/health", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    v6 = [{"X-Forwarded-For": f"2001:db8:1:2::{n}"} for n in range(1, 5)]
    assert [client.get("/api/health", headers=h).status_code for h in v6] == [200, 200, 200, 429]


def test_ip_key() -> None:
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert ip_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert ip_key("192.0.2.1") == "192.0.2.1"
    assert ip_key("testclient") == "testclient"


@pytest.mark.parametrize(
    "bad",
    [
        {"QUOTA_MESSAGES_GUEST": -1},
        {"QUOTA_MESSAGES_REGULAR": "lots"},
        {"QUOTA_MESSAGES_WINDOW": 0},
        {"QUOTA_IP_REQUESTS": -5},
        {"QUOTA_IP_WINDOW": "x"},
    ],
)
def test_invalid_quota_settings_name_the_setting(server: Server, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        server.settings(**bad)
    assert next(iter(bad)) in str(raised.value)
