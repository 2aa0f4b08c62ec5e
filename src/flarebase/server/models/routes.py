"""GET /api/models: the chat models this server offers (no keys, no URLs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..deps import get_settings
from ..settings import Settings
from .config import available_models, parse_models

router = APIRouter()


class ModelOut(BaseModel):
    id: str
    name: str
    description: str
    provider: str = Field(description="openai, workers-ai or echo")
    tools: list[str]


class ModelList(BaseModel):
    models: list[ModelOut]
    defaultModel: str


@router.get("/api/models", tags=["chat"], response_model=ModelList)
async def list_models(settings: Annotated[Settings, Depends(get_settings)]) -> dict[str, Any]:
    """The configured models (CHAT_MODELS) and the default one (CHAT_DEFAULT_MODEL)."""
    models = available_models(parse_models(settings.chat_models), settings.chat_echo_model)
    return {"models": [m.public() for m in models], "defaultModel": settings.chat_default_model}
