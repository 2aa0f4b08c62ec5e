"""Model configuration: which chat models exist and how to reach them.

CHAT_MODELS is a JSON list of models, each one of three providers::

    [{"id": "gpt-4o-mini", "provider": "openai", "api_key_var": "OPENAI_API_KEY"},
     {"id": "llama", "provider": "workers-ai", "model": "@cf/meta/llama-3.1-8b-instruct"},
     {"id": "local", "provider": "openai", "base_url": "http://127.0.0.1:11434/v1"}]

- `openai`: any OpenAI-compatible chat completions API (`base_url`, default
  https://api.openai.com/v1), streamed, with tool calls.
- `workers-ai`: Cloudflare Workers AI through its OpenAI-compatible endpoint,
  `https://api.cloudflare.com/client/v4/accounts/<account_id>/ai/v1` (`account_id`,
  else the var CLOUDFLARE_ACCOUNT_ID; token from CLOUDFLARE_API_TOKEN by default).
- `echo`: the built-in test model, always available unless CHAT_ECHO_MODEL=false. It
  answers with the text of the last user message, word by word, deterministically;
  `delay_ms` (or CHAT_ECHO_DELAY_MS) waits before each chunk. Use it in tests and
  development; it is not a language model.

Keys are never written in CHAT_MODELS itself: `api_key_var` names the var or secret
(`.dev.vars`, `wrangler secret put`, or the process environment) that holds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Provider = Literal["echo", "openai", "workers-ai"]
OPENAI_BASE_URL = "https://api.openai.com/v1"
WORKERS_AI_BASE_URL = "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1"
DEFAULT_KEY_VARS = {"openai": "OPENAI_API_KEY", "workers-ai": "CLOUDFLARE_API_TOKEN"}


class ModelConfig(BaseModel):
    """One entry of CHAT_MODELS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$")
    provider: Provider
    name: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=1000)
    # The provider's model name (default: id).
    model: str | None = Field(default=None, max_length=200)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    account_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,64}$")
    api_key_var: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    headers: dict[str, str] = Field(default_factory=dict)
    # Server tools the model may call (names registered in flarebase.server.models.tools).
    tools: list[str] = Field(default_factory=list)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    delay_ms: float | None = Field(default=None, ge=0, le=60_000)

    def public(self) -> dict[str, Any]:
        """What GET /api/models shows (never keys or URLs)."""
        return {
            "id": self.id,
            "name": self.name or self.id,
            "description": self.description,
            "provider": self.provider,
            "tools": list(self.tools),
        }


ECHO = ModelConfig(
    id="echo",
    provider="echo",
    name="Echo (test model)",
    description="Answers with your last message, word by word. Deterministic; for tests "
    "and development, not a language model.",
)


def parse_models(value: Any) -> list[ModelConfig]:
    """CHAT_MODELS (a JSON string or a list) as validated configs; ValueError if invalid."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"CHAT_MODELS is not valid JSON: {e}") from None
    if not isinstance(value, list):
        raise ValueError("CHAT_MODELS must be a JSON list of models")
    models = []
    for i, item in enumerate(value):
        try:
            models.append(ModelConfig.model_validate(item))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'model'}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"CHAT_MODELS[{i}]: {problems}") from None
    ids = [m.id for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"CHAT_MODELS: duplicate ids {', '.join(duplicates)}")
    return models


def available_models(configured: list[ModelConfig], echo: bool) -> list[ModelConfig]:
    """The configured models, plus the echo model unless disabled or redefined."""
    if echo and all(m.id != ECHO.id for m in configured):
        return [*configured, ECHO]
    return list(configured)


def lookup_var(name: str, vars: Mapping[str, Any]) -> str | None:
    """A var or secret: the env's vars first, then the process environment."""
    value = vars.get(name)
    if value is None:
        value = os.environ.get(name)
    return str(value) if value not in (None, "") else None


def resolve(
    model: ModelConfig,
    vars: Mapping[str, Any],
    *,
    echo_delay_ms: float = 0.0,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Everything a generation needs to call `model` (URL, key, options), as plain data.

    Raises ValueError when a key or account id it needs is missing.
    """
    out: dict[str, Any] = {
        "id": model.id,
        "provider": model.provider,
        "model": model.model or model.id,
        "tools": list(model.tools),
        "temperature": model.temperature,
        "max_tokens": model.max_tokens,
        "headers": dict(model.headers),
        "timeout": timeout,
        "delay_ms": model.delay_ms if model.delay_ms is not None else echo_delay_ms,
        "base_url": None,
        "api_key": None,
    }
    if model.provider == "echo":
        return out
    if model.provider == "workers-ai":
        account = model.account_id or lookup_var("CLOUDFLARE_ACCOUNT_ID", vars)
        if model.base_url:
            out["base_url"] = model.base_url
        elif account:
            out["base_url"] = WORKERS_AI_BASE_URL.format(account_id=account)
        else:
            raise ValueError(
                f"model {model.id!r} (workers-ai) needs account_id or the var CLOUDFLARE_ACCOUNT_ID"
            )
    else:
        out["base_url"] = model.base_url or OPENAI_BASE_URL
    key_var = model.api_key_var or DEFAULT_KEY_VARS[model.provider]
    out["api_key"] = lookup_var(key_var, vars)
    if out["api_key"] is None and not model.base_url:
        raise ValueError(f"model {model.id!r} needs an API key in the var or secret {key_var}")
    return out
