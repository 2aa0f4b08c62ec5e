"""Helpers of the chat tests (no tests here): SSE parsing, a live uvicorn server on the
test's env, the real AI SDK client (tests/js/chat_client.mjs), and a fake
OpenAI-compatible upstream (FakeOpenAI) on a loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from flarebase.server import create_app

from ..helpers import free_port
from .conftest import Server

JS = Path(__file__).parents[1] / "js"


# -- SSE ------------------------------------------------------------------------------------
def sse_events(text: str) -> list[tuple[int | None, str]]:
    """(id, data) for each event of a server-sent event stream (comments skipped)."""
    events = []
    for block in text.split("\n\n"):
        event_id, data = None, []
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((event_id, "\n".join(data)))
    return events


def chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of a UI message stream; asserts it ends with [DONE]."""
    events = sse_events(text)
    assert events and events[-1][1] == "[DONE]", text[-500:]
    return [json.loads(data) for _, data in events[:-1]]


def text_of(chunk_list: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunk_list if c["type"] == "text-delta")


def message_text(message: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in message["parts"] if p["type"] == "text")


def user_message(text: str, id: str = "u1") -> dict[str, Any]:
    return {"id": id, "role": "user", "parts": [{"type": "text", "text": text}]}


def send(client: TestClient, chat_id: str, text: str, id: str | None = None, **extra: Any) -> Any:
    """POST /api/chat (a new message id unless `id`) and read the whole stream."""
    message = user_message(text, id or f"u-{uuid.uuid4().hex[:12]}")
    body = {"id": chat_id, "messages": [message], "trigger": "submit-message"}
    return client.post("/api/chat", json={**body, **extra})


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def wait_until(check: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


# -- a live server on the test's env --------------------------------------------------------
@contextmanager
def live_server(server: Server, **settings: Any) -> Iterator[str]:
    """create_app(server.env) served by uvicorn on a loopback port, in the env's loop."""
    app = create_app(server.env, server.settings(**settings))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    done = server.portal.start_task_soon(uv.serve)
    wait_until(lambda: uv.started or done.done())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        done.result(timeout=10)


# -- the real AI SDK client -----------------------------------------------------------------
def ai_client(**input: Any) -> dict[str, Any]:
    """Run a scenario of tests/js/chat_client.mjs (the npm `ai` package)."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "ai").is_dir():
        message = "needs node and `npm ci` in tests/js (scripts/bootstrap --node)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [node, str(JS / "chat_client.mjs")],
        input=json.dumps(input),
        capture_output=True,
        text=True,
        cwd=JS,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    assert result.pop("ok"), result.get("error")
    return result


# -- a fake OpenAI-compatible upstream ---------------------------------------------------------
class FakeOpenAI:
    """A fake OpenAI chat completions server (for tests only): what it answers depends on
    the last user message's text:

      "tool please"  a call to get_current_time (in fragments), then, once the request
                     carries the tool result, text quoting it
      "unknown tool" a call to `nope`, then text
      "bad args"     a call whose arguments are not JSON, then text
      "fail"         HTTP 500 with an OpenAI error body
      "stall"        one chunk, then silence (for timeouts)
      "big"          one content delta of 1,200,000 characters
      anything else  "Hello from the fake" in three deltas
    Every request body and header set is recorded in `requests`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        wait_until(lambda: self._server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    async def completions(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers)})
        messages = body["messages"]
        last_user = next(m for m in reversed(messages) if m["role"] == "user")["content"]
        has_tool_result = messages[-1]["role"] == "tool"
        if last_user == "fail":
            error = {"error": {"message": "the fake is broken", "type": "server_error"}}
            return JSONResponse(error, status_code=500)
        if last_user in ("tool please", "unknown tool", "bad args") and not has_tool_result:
            name = "nope" if last_user == "unknown tool" else "get_current_time"
            fragments = ["not ", "json"] if last_user == "bad args" else None
            return self._stream(self._tool_call(name, fragments))
        if has_tool_result:
            return self._stream(self._text(["The tool said ", messages[-1]["content"]]))
        if last_user == "stall":
            return self._stream(self._stall())
        if last_user == "big":
            return self._stream(self._text(["x" * 1_200_000]))
        return self._stream(self._text(["Hello ", "from ", "the fake"]))

    @staticmethod
    def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [choice]}
        return f"data: {json.dumps(payload)}\n\n"

    async def _text(self, pieces: list[str]) -> AsyncIterator[str]:
        yield self._chunk({"role": "assistant", "content": ""})
        for piece in pieces:
            yield self._chunk({"content": piece})
        yield self._chunk({}, "stop")
        yield "data: [DONE]\n\n"

    async def _tool_call(self, name: str, fragments: list[str] | None) -> AsyncIterator[str]:
        first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name}}
        yield self._chunk(
            {
                "role": "assistant",
                "tool_calls": [{**first, "function": {**first["function"], "arguments": ""}}],
            }
        )
        for fragment in fragments or ['{"time', 'zone": ', '"UTC"}']:
            yield self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
        yield self._chunk({}, "tool_calls")
        yield "data: [DONE]\n\n"

    async def _stall(self) -> AsyncIterator[str]:
        yield self._chunk({"content": "wait"})
        await asyncio.sleep(30)
        yield "data: [DONE]\n\n"

    def _stream(self, body: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(body, media_type="text/event-stream")
