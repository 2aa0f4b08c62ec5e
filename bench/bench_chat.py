"""Chat streams over HTTP: flarebase (`flarebase dev`: FastAPI, D1, the chat's Durable
Object committing every chunk to SQLite) beside the way vercel/chatbot does it, the npm
`resumable-stream` package on a real redis-server (tests/js/bench_resumable_peer.mjs:
Node, the AI SDK's createUIMessageStream, chunks buffered in the producer's memory,
resume over Redis pub/sub). Both serve the same echo answer (the same chunks) to the
same Python load generator, each server in its own process.

Measured: time to first chunk and chunks/s with 1, 10 and 100 concurrent streams;
resume latency (request to first replayed chunk, on a stream still being produced);
a page of chat history with 10,000 chats for one user (flarebase: D1; the peer: a
Redis sorted set and hashes); and whether the buffer survives a SIGKILL of the server.

Target (issue 5): flarebase's throughput and resume latency at least equal to the
peer's while its buffer survives a restart (the peer's does not).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from flarebase.platform import open_env

from common import QUICK, free_port, redis_server, scratch_dir

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "tests" / "js"
MIGRATIONS = ROOT / "src" / "flarebase" / "server" / "migrations"
# Chunks per answer: WORDS + 6, in quick runs too (the answer length the target is
# stated for); FLAREBASE_BENCH_CHAT_WORDS=100 measures shorter answers.
WORDS = int(os.environ.get("FLAREBASE_BENCH_CHAT_WORDS", "200"))
CONCURRENCY = (1, 10, 100)
RUNS = 2 if QUICK else 3
RESUME_ROUNDS = 2 if QUICK else 4
HISTORY = 10_000
SLOW_DELAY_MS = 5
PASSWORD = "bench password 123"

WRANGLER = f"""
name = "bench-chat"
[vars]
AUTH_SECRET = "bench-secret-0123456789abcdefghijkl"
AUTH_BCRYPT_ROUNDS = 4
QUOTA_MESSAGES_REGULAR = 0
CHAT_MODELS = '[{{"id": "echo-slow", "provider": "echo", "delay_ms": {SLOW_DELAY_MS}}}]'

[[d1_databases]]
binding = "DB"
database_name = "bench"
database_id = "local"
migrations_dir = "{MIGRATIONS.as_posix()}"

[[kv_namespaces]]
binding = "KV"
id = "bench-kv"

[[r2_buckets]]
binding = "BUCKET"
bucket_name = "bench"

