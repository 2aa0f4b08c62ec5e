"""Cloudflare's data products as Python APIs, behind interchangeable providers."""

from .config import Project, load_project
from .env import Env, open_env, register_provider
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
