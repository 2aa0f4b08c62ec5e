"""Chat models: configuration (CHAT_MODELS), providers, server tools, GET /api/models.

Providers: any OpenAI-compatible chat completions API (`openai`), Cloudflare Workers
AI through its OpenAI-compatible endpoint (`workers-ai`), and the built-in `echo`
test model, the embedded default. See `config` for the CHAT_MODELS format and
`tools` for server tools.
"""

from __future__ import annotations

from typing import Any

from .base import ModelProvider, UpstreamError
from .config import ModelConfig, available_models, parse_models, resolve
from .echo import EchoModel
from .openai import OpenAICompatibleModel
from .routes import router


def configured_models(settings: Any) -> list[ModelConfig]:
    """The models this server offers, from its settings (CHAT_MODELS, CHAT_ECHO_MODEL)."""
    return available_models(parse_models(settings.chat_models), settings.chat_echo_model)


def find_model(settings: Any, model_id: str | None) -> ModelConfig | None:
    """The model `model_id`, or the default model when `model_id` is None."""
    wanted = model_id or settings.chat_default_model
    return next((m for m in configured_models(settings) if m.id == wanted), None)


def provider_for(resolved: dict[str, Any], system: str | None = None) -> ModelProvider:
    """The provider for a `resolve()`d model."""
    if resolved["provider"] == "echo":
        return EchoModel(float(resolved.get("delay_ms") or 0))
    return OpenAICompatibleModel(resolved, system)


__all__ = [
    "EchoModel",
    "ModelConfig",
    "ModelProvider",
    "OpenAICompatibleModel",
    "UpstreamError",
    "configured_models",
    "find_model",
    "parse_models",
    "provider_for",
    "resolve",
    "router",
]
