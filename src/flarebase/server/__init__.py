"""The flarebase backend: an ASGI app built only on platform bindings (`env`)."""

from .app import create_app

__all__ = ["create_app"]
