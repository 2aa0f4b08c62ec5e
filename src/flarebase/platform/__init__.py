"""Cloudflare's data products as Python APIs, behind interchangeable providers.

`Env`, `open_env`, `register_provider`, `Project` and `load_project` are imported
on first use: they read wrangler.toml through pydantic, which a Python Worker
(Pyodide) does not have, and `flarebase.platform.workers` must import there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    D1Error,
    DurableObjectError,
    FlarebaseError,
    KVError,
    LimitExceeded,
    QueueError,
    R2Error,
    VectorizeError,
)

if TYPE_CHECKING:
    from .config import Project, load_project
    from .env import Env, open_env, register_provider

# name -> the submodule that defines it, imported when the name is first used
_LAZY = {
    "Project": ".config",
    "load_project": ".config",
    "Env": ".env",
    "open_env": ".env",
    "register_provider": ".env",
}

__all__ = [
    "ConfigError",
    "D1Error",
    "DurableObjectError",
    "Env",
    "FlarebaseError",
    "KVError",
    "LimitExceeded",
    "Project",
    "QueueError",
    "R2Error",
    "VectorizeError",
    "load_project",
    "open_env",
    "register_provider",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later uses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
