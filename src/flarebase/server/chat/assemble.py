"""Builds a UI message from UI message stream chunks, as the AI SDK's client does.

The server saves what a client would have assembled: text and reasoning parts,
`step-start` parts, tool parts (`tool-<name>`, or `dynamic-tool`) with their
states, sources, files, non-transient `data-*` parts and message metadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def _partial_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class MessageAssembler:
    def __init__(self, message_id: str, role: str = "assistant") -> None:
        self.id = message_id
        self.role = role
        self.parts: list[dict[str, Any]] = []
        self.metadata: Any = None
        self.finish_reason: str | None = None
        # open text and reasoning parts by id: (part, its text so far in pieces, joined
        # when read: appending to the part's string would copy it for every delta)
        self._text: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self._reasoning: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self._tools: dict[str, dict[str, Any]] = {}
        self._raw: dict[str, str] = {}

    # -- reading chunks ------------------------------------------------------------------
    def add(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        if kind == "text-delta":  # nearly every chunk: straight to its part
            entry = self._text.get(chunk.get("id", ""))  # (an id not a str: the slow path)
            delta = chunk.get("delta", "")
            if entry is not None and isinstance(delta, str):
                entry[1].append(delta)
                return
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, chunk)
        elif isinstance(kind, str) and kind.startswith("data-"):
            self._data(chunk)

    def _start(self, chunk: dict[str, Any]) -> None:
        if chunk.get("messageId"):
            self.id = str(chunk["messageId"])
        self._merge_metadata(chunk.get("messageMetadata"))

    def _finish(self, chunk: dict[str, Any]) -> None:
        if chunk.get("finishReason"):
            self.finish_reason = str(chunk["finishReason"])
        self._merge_metadata(chunk.get("messageMetadata"))

    def _message_metadata(self, chunk: dict[str, Any]) -> None:
        self._merge_metadata(chunk.get("messageMetadata"))

    def _merge_metadata(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, dict) and isinstance(self.metadata, dict):
            self.metadata = {**self.metadata, **value}
        else:
            self.metadata = value

    def _start_step(self, chunk: dict[str, Any]) -> None:
        self.parts.append({"type": "step-start"})

    def _finish_step(self, chunk: dict[str, Any]) -> None:
        self._let_go()

    def _open(self, table: _Open, kind: str, chunk: dict[str, Any]) -> list[str]:
        part: dict[str, Any] = {"type": kind, "text": "", "state": "streaming"}
        if kind == "reasoning":  # (the AI SDK keeps a reasoning part's id, not a text's)
            part = {"type": kind, "id": chunk.get("id"), **part}
        if chunk.get("providerMetadata") is not None:
            part["providerMetadata"] = chunk["providerMetadata"]
        pieces: list[str] = []
        table[str(chunk.get("id"))] = (part, pieces)
        self.parts.append(part)
        return pieces

    def _delta(self, table: _Open, kind: str, chunk: dict[str, Any]) -> None:
        delta = chunk.get("delta", "")
        entry = table.get(str(chunk.get("id")))
        # (a missing start is tolerated, as a lenient client would)
        pieces = entry[1] if entry is not None else self._open(table, kind, chunk)
        pieces.append(delta if isinstance(delta, str) else str(delta))

    def _close(self, table: _Open, chunk: dict[str, Any]) -> None:
        entry = table.pop(str(chunk.get("id")), None)
        if entry is not None:
            part, pieces = entry
            part["text"] += "".join(pieces)
            part["state"] = "done"
            if chunk.get("providerMetadata") is not None:
                part["providerMetadata"] = chunk["providerMetadata"]

    def _joined(self) -> None:
        """Bring the open parts' text up to date (they stay open)."""
        for table in (self._text, self._reasoning):
            for part, pieces in table.values():
                if pieces:
                    part["text"] += "".join(pieces)
                    pieces.clear()

    def _let_go(self) -> None:
        """Stop tracking the open parts (a new step, or the end), their text kept."""
        self._joined()
        self._text.clear()
        self._reasoning.clear()

    def _text_start(self, chunk: dict[str, Any]) -> None:
        self._open(self._text, "text", chunk)

    def _text_delta(self, chunk: dict[str, Any]) -> None:
        self._delta(self._text, "text", chunk)

    def _text_end(self, chunk: dict[str, Any]) -> None:
        self._close(self._text, chunk)

    def _reasoning_start(self, chunk: dict[str, Any]) -> None:
        self._open(self._reasoning, "reasoning", chunk)

    def _reasoning_delta(self, chunk: dict[str, Any]) -> None:
        self._delta(self._reasoning, "reasoning", chunk)

    def _reasoning_end(self, chunk: dict[str, Any]) -> None:
        self._close(self._reasoning, chunk)

    # tools
    def _tool(self, chunk: dict[str, Any]) -> dict[str, Any]:
        call_id = str(chunk.get("toolCallId"))
        part = self._tools.get(call_id)
        if part is None:
            name = str(chunk.get("toolName", "tool"))
            part = (
                {"type": "dynamic-tool", "toolName": name}
                if chunk.get("dynamic")
                else {"type": f"tool-{name}"}
            )
            part.update({"toolCallId": call_id, "state": "input-streaming", "input": None})
            self._tools[call_id] = part
            self.parts.append(part)
        for key in ("providerExecuted", "title", "providerMetadata"):
            if chunk.get(key) is not None:
                part[key] = chunk[key]
        return part

    def _tool_input_start(self, chunk: dict[str, Any]) -> None:
        self._tool(chunk)
        self._raw[str(chunk.get("toolCallId"))] = ""

    def _tool_input_delta(self, chunk: dict[str, Any]) -> None:
        call_id = str(chunk.get("toolCallId"))
        part = self._tools.get(call_id)
        if part is None:
            return
        self._raw[call_id] = self._raw.get(call_id, "") + str(chunk.get("inputTextDelta", ""))
        parsed = _partial_json(self._raw[call_id])
        if parsed is not None:
            part["input"] = parsed

    def _tool_input_available(self, chunk: dict[str, Any]) -> None:
        part = self._tool(chunk)
        part["state"] = "input-available"
        part["input"] = chunk.get("input")

    def _tool_input_error(self, chunk: dict[str, Any]) -> None:
        part = self._tool(chunk)
        part["state"] = "output-error"
        part.pop("input", None)  # (not JSON: it is the raw input)
        part["rawInput"] = chunk.get("input")
        part["errorText"] = str(chunk.get("errorText", ""))

    def _tool_output_available(self, chunk: dict[str, Any]) -> None:
        part = self._tools.get(str(chunk.get("toolCallId")))
        if part is not None:
            part["state"] = "output-available"
            part["output"] = chunk.get("output")
            if chunk.get("preliminary") is not None:
                part["preliminary"] = chunk["preliminary"]

    def _tool_output_error(self, chunk: dict[str, Any]) -> None:
        part = self._tools.get(str(chunk.get("toolCallId")))
        if part is not None:
            part["state"] = "output-error"
            part["errorText"] = str(chunk.get("errorText", ""))

    def _tool_output_denied(self, chunk: dict[str, Any]) -> None:
        part = self._tools.get(str(chunk.get("toolCallId")))
        if part is not None:
            part["state"] = "output-denied"

    def _tool_approval_request(self, chunk: dict[str, Any]) -> None:
        part = self._tools.get(str(chunk.get("toolCallId")))
        if part is not None:
            part["state"] = "approval-requested"
            part["approval"] = {"id": chunk.get("approvalId")}

    # sources, files, data
    def _source_url(self, chunk: dict[str, Any]) -> None:
        self.parts.append(
            _pick(chunk, "source-url", "sourceId", "url", "title", "providerMetadata")
        )

    def _source_document(self, chunk: dict[str, Any]) -> None:
        self.parts.append(
            _pick(
                chunk,
                "source-document",
                "sourceId",
                "mediaType",
                "title",
                "filename",
                "providerMetadata",
            )
        )

    def _file(self, chunk: dict[str, Any]) -> None:
        self.parts.append(_pick(chunk, "file", "url", "mediaType", "providerMetadata"))

    def _data(self, chunk: dict[str, Any]) -> None:
        if chunk.get("transient"):
            return
        kind, part_id = chunk["type"], chunk.get("id")
        if part_id is not None:
            for part in self.parts:
                if part.get("type") == kind and part.get("id") == part_id:
                    part["data"] = chunk.get("data")
                    return
        part = {"type": kind, "data": chunk.get("data")}
        if part_id is not None:
            part["id"] = part_id
        self.parts.append(part)

    # -- the result -----------------------------------------------------------------------
    def finalize(self) -> None:
        """Close what was left open (a stopped, failed or interrupted response)."""
        for part in self.parts:
            if part.get("state") == "streaming":
                part["state"] = "done"
            elif part.get("state") in ("input-streaming", "input-available") and (
                part["type"].startswith("tool-") or part["type"] == "dynamic-tool"
            ):
                part["state"] = "output-error"
                part["errorText"] = "the tool call did not finish"
        self._let_go()

    def has_content(self) -> bool:
        return any(part.get("type") != "step-start" for part in self.parts)

    def message(self) -> dict[str, Any]:
        self._joined()
        out: dict[str, Any] = {"id": self.id, "role": self.role, "parts": self.parts}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


_Open = dict[str, tuple[dict[str, Any], list[str]]]
_Handler = Callable[[MessageAssembler, dict[str, Any]], None]
# Chunk types the assembler reads (`data-*` chunks aside), by the method reading them.
_HANDLERS: dict[str, _Handler] = {
    kind: getattr(MessageAssembler, "_" + kind.replace("-", "_"))
    for kind in (
        "start",
        "finish",
        "message-metadata",
        "start-step",
        "finish-step",
        "text-start",
        "text-delta",
        "text-end",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-error",
        "tool-output-available",
        "tool-output-error",
        "tool-output-denied",
        "tool-approval-request",
        "source-url",
        "source-document",
        "file",
    )
}


def _pick(chunk: dict[str, Any], kind: str, *keys: str) -> dict[str, Any]:
    part = {"type": kind}
    for key in keys:
        if chunk.get(key) is not None:
            part[key] = chunk[key]
    return part
