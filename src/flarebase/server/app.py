"""The ASGI app: plain objects, constructible in a test with any env."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .auth import router as auth_router
from .chat import router as chat_router
from .documents import router as documents_router
from .errors import install_error_handlers
from .files import router as files_router
from .memory import router as memory_router
from .middleware import PerRequest
from .models import router as models_router
from .quotas import IpQuota
from .settings import Settings


def create_app(env: Any, settings: Settings | None = None) -> FastAPI:
    """The backend for `env` (an `open_env` env, or a Worker's env)."""
    settings = settings or Settings.from_env(getattr(env, "vars", {}))
    app = FastAPI(title="flarebase", version="0.1.0")
    app.state.env = env
    app.state.settings = settings
    install_error_handlers(app)

    app.add_middleware(IpQuota)  # inside PerRequest: its D1 call counts in the invocation
    app.add_middleware(PerRequest, max_body_bytes=settings.max_body_bytes)

    @app.get("/api/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        return {"ok": True, "bindings": sorted(env) if hasattr(env, "__iter__") else []}

    app.include_router(chat_router)  # first: routes are matched in order, chat's are hot
    app.include_router(auth_router)
    app.include_router(files_router)
    app.include_router(documents_router)
    app.include_router(models_router)
    app.include_router(memory_router)

    return app
