"""One response: model events become UI message stream chunks, with server tools.

    start
      start-step, [reasoning-*], text-start, text-delta..., text-end,
      [tool-input-start, tool-input-delta..., tool-input-available | tool-input-error,
       tool-output-available | tool-output-error], finish-step
      (another step while the model asks for tools, up to `max_steps`)
    finish

`emit` stores and publishes each chunk; the caller adds `abort` or `error` when the
response is stopped or fails (UpstreamError), since generation just stops there.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from ..models.base import (
    Finish,
    ModelProvider,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
)
from ..models.tools import ToolError, run_tool, tool_specs
from .assemble import MessageAssembler

Emit = Callable[[dict[str, Any]], Awaitable[None]]


async def generate(
    provider: ModelProvider,
    history: list[dict[str, Any]],
    assembler: MessageAssembler,
    emit: Emit,
    *,
    tools: list[str],
    max_steps: int = 5,
) -> str:
    """Run the model over `history` (UI messages), emitting chunks; the finish reason.

    `assembler` is fed every emitted chunk by the caller; its message is sent back to
    the model for the next step after tool calls.
    """
    specs = tool_specs(tools)
    await emit({"type": "start", "messageId": assembler.id})
    reason = "stop"
    for step in range(max_steps):
        await emit({"type": "start-step"})
        text_id: str | None = None
        reasoning_id: str | None = None
        calls: list[tuple[str, str, Any]] = []  # (id, name, input) ready to run
        answered = 0  # tool calls with a result for the model (an input error is one)
        counter = 0
        # (no timeout per event here: it would cost more than an echo chunk; providers
        # time out themselves, e.g. the OpenAI one after `timeout` s without a byte)
        async for event in provider.stream([*history, assembler.message()], specs):
            if isinstance(event, TextDelta):
                if text_id is None:
                    counter += 1
                    text_id = f"text-{step}-{counter}"
                    await emit({"type": "text-start", "id": text_id})
                await emit({"type": "text-delta", "id": text_id, "delta": event.text})
            elif isinstance(event, ReasoningDelta):
                if reasoning_id is None:
                    counter += 1
                    reasoning_id = f"reasoning-{step}-{counter}"
                    await emit({"type": "reasoning-start", "id": reasoning_id})
                await emit({"type": "reasoning-delta", "id": reasoning_id, "delta": event.text})
            elif isinstance(event, ToolCallStart):
                await emit(
                    {"type": "tool-input-start", "toolCallId": event.id, "toolName": event.name}
                )
            elif isinstance(event, ToolCallDelta):
                await emit(
                    {
                        "type": "tool-input-delta",
                        "toolCallId": event.id,
                        "inputTextDelta": event.text,
                    }
                )
            elif isinstance(event, ToolCall):
                call = await _tool_input(event, emit)
                answered += 1
                if call is not None:
                    calls.append(call)
            elif isinstance(event, Finish):
                reason = event.reason
        if reasoning_id is not None:
            await emit({"type": "reasoning-end", "id": reasoning_id})
        if text_id is not None:
            await emit({"type": "text-end", "id": text_id})
        for call_id, name, args in calls:
            await _run(call_id, name, args, emit, tools)
        await emit({"type": "finish-step"})
        if reason != "tool-calls" or not answered:
            break
    await emit({"type": "finish", "finishReason": reason})
    return reason


async def _tool_input(event: ToolCall, emit: Emit) -> tuple[str, str, Any] | None:
    """`tool-input-available`, or `tool-input-error` when the arguments are not an object."""
    text = event.arguments.strip() or "{}"
    try:
        args = json.loads(text)
        if not isinstance(args, dict):
            raise ValueError("not an object")
    except ValueError:
        await emit(
            {
                "type": "tool-input-error",
                "toolCallId": event.id,
                "toolName": event.name,
                "input": event.arguments,
                "errorText": "the tool's arguments are not a JSON object",
            }
        )
        return None
    await emit(
        {
            "type": "tool-input-available",
            "toolCallId": event.id,
            "toolName": event.name,
            "input": args,
        }
    )
    return event.id, event.name, args


async def _run(call_id: str, name: str, args: Any, emit: Emit, allowed: list[str]) -> None:
    try:
        if name not in allowed:
            raise ToolError(f"unknown tool {name!r}")
        output = await run_tool(name, args)
        json.dumps(output)  # the output must be JSON
    except ToolError as e:
        await emit({"type": "tool-output-error", "toolCallId": call_id, "errorText": str(e)})
        return
    except Exception as e:
        await emit(
            {
                "type": "tool-output-error",
                "toolCallId": call_id,
                "errorText": f"the tool failed: {type(e).__name__}: {e}"[:500],
            }
        )
        return
    await emit({"type": "tool-output-available", "toolCallId": call_id, "output": output})
