"""Queues conformance: producers and their limits, push consumers (ack/retry, batching,
delays, dead-letter queues), pull consumers with visibility timeouts, the inspection
functions, and SIGKILL in the middle of sending and of a batch.

Producer and pull tests hold on every provider; push consumers are Python functions,
hosted by the local provider.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flarebase.platform import ConfigError, Env, QueueError, open_env
from flarebase.platform.local.queues import list_queues, peek, purge, retry_dlq
from flarebase.platform.queues import (
    BatchOutcome,
    Message,
    MessageBatch,
    MessageSendRequest,
    QueueLimitExceeded,
)

pytestmark = pytest.mark.asyncio
CONFIG = Path(__file__).with_name("queues_wrangler.toml")


@asynccontextmanager
async def queue_env(
    provider: str, state: Path, consumers: dict[str, Any] | None = None, local: bool = True
) -> AsyncIterator[Env]:
    """`local`: the test needs the local provider (push consumers written in Python, pull
    operations, or the local inspection functions)."""
    options: dict[str, Any] = {}
    if provider != "local" and (consumers or local):
        pytest.skip("push consumers, pull and inspection of the local provider")
    if consumers:
        options["queue_consumers"] = consumers
    async with open_env(CONFIG, provider=provider, state_dir=state, **options) as env:
        yield env


class Recorder:
    """A consumer that records what it got and decides per message with `decide`."""

    def __init__(self, decide: Callable[[Message], None] | None = None) -> None:
        self.batches: list[list[tuple[Any, int, str]]] = []
        self.times: list[float] = []
        self.decide = decide

    async def __call__(self, batch: MessageBatch, env: Env) -> None:
        self.batches.append([(m.body, m.attempts, m.id) for m in batch.messages])
        self.times.append(time.monotonic())
        for message in batch.messages:
            if self.decide is not None:
                self.decide(message)

    @property
    def bodies(self) -> list[Any]:
        return [body for batch in self.batches for body, _, _ in batch]


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def stored(state: Path) -> dict[str, int]:
    return {q.name: q.messages for q in list_queues(state)}


# -- producers and limits -------------------------------------------------------------------------
async def test_send_and_consume_every_content_type(provider: str, tmp_path: Path) -> None:
    got: list[Message] = []

    async def handler(batch: MessageBatch, env: Env) -> None:
        assert batch.queue == "jobs"
        got.extend(batch.messages)

    async with queue_env(provider, tmp_path, {"jobs": handler}) as env:
        before = datetime.now(UTC).replace(microsecond=0)
        await env.JOBS.send({"n": 1, "list": [1, "two"]})
        await env.JOBS.send("plain text", content_type="text")
        await env.JOBS.send(b"\x00\xff", content_type="bytes")
        await env.JOBS.send({"a set"}, content_type="v8")
        await wait_for(lambda: len(got) == 4)
        await asyncio.sleep(0.05)
    assert [m.body for m in got] == [
        {"n": 1, "list": [1, "two"]},
        "plain text",
        b"\x00\xff",
        {"a set"},
    ]
    assert [m.attempts for m in got] == [1, 1, 1, 1]
    assert len({m.id for m in got}) == 4 and all(len(m.id) == 32 for m in got)
    assert all(before <= m.timestamp <= datetime.now(UTC) for m in got)
    assert stored(tmp_path).get("jobs", 0) == 0  # the handler returned: all acknowledged


async def test_message_size_limit(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path, local=False) as env:
        # 128 KB = 128,000 bytes, of which ~100 are the message's metadata
        await env.JOBS.send(b"x" * 127_900, content_type="bytes")
        with pytest.raises(QueueError, match="exceeds limit of 128000"):
            await env.JOBS.send(b"x" * 127_901, content_type="bytes")
        with pytest.raises(QueueError, match="128000"):
            await env.JOBS.send_batch([{"body": "x" * 128_000, "content_type": "text"}])
    if provider == "local":
        assert stored(tmp_path) == {"jobs": 1}


async def test_batch_count_limit(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path, local=False) as env:
        with pytest.raises(QueueError, match="batch message count of 101"):
            await env.JOBS.send_batch([{"body": i} for i in range(101)])
        with pytest.raises(QueueError, match="at least one"):
            await env.JOBS.send_batch([])
        await env.JOBS.send_batch([{"body": i} for i in range(100)])
    if provider == "local":
        assert stored(tmp_path) == {"jobs": 100}  # the rejected batch stored nothing


async def test_batch_size_limit(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path, local=False) as env:
        # 256 KB = 256,000 bytes, each message's ~100 bytes of metadata included
        with pytest.raises(QueueError, match="exceeds limit of 256000"):
            await env.JOBS.send_batch(
                [MessageSendRequest(b"x" * 90_000, "bytes") for _ in range(3)]
            )
        await env.JOBS.send_batch([MessageSendRequest(b"x" * 85_000, "bytes") for _ in range(3)])
    if provider == "local":
        assert stored(tmp_path) == {"jobs": 3}


async def test_invalid_bodies_and_content_types(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path, local=False) as env:
        with pytest.raises(QueueError, match="JSON"):
            await env.JOBS.send(object())
        with pytest.raises(QueueError, match="must be one of"):
            await env.JOBS.send("x", content_type="xml")
        with pytest.raises(QueueError, match="'text' needs a str"):
            await env.JOBS.send(b"x", content_type="text")
    if provider == "local":
        assert stored(tmp_path) == {}


async def test_delay_limits(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path, local=False) as env:
        with pytest.raises(QueueError, match="86400"):
            await env.JOBS.send(1, delay_seconds=86_401)
        with pytest.raises(QueueError, match="negative"):
            await env.JOBS.send(1, delay_seconds=-1)
        with pytest.raises(QueueError, match="86400"):
            await env.JOBS.send_batch([{"body": 1}], delay_seconds=86_401)
        await env.JOBS.send(1, delay_seconds=86_400)
    if provider == "local":
        [message] = peek(tmp_path, "jobs")
        assert 86_399 < (message.visible_at - message.timestamp).total_seconds() <= 86_400


async def test_delayed_messages_wait(provider: str, tmp_path: Path) -> None:
    got = Recorder()
    async with queue_env(provider, tmp_path, {"later": got}) as env:
        start = time.monotonic()
        await env.LATER.send("default delay")  # the producer's delivery_delay = 1
        await env.LATER.send("no delay", delay_seconds=0)
        await wait_for(lambda: len(got.bodies) == 2)
        assert got.bodies == ["no delay", "default delay"]
        assert got.times[0] - start < 0.9
        assert got.times[-1] - start >= 0.95


# -- push consumers --------------------------------------------------------------------------------
async def test_explicit_ack_and_retry(provider: str, tmp_path: Path) -> None:
    def decide(message: Message) -> None:
        if message.body % 2 and message.attempts == 1:
            message.retry()
            message.ack()  # no effect: the first decision wins
        else:
            message.ack()

    got = Recorder(decide)
    async with queue_env(provider, tmp_path, {"jobs": got}) as env:
        await env.JOBS.send_batch([{"body": i} for i in range(6)])
        await wait_for(lambda: len(got.bodies) == 9)
    first = {body: attempts for body, attempts, _ in got.batches[0]}
    redelivered = sorted((b, a) for batch in got.batches[1:] for b, a, _ in batch)
    assert first == dict.fromkeys(range(6), 1)
    assert redelivered == [(1, 2), (3, 2), (5, 2)]
    assert stored(tmp_path).get("jobs", 0) == 0


async def test_handler_exception_retries_only_unacked(provider: str, tmp_path: Path) -> None:
    calls = 0

    async def handler(batch: MessageBatch, env: Env) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            batch.messages[0].ack()
            raise RuntimeError("crash after acking the first")
        seen.extend((m.body, m.attempts) for m in batch.messages)

    seen: list[tuple[Any, int]] = []
    async with queue_env(provider, tmp_path, {"jobs": handler}) as env:
        await env.JOBS.send_batch([{"body": i} for i in range(3)])
        await wait_for(lambda: len(seen) == 2)
    assert seen == [(1, 2), (2, 2)]


async def test_ack_all_and_retry_all(provider: str, tmp_path: Path) -> None:
    calls: list[list[tuple[Any, int]]] = []

    async def handler(batch: MessageBatch, env: Env) -> None:
        calls.append([(m.body, m.attempts) for m in batch.messages])
        if len(calls) == 1:
            batch.retry_all()
            batch.ack_all()  # no effect after retry_all
            batch.messages[0].ack()  # no effect either
        else:
            batch.ack_all()
            raise RuntimeError("acked before raising: nothing is retried")

    async with queue_env(provider, tmp_path, {"jobs": handler}) as env:
        await env.JOBS.send_batch([{"body": "a"}, {"body": "b"}])
        await wait_for(lambda: len(calls) == 2)
        await asyncio.sleep(0.2)
    assert calls == [[("a", 1), ("b", 1)], [("a", 2), ("b", 2)]]
    assert stored(tmp_path).get("jobs", 0) == 0


async def test_retry_delay(provider: str, tmp_path: Path) -> None:
    got = Recorder(lambda m: m.retry(delay_seconds=1) if m.attempts == 1 else m.ack())
    async with queue_env(provider, tmp_path, {"jobs": got}) as env:
        await env.JOBS.send("later")
        await wait_for(lambda: len(got.batches) == 2)
    assert got.times[1] - got.times[0] >= 0.95
    message = Message("id", datetime.now(UTC), 1, 1, BatchOutcome())
    with pytest.raises(QueueLimitExceeded, match="86400"):
        message.retry(delay_seconds=86_401)


async def test_max_retries_then_dead_letter_queue(provider: str, tmp_path: Path) -> None:
    attempts: list[int] = []

    async def always_fails(batch: MessageBatch, env: Env) -> None:
        attempts.extend(m.attempts for m in batch.messages)
        raise RuntimeError("never works")

    dead = Recorder()
    async with queue_env(provider, tmp_path, {"flaky": always_fails, "flaky-dlq": dead}) as env:
        await env.FLAKY.send({"job": 1})
        await wait_for(lambda: dead.bodies)
    assert attempts == [1, 2, 3]  # max_retries = 2: delivered 3 times
    [[(body, dead_attempts, _)]] = dead.batches
    assert body == {"job": 1} and dead_attempts == 1


async def test_max_retries_without_dead_letter_queue_drops(provider: str, tmp_path: Path) -> None:
    got = Recorder(lambda m: m.retry())
    async with queue_env(provider, tmp_path, {"droppy": got}) as env:
        await env.DROPPY.send("doomed")
        await wait_for(lambda: len(got.bodies) == 2)
        await asyncio.sleep(0.2)
    assert [a for batch in got.batches for _, a, _ in batch] == [1, 2]  # max_retries = 1
    assert stored(tmp_path).get("droppy", 0) == 0


async def test_batch_size_and_timeout(provider: str, tmp_path: Path) -> None:
    got = Recorder()
    async with queue_env(provider, tmp_path, {"batched": got}) as env:
        start = time.monotonic()
        await env.BATCHED.send_batch([{"body": i} for i in range(10)])
        await wait_for(lambda: len(got.bodies) == 10)
    assert [len(b) for b in got.batches] == [4, 4, 2]  # max_batch_size = 4
    assert got.times[1] - start < 0.5  # full batches go at once
    assert got.times[2] - start >= 0.95  # the partial one waits max_batch_timeout = 1 s
    assert got.bodies == list(range(10))


async def test_consumer_registration_is_checked(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("local registration")

    async def handler(batch: MessageBatch) -> None:
        return None

    with pytest.raises(ConfigError, match=r"no \[\[queues.consumers\]\]"):
        async with open_env(CONFIG, state_dir=tmp_path, queue_consumers={"nope": handler}):
            pass
    with pytest.raises(ConfigError, match="pull consumer"):
        async with open_env(CONFIG, state_dir=tmp_path, queue_consumers={"pulled": handler}):
            pass


# -- pull consumers ------------------------------------------------------------------------------
async def test_pull_with_visibility_timeout(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path) as env:
        await env.PULLED.send_batch([{"body": i} for i in range(3)])
        first = await env.PULLED.pull(batch_size=2, visibility_timeout_ms=300)
        assert [(m.body, m.attempts) for m in first] == [(0, 1), (1, 1)]
        [two] = await env.PULLED.pull(batch_size=10, visibility_timeout_ms=300)
        assert two.body == 2  # the two leased messages are invisible
        assert await env.PULLED.pull() == []
        retried = await env.PULLED.ack(retries=[{"lease_id": two.lease_id, "delay_seconds": 0}])
        assert (retried.ack_count, retried.retry_count) == (0, 1)
        [two] = await env.PULLED.pull(visibility_timeout_ms=30_000)
        assert (two.body, two.attempts) == (2, 2)

        await asyncio.sleep(0.35)  # the first leases ran out: visible again
        again = await env.PULLED.pull(batch_size=10, visibility_timeout_ms=30_000)
        assert [(m.body, m.attempts) for m in again] == [(0, 2), (1, 2)]
        stale = await env.PULLED.ack(acks=[first[0].lease_id])
        assert stale.ack_count == 0 and stale.warnings  # that lease expired
        result = await env.PULLED.ack(
            acks=[{"lease_id": again[0].lease_id}, again[1].lease_id],
            retries=[{"lease_id": two.lease_id}],
        )
        assert (result.ack_count, result.retry_count, result.warnings) == (2, 1, [])
        assert await env.PULLED.pull() == []
    # max_retries = 1: retried after its second delivery, message 2 is dead-lettered
    assert stored(tmp_path) == {"pulled-dlq": 1}


async def test_pull_expired_past_max_retries_goes_to_dead_letter_queue(
    provider: str, tmp_path: Path
) -> None:
    async with queue_env(provider, tmp_path) as env:
        await env.PULLED.send("poison")
        for _ in range(2):  # max_retries = 1: two deliveries
            [message] = await env.PULLED.pull(visibility_timeout_ms=0)
        assert message.attempts == 2
        assert await env.PULLED.pull(visibility_timeout_ms=0) == []
    assert stored(tmp_path) == {"pulled-dlq": 1}
    [dead] = peek(tmp_path, "pulled-dlq")
    assert (dead.id, dead.body) == (message.id, "poison")


async def test_pull_limits_and_consumer_type(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path) as env:
        with pytest.raises(QueueLimitExceeded, match="batch_size"):
            await env.PULLED.pull(batch_size=101)
        with pytest.raises(QueueLimitExceeded, match="12 hours"):
            await env.PULLED.pull(visibility_timeout_ms=12 * 3600 * 1000 + 1)
        with pytest.raises(QueueError, match="http_pull"):
            await env.JOBS.pull()
        with pytest.raises(QueueError, match="lease id"):
            await env.PULLED.ack(acks=["nonsense"])


# -- inspection -----------------------------------------------------------------------------------
async def test_list_peek_purge_retry_dlq(provider: str, tmp_path: Path) -> None:
    async with queue_env(provider, tmp_path) as env:
        await env.JOBS.send_batch([{"body": i} for i in range(3)])
        await env.JOBS.send("delayed", delay_seconds=60)
        await env.PULLED.send("leased")
        await env.PULLED.pull()
    infos = {q.name: q for q in list_queues(tmp_path, ["later"])}
    assert (infos["jobs"].messages, infos["jobs"].ready, infos["jobs"].delayed) == (4, 3, 1)
    assert (infos["pulled"].leased, infos["pulled"].ready) == (1, 0)
    assert infos["later"].messages == 0
    assert [m.body for m in peek(tmp_path, "jobs", limit=2)] == [0, 1]
    assert retry_dlq(tmp_path, "jobs", into="flaky") == 4
    assert [m.body for m in peek(tmp_path, "flaky")] == [0, 1, 2, "delayed"]
    assert purge(tmp_path, "flaky") == 4
    assert stored(tmp_path) == {"pulled": 1}


# -- crashes --------------------------------------------------------------------------------------
SENDER = """
import asyncio, sys
from flarebase.platform import open_env

