"""The embedder the settings ask for (MEMORY_EMBEDDINGS and friends), cached in KV."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ...platform.errors import ConfigError
from .embeddings import (
    OPENAI_BASE_URL,
    WORKERS_AI_DEFAULT_MODEL,
    CachedEmbedder,
    Embedder,
    HashEmbedder,
    OpenAIEmbedder,
    WorkersAIEmbedder,
)

PROVIDERS = ("hash", "workers-ai", "openai", "minilm")
DEFAULT_KEY_VARS = {"openai": "OPENAI_API_KEY", "workers-ai": "CLOUDFLARE_API_TOKEN"}


def lookup_var(name: str, vars: Mapping[str, Any]) -> str | None:
    """A var or secret: the env's vars first, then the process environment."""
    value = vars.get(name)
    if value is None:
        value = os.environ.get(name)
    return str(value) if value not in (None, "") else None


def make_embedder(settings: Any, vars: Mapping[str, Any]) -> Embedder:
    """The provider MEMORY_EMBEDDINGS names, configured from the settings; ConfigError
    when a key, account or model it needs is missing."""
    provider = settings.memory_embeddings
    model = settings.memory_embedding_model
    dims = settings.memory_embedding_dimensions
    try:
        if provider == "hash":
            return HashEmbedder(dims or 384)
        if provider == "minilm":
            from .minilm import DIMENSIONS, MiniLMEmbedder

            if dims not in (None, DIMENSIONS):
                raise ValueError(f"minilm makes {DIMENSIONS} dimensions, not {dims}")
            return MiniLMEmbedder(batch_size=min(settings.memory_embedding_batch, 64))
        key_var = settings.memory_embedding_api_key_var or DEFAULT_KEY_VARS[provider]
        key = lookup_var(key_var, vars)
        if provider == "workers-ai":
            base_url = settings.memory_embedding_base_url
            account = lookup_var("CLOUDFLARE_ACCOUNT_ID", vars)
            if key is None:
                raise ValueError(f"workers-ai embeddings need an API token in {key_var}")
            return WorkersAIEmbedder(
                api_token=key,
                account_id=account,
                model=model or WORKERS_AI_DEFAULT_MODEL,
                dimensions=dims,
                base_url=base_url,
                batch_size=settings.memory_embedding_batch,
            )
        if not model:
            raise ValueError("openai embeddings need MEMORY_EMBEDDING_MODEL")
        base_url = settings.memory_embedding_base_url or OPENAI_BASE_URL
        if key is None and base_url == OPENAI_BASE_URL:
            raise ValueError(f"openai embeddings need an API key in {key_var}")
        return OpenAIEmbedder(
            model=model,
            api_key=key,
            base_url=base_url,
            dimensions=dims,
            batch_size=settings.memory_embedding_batch,
        )
    except ValueError as e:
        raise ConfigError(f"MEMORY_EMBEDDINGS={provider}: {e}") from None


def with_cache(embedder: Embedder, kv: Any, ttl: int) -> Embedder:
    """`embedder` behind the KV cache, or as it is when there is no KV or ttl is 0."""
    if kv is None or ttl <= 0:
        return embedder
    return CachedEmbedder(embedder, kv, ttl=ttl)
