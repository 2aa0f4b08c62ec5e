"""What handlers depend on: the env (bindings) and the settings."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .settings import Settings


def get_env(request: Request) -> Any:
    """The bindings: from the app (local, bridge) or from the Worker's ASGI scope."""
    env = request.scope.get("env")
    return env if env is not None else request.app.state.env


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]
