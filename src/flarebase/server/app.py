"""The ASGI app: plain objects, constructible in a test with any env."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .errors import install_error_handlers
from .middleware import PerRequest
from .settings import Settings


def create_app(env: Any, settings: Settings | None = None) -> FastAPI:
    """The backend for `env` (an `open_env` env, or a Worker's env)."""
    settings = settings or Settings.from_env(getattr(env, "vars", {}))
    app = FastAPI(title="flarebase", version="0.1.0")
    app.state.env = env
    app.state.settings = settings
    install_error_handlers(app)

    app.add_middleware(PerRequest, max_body_bytes=settings.max_body_bytes)

    @app.get("/api/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        return {"ok": True, "bindings": sorted(env) if hasattr(env, "__iter__") else []}

    return app
