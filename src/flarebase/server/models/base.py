"""What a model provider yields while it streams one step, independent of the provider.

A provider is an async generator `stream(messages, tools)` taking UI messages (the
chat so far, including the assistant message being built) and the tools it may call,
and yielding these events. It raises `UpstreamError` when the provider fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call; `arguments` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    # The AI SDK's reasons: stop, length, content-filter, tool-calls, error, other.
    reason: str = "stop"
    usage: dict[str, Any] = field(default_factory=dict)


Event = TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | ToolCall | Finish


class UpstreamError(Exception):
    """The model provider failed (HTTP error, bad stream, timeout). The message is safe
    to show to the user: it never contains keys."""


class ModelProvider(Protocol):
    def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> AsyncIterator[Event]: ...


def message_text(message: dict[str, Any]) -> str:
    """The text parts of a UI message, joined."""
    return "".join(
        str(p.get("text", ""))
        for p in message.get("parts") or []
        if isinstance(p, dict) and p.get("type") == "text"
    )
