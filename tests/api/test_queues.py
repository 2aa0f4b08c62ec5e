"""Queue producers over the REST API, against a recording fake of api.cloudflare.com
(no real account is reachable here): the queue id lookup, exact requests, limits and
errors.

Shapes are those of Cloudflare's API reference: "List Queues" (`GET .../queues`),
"Push Message" (`POST .../queues/{id}/messages`) and "Push Message Batch"
(`POST .../queues/{id}/messages/batch`), content types "json" and "text".
"""

from __future__ import annotations

import pytest

from flarebase.platform import Env, QueueError
from flarebase.platform.queues import MessageSendRequest, QueueLimitExceeded

from .conftest import api
from .fake_cloudflare import FakeCloudflare, fail, ok

QUEUES = [
    {"queue_id": "q-jobs", "queue_name": "jobs"},
    {"queue_id": "q-later", "queue_name": "later"},
]


@pytest.fixture
def queues(fake: FakeCloudflare) -> FakeCloudflare:
    fake.answer("GET", api("/queues"), ok(QUEUES))
    fake.answer("POST", api("/queues/q-[a-z]+/messages(/batch)?"), ok(None))
    return fake


async def test_send_looks_the_queue_up_once_and_pushes(env: Env, queues: FakeCloudflare):
    await env.JOBS.send({"task": "resize", "id": 7})
    await env.JOBS.send("hello", content_type="text", delay_seconds=10)

    listing, first, second = queues.requests
    assert (listing.method, listing.path) == ("GET", api("/queues"))
    assert first.path == second.path == api("/queues/q-jobs/messages")
    assert first.json == {"content_type": "json", "body": {"task": "resize", "id": 7}}
    assert second.json == {"content_type": "text", "body": "hello", "delay_seconds": 10}


async def test_the_producers_delivery_delay_is_the_default(env: Env, queues: FakeCloudflare):
    await env.LATER.send([1, 2])

    assert queues.requests[-1].json == {"content_type": "json", "body": [1, 2], "delay_seconds": 30}


async def test_send_batch_is_one_request(env: Env, queues: FakeCloudflare):
    await env.JOBS.send_batch(
        [{"body": {"n": 1}}, MessageSendRequest("two", "text", delay_seconds=5)],
        delay_seconds=60,
    )

    batch = queues.requests[-1]
    assert batch.path == api("/queues/q-jobs/messages/batch")
    assert batch.json == {
        "messages": [
            {"content_type": "json", "body": {"n": 1}},
            {"content_type": "text", "body": "two", "delay_seconds": 5},
        ],
        "delay_seconds": 60,
    }


async def test_limits_are_checked_before_sending(env: Env, queues: FakeCloudflare):
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.send("x" * 128_000, content_type="text")
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.send_batch([{"body": i} for i in range(101)])
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.send(1, delay_seconds=86_401)
    assert queues.requests == []


@pytest.mark.parametrize(("body", "content_type"), [(b"raw", "bytes"), ({"a": 1}, "v8")])
async def test_content_types_the_api_cannot_carry_are_refused(
    env: Env, queues: FakeCloudflare, body: object, content_type: str
):
    with pytest.raises(QueueError, match="'json' and 'text' only"):
        await env.JOBS.send(body, content_type=content_type)
    assert queues.requests == []


async def test_a_failed_send_is_not_retried(env: Env, fake: FakeCloudflare):
    fake.answer("GET", api("/queues"), ok(QUEUES))
    limited = fail(429, 971, "Please wait and consider throttling your request speed")
    limited.headers["retry-after"] = "0"
    fake.answer("POST", api("/queues/q-jobs/messages"), limited, ok(None))

    with pytest.raises(QueueError) as caught:
        await env.JOBS.send({"n": 1})

    assert "Please wait and consider throttling your request speed [code: 971]" in str(caught.value)
    assert [r.method for r in fake.requests] == ["GET", "POST"]


async def test_an_unknown_queue_name_says_how_to_create_it(env: Env, fake: FakeCloudflare):
    fake.answer("GET", api("/queues"), ok([{"queue_id": "q-other", "queue_name": "other"}]))

    with pytest.raises(QueueError, match="wrangler queues create jobs"):
        await env.JOBS.send(1)


# Pull consumers: "Pull Messages" and "Acknowledge + Retry Messages" of the API reference,
# with a response shaped like its example (metadata carries "CF-Content-Type").
def pulled(id: str, body: str, content_type: str, lease: str) -> dict[str, object]:
    return {
        "id": id,
        "body": body,
        "attempts": 1,
        "lease_id": lease,
        "timestamp_ms": 1710950954154,
        "metadata": {"CF-Content-Type": content_type, "CF-sourceMessageSource": "api"},
    }


async def test_pull_leases_and_decodes_by_content_type(env: Env, queues: FakeCloudflare):
    messages = [
        pulled("m1", '{"task": "resize"}', "json", "L1"),
        pulled("m2", "hello", "text", "L2"),
        pulled("m3", "AAEC", "bytes", "L3"),
    ]
    queues.answer("POST", api("/queues/q-jobs/messages/pull"), ok({"messages": messages}))

    got = await env.JOBS.pull(batch_size=10, visibility_timeout_ms=5_000)

    assert queues.requests[-1].json == {"batch_size": 10, "visibility_timeout_ms": 5_000}
    assert [(m.id, m.body, m.content_type, m.lease_id) for m in got] == [
        ("m1", {"task": "resize"}, "json", "L1"),
        ("m2", "hello", "text", "L2"),
        ("m3", b"\x00\x01\x02", "bytes", "L3"),
    ]
    assert got[0].timestamp.year == 2024 and got[0].attempts == 1


async def test_ack_and_retry_by_lease(env: Env, queues: FakeCloudflare):
    answer = {"ackCount": 1, "retryCount": 1, "warnings": []}
    queues.answer("POST", api("/queues/q-jobs/messages/ack"), ok(answer))

    result = await env.JOBS.ack(acks=["L1"], retries=[{"lease_id": "L2", "delay_seconds": 30}])

    assert queues.requests[-1].json == {
        "acks": [{"lease_id": "L1"}],
        "retries": [{"lease_id": "L2", "delay_seconds": 30}],
    }
    assert (result.ack_count, result.retry_count) == (1, 1)


async def test_pull_limits_are_checked_before_asking(env: Env, queues: FakeCloudflare):
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.pull(batch_size=101)
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.pull(visibility_timeout_ms=12 * 3600 * 1000 + 1)
    with pytest.raises(QueueError, match="lease id"):
        await env.JOBS.ack(acks=[7])  # type: ignore[list-item]
    with pytest.raises(QueueLimitExceeded):
        await env.JOBS.ack(retries=[{"lease_id": "L", "delay_seconds": 86_401}])
    assert queues.requests == []


async def test_a_pull_refused_by_cloudflare_names_the_reason(env: Env, fake: FakeCloudflare):
    fake.answer("GET", api("/queues"), ok(QUEUES))
    refused = fail(400, 11000, "queue does not have an http_pull consumer")
    fake.answer("POST", api("/queues/q-jobs/messages/pull"), refused)

    with pytest.raises(QueueError, match=r"Queue pull failed: .*http_pull consumer"):
        await env.JOBS.pull()
