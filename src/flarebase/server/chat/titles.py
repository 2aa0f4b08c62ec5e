"""Chat titles, derived from the first user message (PATCH /api/chat/{id} renames)."""

from __future__ import annotations

from typing import Any

MAX_TITLE = 80
DEFAULT_TITLE = "New chat"


def title_from(message: dict[str, Any]) -> str:
    """The message's text, on one line, cut at a word before MAX_TITLE characters."""
    text = " ".join(
        str(part.get("text", ""))
        for part in message.get("parts") or []
        if isinstance(part, dict) and part.get("type") == "text"
    )
    text = " ".join(text.split())
    if not text:
        return DEFAULT_TITLE
    if len(text) <= MAX_TITLE:
        return text
    cut = text[: MAX_TITLE - 1]
    if " " in cut[MAX_TITLE // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" .,;:") + "…"