[[durable_objects.bindings]]
name = "CHAT_STREAMS"
class_name = "ChatStream"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["ChatStream"]
"""


# -- the two servers -----------------------------------------------------------------------
def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{what} exited: {err[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


@contextmanager
def flarebase_server(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-c", "from flarebase.cli import main; main()", "dev"]
    command += ["--config", str(folder / "wrangler.toml"), "--state-dir", str(folder / "state")]
    command += ["--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/health", proc, "flarebase dev")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


@contextmanager
def peer_server(redis_port: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}", "PORT": str(port)}
    proc = subprocess.Popen(
        ["node", str(JS / "bench_resumable_peer.mjs")],
        cwd=JS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/history", proc, "the resumable-stream peer")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


# -- load ----------------------------------------------------------------------------------
def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def chat_body(text: str, chat_id: str | None = None, **extra: Any) -> dict[str, Any]:
    message = {"id": uuid.uuid4().hex, "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id or uuid.uuid4().hex, "messages": [message], **extra}


async def read_events(response: httpx.Response, until: int | None = None) -> tuple[float, int]:
    """(seconds to the first event, events) read from an SSE response ([DONE] excluded)."""
    started = time.perf_counter()
    first, count, tail = 0.0, 0, b""
    async for piece in response.aiter_raw():
        data = tail + piece
        n = data.count(b"\n\n")
        if n and not count:
            first = time.perf_counter() - started
        count += n
        tail = data[data.rfind(b"\n\n") + 2 :] if n else data
        if until is not None and count >= until:
            break
    return first, count - (1 if until is None else 0)


async def one_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> tuple[float, int]:
    started = time.perf_counter()
    async with client.stream("POST", url, json=body) as r:
        assert r.status_code == 200, await r.aread()
        request_time = time.perf_counter() - started
        first, count = await read_events(r)
    return request_time + first, count


async def load(
    base: str, headers: dict[str, str], concurrency: int, existing: bool
) -> tuple[float, float]:
    """(median time to first chunk, chunks/s over all streams) for `concurrency` streams,
    each the first message of a new chat, or (`existing`) the second of a chat."""
    limits = httpx.Limits(max_connections=concurrency + 10)
    async with httpx.AsyncClient(headers=headers, timeout=120, limits=limits) as client:
        text = words(WORDS)
        url = f"{base}/api/chat"
        chats = [uuid.uuid4().hex for _ in range(concurrency)]
        if existing:  # (not timed)
            await asyncio.gather(*(one_stream(client, url, chat_body(text, c)) for c in chats))
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, chat_body(text, c)) for c in chats)
        )
        elapsed = time.perf_counter() - started
    assert all(count == WORDS + 6 for _, count in results), results[:3]
    return statistics.median(t for t, _ in results), sum(c for _, c in results) / elapsed


async def resume_latencies(
    base: str, headers: dict[str, str], body_extra: dict[str, Any]
) -> list[float]:
    """Seconds from a resume request to its first replayed chunk, twice on each of a few
    streams still being produced (answers of WORDS chunks, SLOW_DELAY_MS apart)."""
    times = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        for _ in range(3 if QUICK else 6):
            body = chat_body(words(WORDS), **body_extra)
            async with client.stream("POST", f"{base}/api/chat", json=body) as r:
                await read_events(r, until=20)  # the answer is under way
                for _ in range(2):
                    started = time.perf_counter()
                    async with client.stream(
                        "GET", f"{base}/api/chat/{body['id']}/stream"
                    ) as again:
                        assert again.status_code == 200, again.status_code
                        await read_events(again, until=1)
                    times.append(time.perf_counter() - started)
    return times


def history_pages(base: str, headers: dict[str, str]) -> tuple[float, float]:
    """(median seconds for the first page of 50, seconds to walk all pages of 100)."""
    with httpx.Client(headers=headers, timeout=60) as client:
        firsts = []
        for _ in range(30):
            started = time.perf_counter()
            page = client.get(f"{base}/api/history?limit=50").json()
            firsts.append(time.perf_counter() - started)
            assert len(page["chats"]) == 50 and page["hasMore"]
        started = time.perf_counter()
        seen, cursor = 0, None
        while True:
            query = "limit=100" + (f"&ending_before={cursor}" if cursor else "")
            page = client.get(f"{base}/api/history?{query}").json()
            seen += len(page["chats"])
            if not page["hasMore"]:
                break
            cursor = page["chats"][-1]["id"]
        walk = time.perf_counter() - started
    assert seen >= HISTORY, seen
    return statistics.median(firsts), walk


# -- seeding -------------------------------------------------------------------------------
async def seed_d1(folder: Path, user_id: str) -> None:
    async with open_env(folder / "wrangler.toml", state_dir=folder / "state") as env:
        db = env.DB
        statements = []
        start = datetime(2024, 1, 1, tzinfo=UTC)
        for i in range(HISTORY):
            at = (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            statements.append(
                db.prepare(
                    "INSERT INTO chats (id, user_id, title, visibility, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'private', ?, ?)"
                ).bind(f"seed-{i:05d}", user_id, f"Chat number {i}", at, at)
            )
        for i in range(0, len(statements), 500):
            await db.batch(statements[i : i + 500])


def seed_redis(port: int) -> None:
    client = redis.Redis(port=port)
    pipe = client.pipeline(transaction=False)
    for i in range(HISTORY):
        chat_id = f"seed-{i:05d}"
        pipe.zadd("user:bench:chats", {chat_id: i})
        pipe.hset(
            f"chat:{chat_id}",
            mapping={
                "id": chat_id,
                "title": f"Chat number {i}",
                "userId": "bench",
                "visibility": "private",
                "createdAt": str(i),
            },
        )
    pipe.execute()
    client.close()


# -- restart -------------------------------------------------------------------------------
async def start_and_kill(
    base: str, headers: dict[str, str], proc: Any, body: dict[str, Any]
) -> int:
    """Start an answer, read 20 chunks, SIGKILL the server; the chunks seen."""
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as client,
        client.stream("POST", f"{base}/api/chat", json=body) as r,
    ):
        _, seen = await read_events(r, until=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return seen


def resume_after_restart(base: str, headers: dict[str, str], chat_id: str) -> str:
    r = httpx.get(f"{base}/api/chat/{chat_id}/stream", headers=headers, timeout=30)
    if r.status_code != 200:
        return f"HTTP {r.status_code}" + (f" ({r.text.splitlines()[0][:60]})" if r.text else "")
    events = [b for b in r.text.split("\n\n") if b.strip()]
    last = json.loads(events[-2].split("data: ", 1)[1])
    return f"{len(events) - 1} chunks replayed, then {last['type']}"


# -- main ----------------------------------------------------------------------------------
def line(name: str, ours: float, peer: float, unit: str, higher_is_better: bool) -> None:
    ratio = ours / peer if higher_is_better else peer / ours
    print(f"{name}: {ours:,.1f} {unit} vs resumable-stream {peer:,.1f} {unit} = {ratio:.2f}x")


async def main() -> None:
    folder = scratch_dir()
    (folder / "wrangler.toml").write_text(WRANGLER)
    ours_port, peer_port = free_port(), free_port()
    ours, peer = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{peer_port}"
    results: dict[str, Any] = {}
    with redis_server() as redis_port:
        seed_redis(redis_port)
        with flarebase_server(folder, ours_port), peer_server(redis_port, peer_port):
            signup = httpx.post(
                f"{ours}/api/auth/signup", json={"email": "bench@example.com", "password": PASSWORD}
            ).json()
            auth = {"Authorization": f"Bearer {signup['token']}"}
            await seed_d1(folder, signup["user"]["id"])
            results["history"] = (history_pages(ours, auth), history_pages(peer, {}))
            for existing in (False, True):
                for c in CONCURRENCY:
                    runs = [
                        (await load(ours, auth, c, existing), await load(peer, {}, c, existing))
                        for _ in range(RUNS)
                    ]
                    results[c, existing] = (
                        min(o[0] for o, _ in runs),
                        min(p[0] for _, p in runs),
                        max(o[1] for o, _ in runs),
                        max(p[1] for _, p in runs),
                    )
            # rounds alternate between the two servers, so that the machine's drift over
            # the run weighs on both alike
            resumes: tuple[list[float], list[float]] = ([], [])
            for _ in range(RESUME_ROUNDS):
                resumes[0].extend(
                    await resume_latencies(ours, auth, {"selectedChatModel": "echo-slow"})
                )
                resumes[1].extend(await resume_latencies(peer, {}, {"delayMs": SLOW_DELAY_MS}))
            results["resume"] = tuple(statistics.median(times) for times in resumes)
            # a finished stream: flarebase replays it; resumable-stream has nothing to resume
            async with httpx.AsyncClient(headers=auth) as client:
                body = chat_body(words(WORDS))
                await one_stream(client, f"{ours}/api/chat", body)
                started = time.perf_counter()
                r = await client.get(f"{ours}/api/chat/{body['id']}/stream")
                results["finished"] = (time.perf_counter() - started, r.text.count("\n\n") - 1)
        # restart: SIGKILL each server mid-answer, start it again on the same state, resume
        ours_body = chat_body(words(WORDS), selectedChatModel="echo-slow")
        peer_body = chat_body(words(WORDS), delayMs=SLOW_DELAY_MS)
        with flarebase_server(folder, ours_port) as proc:
            seen_ours = await start_and_kill(ours, auth, proc, ours_body)
        with flarebase_server(folder, ours_port):
            after_ours = resume_after_restart(ours, auth, ours_body["id"])
        with peer_server(redis_port, peer_port) as proc:
            seen_peer = await start_and_kill(peer, {}, proc, peer_body)
        with peer_server(redis_port, peer_port):
            after_peer = resume_after_restart(peer, {}, peer_body["id"])

    print(f"chat bench: echo answers of {WORDS + 6} chunks, best of {RUNS}")
    for existing in (False, True):
        kind = "existing chats" if existing else "new chats"
        for c in CONCURRENCY:
            ttfc_ours, ttfc_peer, rate_ours, rate_peer = results[c, existing]
            line(
                f"time to first chunk, {c} concurrent, {kind}",
                ttfc_ours * 1e3,
                ttfc_peer * 1e3,
                "ms",
                False,
            )
            line(
                f"chunks/s, {c} concurrent streams, {kind}", rate_ours, rate_peer, "chunks/s", True
            )
    ours_resume, peer_resume = results["resume"]
    line(
        f"resume latency (live stream, first chunk, median of {len(resumes[0])})",
        ours_resume * 1e3,
        peer_resume * 1e3,
        "ms",
        False,
    )
    (first_ours, walk_ours), (first_peer, walk_peer) = results["history"]
    line(
        f"history first page of 50 ({HISTORY:,} chats)",
        first_ours * 1e3,
        first_peer * 1e3,
        "ms",
        False,
    )
    line(
        f"history walk of {HISTORY:,} chats, pages of 100",
        walk_ours * 1e3,
        walk_peer * 1e3,
        "ms",
        False,
    )
    seconds, count = results["finished"]
    print(
        f"resume of a finished stream: flarebase replays {count} chunks in {seconds * 1e3:.1f} ms; "
        "resumable-stream cannot (its buffer is gone when the producer finishes)"
    )
    print(
        f"resume after SIGKILL + restart (mid-answer, {seen_ours}/{seen_peer} chunks seen): "
        f"flarebase {after_ours}; resumable-stream {after_peer}"
    )


if __name__ == "__main__":
    asyncio.run(main())