async def main():
    async with open_env(sys.argv[1], state_dir=sys.argv[2]) as env:
        for i in range(100_000):
            await env.JOBS.send(i)
            print(i, flush=True)

asyncio.run(main())
"""


async def test_sent_messages_survive_sigkill(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("the crash is of the local provider's process")
    script = tmp_path / "sender.py"
    script.write_text(textwrap.dedent(SENDER))
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, str(script), str(CONFIG), str(state)], stdout=subprocess.PIPE, text=True
    )
    acknowledged = []
    assert child.stdout is not None
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) >= 300:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = {m.body for m in peek(state, "jobs", limit=1_000_000)}
    assert set(acknowledged) <= kept  # every send that returned is on disk


CONSUMER = """
import asyncio, json, os, sys
from pathlib import Path
from flarebase.platform import open_env

config, state, log, marker = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
batches = 0

async def handle(batch, env):
    global batches
    batches += 1
    with open(log, "a") as f:
        for i, message in enumerate(batch.messages):
            record = {"body": message.body, "attempts": message.attempts, "batch": batches}
            f.write(json.dumps(record) + "\\n")
            f.flush()
            os.fsync(f.fileno())
            if batches == 3 and i == 4:
                marker.write_text("mid-batch")
                await asyncio.sleep(60)  # killed here, half-way through batch 3

