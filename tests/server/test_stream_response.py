"""EventStreamResponse at the ASGI level: it streams to the end, stops following when
the client goes away, and never swallows a cancel that came from elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flarebase.server.streams import EventStreamResponse

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


class Client:
    """ASGI receive/send of a client that goes away after `leave_after` bodies (never,
    if None)."""

    def __init__(self, leave_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave_after = leave_after
        self.left = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        bodies = sum(m["type"] == "http.response.body" for m in self.sent)
        if self.leave_after is not None and bodies >= self.leave_after:
            self.left.set()


async def events(n: int, then_wait: bool, finished: list[str]) -> AsyncIterator[bytes]:
    try:
        for i in range(n):
            yield f"data: {i}\n\n".encode()
        if then_wait:
            await asyncio.Event().wait()  # a live stream with nothing new
    finally:
        finished.append("follower closed")


async def test_it_streams_every_event_then_ends() -> None:
    client, finished = Client(), []
    await EventStreamResponse(events(3, False, finished))(SCOPE, client.receive, client.send)
    assert client.sent[0]["type"] == "http.response.start"
    assert (b"x-vercel-ai-ui-message-stream", b"v1") in client.sent[0]["headers"]
    assert [m.get("body") for m in client.sent[1:]] == [
        b"data: 0\n\n",
        b"data: 1\n\n",
        b"data: 2\n\n",
        b"",
    ]
    assert finished == ["follower closed"]
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == 1  # the watcher is gone too


async def test_it_stops_following_when_the_client_goes_away() -> None:
    client, finished = Client(leave_after=2), []
    response = EventStreamResponse(events(2, True, finished))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(response(SCOPE, client.receive, client.send), 5)
    assert loop.time() - started < 1  # at once, not when the outer timeout ran out
    assert finished == ["follower closed"]
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_cancel_from_elsewhere_is_not_swallowed() -> None:
    client, finished = Client(), []
    response = EventStreamResponse(events(1, True, finished))
    task = asyncio.ensure_future(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    task.cancel()  # e.g. the server shutting down, the client still there
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["follower closed"]


async def test_a_cancel_from_elsewhere_while_the_client_leaves_is_not_swallowed() -> None:
    client, finished = Client(), []
    response = EventStreamResponse(events(1, True, finished))
    task = asyncio.ensure_future(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    client.left.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
