"""The flarebase backend: an ASGI app built only on platform bindings (`env`)."""

from typing import Any

from .app import create_app


def durable_objects() -> dict[str, Any]:
    """The server's Durable Object classes by class name, for
    `open_env(..., durable_objects=flarebase.server.durable_objects())`."""
    from .chat import ChatStream

    return {"ChatStream": ChatStream}


__all__ = ["create_app", "durable_objects"]
