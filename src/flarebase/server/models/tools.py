"""Server tools: functions a model may call during a response.

    from flarebase.server.models.tools import Tool, register_tool

    async def weather(args: dict) -> dict:
        return {"city": args["city"], "celsius": 21}

    register_tool(Tool("get_weather", "The weather in a city",
                       {"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"]}, weather))

A model uses the tools named in its config (`"tools": ["get_weather"]`). Each call
streams as `tool-input-start/delta/available`, then `tool-output-available` with the
function's JSON result or `tool-output-error` with the error's text (an unknown tool,
arguments that are not a JSON object, or an exception); the results go back to the
model for its next step. Built in: `get_current_time`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object
    run: Callable[[dict[str, Any]], Any | Awaitable[Any]]

    def spec(self) -> dict[str, Any]:
        """The chat completions `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolError(Exception):
    """A tool failed; the message goes to the model and the user as `errorText`."""


_TOOLS: dict[str, Tool] = {}


def register_tool(tool: Tool) -> None:
    _TOOLS[tool.name] = tool


def get_tool(name: str) -> Tool | None:
    return _TOOLS.get(name)


def tool_specs(names: list[str]) -> list[dict[str, Any]]:
    return [tool.spec() for name in names if (tool := _TOOLS.get(name)) is not None]


async def run_tool(name: str, args: dict[str, Any]) -> Any:
    tool = _TOOLS.get(name)
    if tool is None:
        raise ToolError(f"unknown tool {name!r}")
    result = tool.run(args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _current_time(args: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"utc": now.isoformat(timespec="seconds").replace("+00:00", "Z")}


register_tool(
    Tool(
        "get_current_time",
        "The current date and time in UTC (ISO 8601).",
        {"type": "object", "properties": {}, "additionalProperties": False},
        _current_time,
    )
)
