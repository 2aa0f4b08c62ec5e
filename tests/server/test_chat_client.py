"""The real Vercel AI SDK client (npm `ai`) against a running server: send, abort after
a few chunks and resume to the complete message, resume of a finished stream, 204
when there is none, only the tail after a position, and stop from a second
connection; tool chunks pass the SDK's own validation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import PASSWORD, Server
from .test_chat_helpers import (
    FakeOpenAI,
    chunks,
    live_server,
    message_text,
    user_message,
    words,
)


@pytest.fixture
def live(server: Server) -> Iterator[dict[str, Any]]:
    with live_server(server, CHAT_ECHO_DELAY_MS=25, CHAT_STREAM_TTL=60) as base:
        r = httpx.post(
            f"{base}/api/auth/signup", json={"email": "alice@example.com", "password": PASSWORD}
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        yield {"base": base, "token": token, "http": httpx.Client(base_url=base, headers=headers)}


def saved_messages(live: dict[str, Any], chat_id: str) -> list[dict[str, Any]]:
    return live["http"].get("/api/messages", params={"chatId": chat_id}).json()["messages"]  # type: ignore[no-any-return]


def test_send_assembles_the_message_with_read_ui_message_stream(live: dict[str, Any]) -> None:
    out = ai_client_run(live, scenario="send", chatId="c1", text="Hello real client")
    assert out["error"] is None and out["text"] == "Hello real client"
    assert out["chunkTypes"][0] == "start" and out["chunkTypes"][-1] == "finish"
    assert out["message"]["role"] == "assistant"
    assert out["message"]["id"] == saved_messages(live, "c1")[1]["id"]


def test_abort_after_a_few_chunks_then_resume_gets_the_complete_message(
    live: dict[str, Any],
) -> None:
    text = words(40)
    out = ai_client_run(live, scenario="abort-and-resume", chatId="c1", text=text, abortAfter=6)
    [user, partial] = out["afterAbort"]["messages"]
    assert out["afterAbort"]["status"] == "ready" and user["text"] == text
    assert partial["role"] == "assistant" and 0 < len(partial["text"]) < len(text)
    resumed = out["afterResume"]
    assert resumed["status"] == "ready" and resumed["error"] is None
    assert [m["role"] for m in resumed["messages"]] == ["user", "assistant"]
    assert resumed["messages"][1]["id"] == partial["id"]
    assert resumed["messages"][1]["text"] == text  # the whole answer, not just the tail
    assert message_text(saved_messages(live, "c1")[1]) == text


def test_resume_of_a_finished_stream_replays_the_whole_message(live: dict[str, Any]) -> None:
    r = live["http"].post("/api/chat", json={"id": "c1", "messages": [user_message("all done")]})
    answer = chunks(r.text)[0]["messageId"]
    out = ai_client_run(live, scenario="resume", chatId="c1", messages=[user_message("all done")])
    assert out["status"] == "ready" and out["error"] is None
    assert [(m["id"], m["text"]) for m in out["messages"]] == [
        ("u1", "all done"),
        (answer, "all done"),
    ]


def test_resume_without_a_stream_answers_204_and_the_client_stays_ready(
    server: Server, live: dict[str, Any]
) -> None:
    r = live["http"].post("/api/chat", json={"id": "c1", "messages": [user_message("gone soon")]})
    assert r.status_code == 200
    stub = server.env.CHAT_STREAMS.get(server.env.CHAT_STREAMS.id_from_name("c1"))
    server.run(stub.clear)  # as if the buffer had expired
    assert live["http"].get("/api/chat/c1/stream").status_code == 204
    out = ai_client_run(live, scenario="resume", chatId="c1", messages=[user_message("gone soon")])
    assert out["status"] == "ready" and out["error"] is None
    assert [m["text"] for m in out["messages"]] == ["gone soon"]


def test_a_client_that_is_not_replaying_gets_only_the_tail(live: dict[str, Any]) -> None:
    r = live["http"].post("/api/chat", json={"id": "c1", "messages": [user_message(words(5))]})
    everything = chunks(r.text)
    out = ai_client_run(live, scenario="tail", chatId="c1", after=4)
    assert out["chunks"] == everything[4:]


def test_stop_from_a_second_connection(live: dict[str, Any]) -> None:
    text = words(60)
    out = ai_client_run(live, scenario="stop", chatId="c1", text=text, stopAfter=6)
    assert out["stopped"] == {"status": 200, "body": {"stopped": True}}
    assert out["chunkTypes"][-1] == "abort" and "finish" not in out["chunkTypes"]
    assert out["error"] is None and 0 < len(out["text"]) < len(text)
    assert text.startswith(out["text"])
    [_, saved] = saved_messages(live, "c1")
    assert message_text(saved) == out["text"]
    assert live["http"].get("/api/chat/c1").json()["status"] == "stopped"


def test_tool_chunks_pass_the_sdks_validation(server: Server) -> None:
    with FakeOpenAI() as fake:
        models = [
            {
                "id": "fake",
                "provider": "openai",
                "base_url": fake.url,
                "tools": ["get_current_time"],
            }
        ]
        with live_server(server, CHAT_MODELS=json.dumps(models), CHAT_DEFAULT_MODEL="fake") as base:
            r = httpx.post(
                f"{base}/api/auth/signup", json={"email": "bob@example.com", "password": PASSWORD}
            )
            live = {"base": base, "token": r.json()["token"]}
            out = ai_client_run(live, scenario="send", chatId="t1", text="tool please")
    assert out["error"] is None
    tool = next(p for p in out["message"]["parts"] if p["type"] == "tool-get_current_time")
    assert tool["state"] == "output-available" and tool["input"] == {"timezone": "UTC"}
    assert out["text"].startswith("The tool said ")


def ai_client_run(live: dict[str, Any], **input: Any) -> dict[str, Any]:
    from .test_chat_helpers import ai_client

    started = time.monotonic()
    out = ai_client(base=live["base"], token=live["token"], **input)
    assert time.monotonic() - started < 30
    return out
