"""OpenAI-compatible models against a local fake upstream (FakeOpenAI): streamed text,
tool calls mapped to tool-input-*/tool-output-* chunks and sent back, upstream
errors and stalls ending as `error` chunks with a saved error state, large chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from .conftest import Server
from .test_chat_helpers import FakeOpenAI, chunks, message_text, send, text_of


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


def client_for(server: Server, fake: FakeOpenAI, **settings: Any) -> Any:
    models = [
        {
            "id": "fake",
            "provider": "openai",
            "base_url": fake.url,
            "model": "fake-model-1",
            "api_key_var": "FAKE_OPENAI_KEY",
            "tools": ["get_current_time"],
            "temperature": 0.5,
        }
    ]
    client = server.client(CHAT_MODELS=json.dumps(models), CHAT_DEFAULT_MODEL="fake", **settings)
    server.env.vars["FAKE_OPENAI_KEY"] = "sk-fake-123"
    server.sign_up(client, "alice@example.com")
    fake.requests.clear()
    return client


def test_text_streams_from_the_upstream(server: Server, fake: FakeOpenAI) -> None:
    client = client_for(server, fake, CHAT_SYSTEM_PROMPT="Be brief.")
    got = chunks(send(client, "c1", "hi").text)
    assert text_of(got) == "Hello from the fake"
    assert got[-1] == {"type": "finish", "finishReason": "stop"}
    [request] = fake.requests
    assert request["headers"]["authorization"] == "Bearer sk-fake-123"
    body = request["body"]
    assert body["model"] == "fake-model-1" and body["stream"] is True and body["temperature"] == 0.5
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert body["tools"][0]["function"]["name"] == "get_current_time"
    # the next turn sends the history (the server owns it)
    send(client, "c1", "and again")
    roles = [(m["role"], m["content"]) for m in fake.requests[-1]["body"]["messages"]]
    assert roles[1:] == [
        ("user", "hi"),
        ("assistant", "Hello from the fake"),
        ("user", "and again"),
    ]


def test_tool_calls_become_tool_chunks_and_their_results_go_back(
    server: Server, fake: FakeOpenAI
) -> None:
    client = client_for(server, fake)
    got = chunks(send(client, "c1", "tool please").text)
    kinds = [c["type"] for c in got]
    assert kinds[:3] == ["start", "start-step", "tool-input-start"]
    assert got[2] == {
        "type": "tool-input-start",
        "toolCallId": "call_1",
        "toolName": "get_current_time",
    }
    deltas = "".join(c["inputTextDelta"] for c in got if c["type"] == "tool-input-delta")
    assert deltas == '{"timezone": "UTC"}'
    available = next(c for c in got if c["type"] == "tool-input-available")
    assert available["input"] == {"timezone": "UTC"}
    output = next(c for c in got if c["type"] == "tool-output-available")
    assert output["toolCallId"] == "call_1"
    assert datetime.fromisoformat(output["output"]["utc"].replace("Z", "+00:00"))
    # a second step answers with the tool's result
    second = kinds.index("finish-step") + 1
    assert kinds[second] == "start-step" and got[-1]["finishReason"] == "stop"
    assert text_of(got) == "The tool said " + json.dumps(output["output"])
    first_request, second_request = (r["body"]["messages"] for r in fake.requests)
    assert first_request[-1]["role"] == "user"
    assistant, tool = second_request[-2:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"timezone": "UTC"}
    assert tool == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps(output["output"]),
    }
    [saved] = [m for m in client.get("/api/messages?chatId=c1").json()["messages"][1:]]
    tool_part = next(p for p in saved["parts"] if p["type"] == "tool-get_current_time")
    assert tool_part["state"] == "output-available" and tool_part["output"] == output["output"]
    assert [p["type"] for p in saved["parts"]].count("step-start") == 2


def test_an_unknown_tool_is_a_tool_output_error(server: Server, fake: FakeOpenAI) -> None:
    client = client_for(server, fake)
    got = chunks(send(client, "c1", "unknown tool").text)
    error = next(c for c in got if c["type"] == "tool-output-error")
    assert error["toolCallId"] == "call_1" and "unknown tool 'nope'" in error["errorText"]
    assert fake.requests[-1]["body"]["messages"][-1]["content"].startswith("error: unknown tool")
    assert got[-1]["type"] == "finish"


def test_arguments_that_are_not_json_are_a_tool_input_error(
    server: Server, fake: FakeOpenAI
) -> None:
    client = client_for(server, fake)
    got = chunks(send(client, "c1", "bad args").text)
    error = next(c for c in got if c["type"] == "tool-input-error")
    assert error["input"] == "not json" and error["toolName"] == "get_current_time"
    assert "tool-output-available" not in [c["type"] for c in got]
    # the model hears about it and answers
    assert fake.requests[-1]["body"]["messages"][-1]["content"].startswith("error: the tool's")
    assert text_of(got).startswith("The tool said error:")
    saved = client.get("/api/messages?chatId=c1").json()["messages"][-1]
    part = next(p for p in saved["parts"] if p["type"] == "tool-get_current_time")
    assert part["state"] == "output-error" and part["rawInput"] == "not json"


def test_an_upstream_500_is_an_error_chunk_and_a_saved_error_state(
    server: Server, fake: FakeOpenAI
) -> None:
    client = client_for(server, fake)
    r = send(client, "c1", "fail")
    assert r.status_code == 200
    got = chunks(r.text)  # ends with [DONE]: never a hung stream
    assert got[-1]["type"] == "error"
    assert got[-1]["errorText"] == "the model provider answered HTTP 500: the fake is broken"
    assert "sk-fake" not in r.text
    assert client.get("/api/chat/c1").json()["status"] == "error"
    [stream] = server.sql("SELECT status, error FROM streams")
    assert stream == {"status": "error", "error": got[-1]["errorText"]}
    assert chunks(client.get("/api/chat/c1/stream").text) == got
    # the chat goes on
    assert text_of(chunks(send(client, "c1", "hi").text)) == "Hello from the fake"
    assert client.get("/api/chat/c1").json()["status"] == "ready"


def test_a_stalled_upstream_times_out(server: Server, fake: FakeOpenAI) -> None:
    client = client_for(server, fake, CHAT_UPSTREAM_TIMEOUT=0.5)
    got = chunks(send(client, "c1", "stall").text)
    assert text_of(got) == "wait"
    assert got[-1] == {"type": "error", "errorText": "the model provider sent nothing for 0.5 s"}
    saved = client.get("/api/messages?chatId=c1").json()["messages"]
    assert message_text(saved[-1]) == "wait"  # what came before the stall is kept
    assert client.get("/api/chat/c1").json()["status"] == "error"


def test_an_unreachable_upstream_is_an_error_chunk(server: Server, fake: FakeOpenAI) -> None:
    models = [{"id": "gone", "provider": "openai", "base_url": "http://127.0.0.1:9/v1"}]
    client = server.client(CHAT_MODELS=json.dumps(models))
    server.sign_up(client, "alice@example.com")
    got = chunks(send(client, "c1", "hi", selectedChatModel="gone").text)
    assert got[-1]["type"] == "error" and "could not reach" in got[-1]["errorText"]


def test_chunks_over_a_megabyte_are_kept_in_r2(server: Server, fake: FakeOpenAI) -> None:
    client = client_for(server, fake)
    got = chunks(send(client, "c1", "big").text)
    assert len(text_of(got)) == 1_200_000
    listing = server.run(server.env.BUCKET.list, None, "chats/c1/streams/")
    assert len(listing.objects) == 1 and listing.objects[0].size > 1_000_000
    assert chunks(client.get("/api/chat/c1/stream").text) == got
    client.delete("/api/chat?id=c1")
    assert server.run(server.env.BUCKET.list, None, "chats/c1/").objects == []


def test_a_response_without_progress_is_abandoned_by_the_alarm(
    server: Server, fake: FakeOpenAI
) -> None:
    client = client_for(server, fake, CHAT_UPSTREAM_TIMEOUT=60, CHAT_STREAM_ABANDONED_TTL=0.5)
    got = chunks(send(client, "c1", "stall").text)  # the stream ends, though the model hangs
    assert text_of(got) == "wait"
    assert got[-1] == {
        "type": "error",
        "errorText": "the response made no progress and was abandoned",
    }
    assert client.get("/api/chat/c1").json()["status"] == "interrupted"
    saved = client.get("/api/messages?chatId=c1").json()["messages"]
    assert message_text(saved[-1]) == "wait"
