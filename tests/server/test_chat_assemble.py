"""flarebase's MessageAssembler (what the server saves) against the AI SDK's own
assembly of the same chunks (npm `ai` readUIMessageStream, tests/js/assemble.mjs); and
the chunks' JSON texts against the json module's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flarebase.server.chat.assemble import MessageAssembler
from flarebase.server.chat.durable_object import chunk_json

JS = Path(__file__).parents[1] / "js"


def text(id: str, *deltas: str, end: bool = True) -> list[dict[str, Any]]:
    chunks = [{"type": "text-start", "id": id}]
    chunks += [{"type": "text-delta", "id": id, "delta": d} for d in deltas]
    return chunks + ([{"type": "text-end", "id": id}] if end else [])


def reasoning(id: str, *deltas: str) -> list[dict[str, Any]]:
    chunks = [{"type": "reasoning-start", "id": id}]
    chunks += [{"type": "reasoning-delta", "id": id, "delta": d} for d in deltas]
    return [*chunks, {"type": "reasoning-end", "id": id}]


def response(*steps: list[dict[str, Any]], metadata: Any = None) -> list[dict[str, Any]]:
    start: dict[str, Any] = {"type": "start", "messageId": "m1"}
    if metadata is not None:
        start["messageMetadata"] = metadata
    chunks = [start]
    for step in steps:
        chunks += [{"type": "start-step"}, *step, {"type": "finish-step"}]
    return [*chunks, {"type": "finish", "finishReason": "stop"}]


SCENARIOS = {
    "text in many deltas": response(text("t1", *(f"word{i} " for i in range(300)))),
    "reasoning then text": response([*reasoning("r1", "think", "ing"), *text("t1", "Hi")]),
    "two texts in a step": response([*text("t1", "a", "b"), *text("t2", "c")]),
    "a tool call, then the answer": response(
        [
            {"type": "tool-input-start", "toolCallId": "c1", "toolName": "weather"},
            {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"city":'},
            {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '"Oslo"}'},
            {
                "type": "tool-input-available",
                "toolCallId": "c1",
                "toolName": "weather",
                "input": {"city": "Oslo"},
            },
            {"type": "tool-output-available", "toolCallId": "c1", "output": {"temp": 3}},
        ],
        text("t1", "It is ", "3 degrees"),
    ),
    "tool errors": response(
        [
            {
                "type": "tool-input-error",
                "toolCallId": "c1",
                "toolName": "weather",
                "input": "{not json",
                "errorText": "bad input",
            },
            {
                "type": "tool-input-available",
                "toolCallId": "c2",
                "toolName": "weather",
                "input": {"city": "Bergen"},
            },
            {"type": "tool-output-error", "toolCallId": "c2", "errorText": "no service"},
        ]
    ),
    "data parts, sources and files": response(
        [
            {"type": "data-note", "id": "n1", "data": {"v": 1}},
            {"type": "data-note", "id": "n1", "data": {"v": 2}},
            {"type": "data-plain", "data": [1, 2]},
            {"type": "data-gone", "data": 1, "transient": True},
            {"type": "source-url", "sourceId": "s1", "url": "https://example.com", "title": "Ex"},
            {"type": "file", "url": "https://example.com/a.png", "mediaType": "image/png"},
            *text("t1", "see above"),
        ]
    ),
    "metadata merged": [
        *response(text("t1", "x"), metadata={"a": 1}),
        {"type": "message-metadata", "messageMetadata": {"b": 2}},
    ],
    "a text never ended (stopped)": [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        *text("t1", "half ", "an answer", end=False),
    ],
}


@pytest.fixture(scope="module")
def sdk_messages() -> dict[str, Any]:
    if shutil.which("node") is None or not (JS / "node_modules" / "ai").is_dir():
        pytest.skip("needs node and tests/js/node_modules (scripts/bootstrap --node)")
    run = subprocess.run(
        ["node", str(JS / "assemble.mjs")],
        input=json.dumps(list(SCENARIOS.values())),
        capture_output=True,
        text=True,
        cwd=JS,
        timeout=60,
        check=True,
    )
    return dict(zip(SCENARIOS, json.loads(run.stdout), strict=True))


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_saved_message_is_the_one_the_ai_sdk_assembles(
    name: str, sdk_messages: dict[str, Any]
) -> None:
    assembler = MessageAssembler("server-id")
    for chunk in SCENARIOS[name]:
        assembler.add(chunk)
    assert assembler.message() == sdk_messages[name]


@pytest.mark.parametrize(
    "chunk",
    [
        {"type": "text-delta", "id": "text-0-1", "delta": "word12 "},
        {"type": "text-delta", "id": 'a"b\\', "delta": 'quotes " and \\ and \n\t\x00\x1f'},
        {"type": "text-delta", "id": "t", "delta": "naïve 日本語 🎉 \u2028 \ud800"},
        {"type": "text-delta", "id": "t", "delta": ""},
        {"type": "text-delta", "id": "t", "delta": 5},
        {"type": "text-delta", "id": "t", "delta": "x", "providerMetadata": {"a": 1}},
        {"type": "finish", "finishReason": "stop"},
    ],
)
def test_chunk_json_is_the_json_modules_compact_text(chunk: dict[str, Any]) -> None:
    expected = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
    assert chunk_json(chunk) == expected
    assert json.loads(expected) == chunk
