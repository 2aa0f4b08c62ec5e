"""OpenAI-compatible chat completions, streamed (OpenAI, Workers AI, vLLM, Ollama, ...).

UI messages become chat completion messages (text, images by URL, and each assistant
step's tool calls followed by their results); the streamed deltas become provider
events (text, reasoning, tool calls). HTTP errors, error payloads, broken streams and
timeouts raise `UpstreamError` with a message that never contains the key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .base import (
    Event,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    UpstreamError,
)

_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}
_ERROR_BODY_BYTES = 4096


def is_tool_part(part: dict[str, Any]) -> bool:
    kind = str(part.get("type", ""))
    return kind == "dynamic-tool" or kind.startswith("tool-")


def tool_name(part: dict[str, Any]) -> str:
    if part.get("type") == "dynamic-tool":
        return str(part.get("toolName", ""))
    return str(part.get("type", "")).removeprefix("tool-")


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            content.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "file":
            media = str(part.get("mediaType", ""))
            if media.startswith("image/"):
                content.append({"type": "image_url", "image_url": {"url": part.get("url")}})
            else:
                name = part.get("filename") or "file"
                content.append({"type": "text", "text": f"[attached {name} ({media})]"})
    if all(c["type"] == "text" for c in content):
        return "".join(c["text"] for c in content)
    return content


def _assistant_steps(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One assistant message per step, each followed by its tool results."""
    steps: list[list[dict[str, Any]]] = [[]]
    for part in parts:
        if part.get("type") == "step-start":
            if steps[-1]:
                steps.append([])
        else:
            steps[-1].append(part)
    out: list[dict[str, Any]] = []
    for step in steps:
        text = "".join(str(p.get("text", "")) for p in step if p.get("type") == "text")
        calls, results = [], []
        for part in step:
            if not is_tool_part(part):
                continue
            state = part.get("state")
            if state not in ("output-available", "output-error", "output-denied"):
                continue  # a call without a result cannot be sent back
            call_id = str(part.get("toolCallId", ""))
            arguments = json.dumps(part.get("input") if part.get("input") is not None else {})
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool_name(part), "arguments": arguments},
                }
            )
            if state == "output-available":
                result = json.dumps(part.get("output"))
            elif state == "output-denied":
                result = "error: the user denied this tool call"
            else:
                result = f"error: {part.get('errorText', 'the tool failed')}"
            results.append({"role": "tool", "tool_call_id": call_id, "content": result})
        if not text and not calls:
            continue
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        out.append(message)
        out += results
    return out