async def main():
    async with open_env(config, state_dir=state, queue_consumers={"jobs": handle}):
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_batch_killed_mid_way_is_redelivered(provider: str, tmp_path: Path) -> None:
    if provider != "local":
        pytest.skip("the crash is of the local provider's process")
    state, log, marker = tmp_path / "state", tmp_path / "log.jsonl", tmp_path / "marker"
    async with queue_env(provider, state) as env:
        for start in range(0, 60, 20):
            await env.JOBS.send_batch([{"body": i} for i in range(start, start + 20)])
    script = tmp_path / "consumer.py"
    script.write_text(textwrap.dedent(CONSUMER))
    child = subprocess.Popen(
        [sys.executable, str(script), str(CONFIG), str(state), str(log), str(marker)]
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, "consumer exited early"
            assert time.monotonic() < deadline, "consumer never reached batch 3"
            await asyncio.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    before = [json.loads(line) for line in log.read_text().splitlines()]
    done_before = {r["body"] for r in before if r["batch"] < 3}  # settled batches
    killed_batch = set(range(20, 30))  # batch 3 (max_batch_size = 10)
    assert len(done_before) == 20 and {r["body"] for r in before if r["batch"] == 3} < killed_batch

    got = Recorder()
    async with queue_env(provider, state, {"jobs": got}) as env:
        await wait_for(lambda: len(got.bodies) >= 40)
        await asyncio.sleep(0.2)
    after = {body: attempts for batch in got.batches for body, attempts, _ in batch}
    assert done_before | set(after) == set(range(60))  # nothing lost
    assert not done_before & set(after)  # acknowledged batches were not redelivered
    assert {after[b] for b in killed_batch} == {2}  # the killed batch came again
    assert {after[b] for b in set(after) - killed_batch} == {1}
    assert stored(state).get("jobs", 0) == 0
