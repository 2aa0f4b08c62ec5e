"""The echo model: the embedded default, for tests and development (not a language model).

It answers with the text of the last user message, one chunk per word (a word and the
whitespace after it; a long word is cut every `MAX_DELTA` characters), waiting
`delay_ms` before each chunk. The same input always gives the same chunks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from .base import Event, Finish, TextDelta, message_text

MAX_DELTA = 65_536
_WORD = re.compile(r"\s*\S+\s*|\s+")


def echo_reply(messages: list[dict[str, Any]]) -> str:
    """What the echo model answers to `messages`."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = message_text(message)
            if text.strip():
                return text
            files = sum(1 for p in message.get("parts") or [] if p.get("type") == "file")
            return f"(received {files} file{'s' if files != 1 else ''} and no text)"
    return "(nothing to echo)"


def echo_deltas(text: str) -> list[str]:
    deltas: list[str] = []
    for word in _WORD.findall(text):
        if len(word) <= MAX_DELTA:
            deltas.append(word)
        else:
            deltas += [word[i : i + MAX_DELTA] for i in range(0, len(word), MAX_DELTA)]
    return deltas


class EchoModel:
    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay = max(0.0, delay_ms) / 1000

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> AsyncIterator[Event]:
        for delta in echo_deltas(echo_reply(messages)):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(delta)
        yield Finish("stop", {"inputTokens": 0, "outputTokens": 0})