def to_chat_messages(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """UI messages as chat completion messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role, parts = message.get("role"), message.get("parts") or []
        if role == "assistant":
            out += _assistant_steps(parts)
        elif role == "system":
            text = "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
            out.append({"role": "system", "content": text})
        else:
            out.append({"role": "user", "content": _user_content(parts)})
    return out


def _error_message(status: int, body: bytes) -> str:
    detail = ""
    try:
        payload = json.loads(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            detail = str(error.get("message") or "")
        elif isinstance(error, str):
            detail = error
        elif isinstance(payload, dict) and isinstance(payload.get("errors"), list):
            detail = "; ".join(str(e.get("message", e)) for e in payload["errors"])
    except (ValueError, AttributeError):
        detail = body.decode("utf-8", "replace").strip()
    detail = " ".join(detail.split())[:300]
    return f"the model provider answered HTTP {status}" + (f": {detail}" if detail else "")


class OpenAICompatibleModel:
    def __init__(self, resolved: dict[str, Any], system: str | None = None) -> None:
        self.config = resolved
        self.system = system
        self.url = str(resolved["base_url"]).rstrip("/") + "/chat/completions"

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        body: dict[str, Any] = {
            "model": self.config["model"],
            "messages": to_chat_messages(messages, self.system),
            "stream": True,
        }
        if tools:
            body["tools"] = tools
        if self.config.get("temperature") is not None:
            body["temperature"] = self.config["temperature"]
        if self.config.get("max_tokens") is not None:
            body["max_tokens"] = self.config["max_tokens"]
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", **self.config.get("headers", {})}
        if self.config.get("api_key"):
            headers["authorization"] = f"Bearer {self.config['api_key']}"
        return headers

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> AsyncIterator[Event]:
        seconds = float(self.config.get("timeout") or 60.0)
        timeout = httpx.Timeout(seconds, connect=min(seconds, 15.0))
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream(
                    "POST", self.url, json=self._request(messages, tools), headers=self._headers()
                ) as response,
            ):
                if response.status_code >= 400:
                    body = b""
                    async for piece in response.aiter_bytes():
                        body += piece
                        if len(body) >= _ERROR_BODY_BYTES:
                            break
                    raise UpstreamError(_error_message(response.status_code, body))
                async for event in self._events(response):
                    yield event
        except httpx.TimeoutException:
            raise UpstreamError(f"the model provider sent nothing for {seconds:g} s") from None
        except httpx.HTTPError as e:
            raise UpstreamError(
                f"could not reach the model provider ({type(e).__name__})"
            ) from None

    async def _events(self, response: httpx.Response) -> AsyncIterator[Event]:
        calls: dict[int, dict[str, Any]] = {}
        reason: str | None = None
        usage: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                payload = json.loads(data)
            except ValueError:
                raise UpstreamError("the model provider sent a malformed stream") from None
            if not isinstance(payload, dict):
                continue
            if payload.get("error"):
                error = payload["error"]
                detail = error.get("message") if isinstance(error, dict) else str(error)
                raise UpstreamError(f"the model provider failed: {str(detail)[:300]}")
            if isinstance(payload.get("usage"), dict):
                usage = {
                    "inputTokens": payload["usage"].get("prompt_tokens"),
                    "outputTokens": payload["usage"].get("completion_tokens"),
                }
            for choice in payload.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    yield ReasoningDelta(reasoning)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    yield TextDelta(content)
                for call in delta.get("tool_calls") or []:
                    for event in _tool_call_delta(calls, call):
                        yield event
                if choice.get("finish_reason"):
                    reason = _REASONS.get(str(choice["finish_reason"]), "other")
        for index in sorted(calls):
            entry = calls[index]
            if not entry["name"]:
                raise UpstreamError("the model provider sent a tool call without a name")
            if not entry["started"]:
                entry["started"] = True
                yield ToolCallStart(entry["id"], entry["name"])
                if entry["arguments"]:
                    yield ToolCallDelta(entry["id"], entry["arguments"])
            yield ToolCall(entry["id"], entry["name"], entry["arguments"])
        if reason is None:
            reason = "tool-calls" if calls else "stop"
        yield Finish(reason, usage)


def _tool_call_delta(calls: dict[int, dict[str, Any]], call: Any) -> list[Event]:
    if not isinstance(call, dict):
        return []
    index = int(call.get("index", len(calls)))
    entry = calls.setdefault(index, {"id": "", "name": "", "arguments": "", "started": False})
    if call.get("id") and not entry["id"]:
        entry["id"] = str(call["id"])
    function = call.get("function") or {}
    if function.get("name") and not entry["name"]:
        entry["name"] = str(function["name"])
    fragment = function.get("arguments") or ""
    if not isinstance(fragment, str):
        fragment = json.dumps(fragment)
    events: list[Event] = []
    if not entry["id"] and entry["name"]:
        entry["id"] = f"call_{index}"
    if not entry["started"] and entry["id"] and entry["name"]:
        entry["started"] = True
        events.append(ToolCallStart(entry["id"], entry["name"]))
        if entry["arguments"]:
            events.append(ToolCallDelta(entry["id"], entry["arguments"]))
    entry["arguments"] += fragment
    if entry["started"] and fragment:
        events.append(ToolCallDelta(entry["id"], fragment))
    return events
