"""vercel/chatbot's /api/document and /api/suggestions, on D1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..auth import CurrentUser
from ..deps import get_env
from ..errors import not_found
from . import store
from .store import KINDS, MAX_DOCUMENT_BYTES, Kind

router = APIRouter(tags=["documents"])

DocumentId = Annotated[str, Query(min_length=1, max_length=255, description="the document's id")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    404: {"description": "no such document (or not yours)"},
    422: {"description": "invalid input; `fields` lists each problem"},
}


class DocumentOut(BaseModel):
    id: str
    createdAt: str = Field(description="the version's time, ISO 8601 UTC (ms)")
    title: str
    content: str | None
    kind: str = Field(description=" | ".join(KINDS))
    userId: str


class SuggestionOut(BaseModel):
    id: str
    documentId: str
    documentCreatedAt: str
    originalText: str
    suggestedText: str
    description: str | None
    isResolved: bool
    userId: str
    createdAt: str


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(max_length=1000)
    content: str = Field(default="", description=f"title + content: at most {MAX_DOCUMENT_BYTES}")
    kind: Kind = "text"

    @field_validator("content")
    @classmethod
    def _fits_in_a_row(cls, value: str) -> str:
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > MAX_DOCUMENT_BYTES:
            raise ValueError(f"at most {MAX_DOCUMENT_BYTES} bytes of UTF-8 (D1's row limit)")
        return value


@router.get(
    "/api/document", response_model=list[DocumentOut], responses=_ERRORS, name="get_document"
)
async def get_document(request: Request, id: DocumentId, user: CurrentUser) -> Any:
    """Every version of the document, oldest first."""
    found = await store.versions(get_env(request).DB, id, user.id)
    if not found:
        raise not_found("document")
    return [d.to_json() for d in found]


@router.post(
    "/api/document",
    status_code=201,
    response_model=DocumentOut,
    responses=_ERRORS,
    name="save_document",
)
async def save_document(
    request: Request, id: DocumentId, body: DocumentIn, user: CurrentUser
) -> Any:
    """Save a new version (the first one creates the document). The id of another
    user's document answers 404."""
    version = await store.save_version(
        get_env(request).DB, id, user.id, title=body.title, kind=body.kind, content=body.content
    )
    if version is None:
        raise not_found("document")
    return version.to_json()


@router.delete(
    "/api/document", response_model=list[DocumentOut], responses=_ERRORS, name="delete_document"
)
async def delete_document(
    request: Request,
    id: DocumentId,
    user: CurrentUser,
    timestamp: Annotated[
        datetime | None,
        Query(
            description="delete the versions created after this time (ISO 8601); "
            "without it, every version"
        ),
    ] = None,
) -> Any:
    """Delete the versions created after `timestamp` (vercel/chatbot's revert) and
    their suggestions, or the whole document without it; the deleted versions."""
    after = None
    if timestamp is not None:
        try:
            after = store.iso(timestamp)
        except (OverflowError, ValueError):
            raise RequestValidationError(
                [{"loc": ("query", "timestamp"), "msg": "out of range", "type": "value_error"}]
            ) from None
    deleted = await store.delete_versions_after(get_env(request).DB, id, user.id, after)
    if deleted is None:
        raise not_found("document")
    return [d.to_json() for d in deleted]


@router.get(
    "/api/suggestions",
    response_model=list[SuggestionOut],
    responses=_ERRORS,
    name="get_suggestions",
)
async def get_suggestions(
    request: Request,
    documentId: DocumentId,  # vercel/chatbot's name
    user: CurrentUser,
) -> Any:
    """The suggestions on the document, oldest first."""
    db = get_env(request).DB
    if not await store.versions(db, documentId, user.id):
        raise not_found("document")
    return [s.to_json() for s in await store.suggestions(db, documentId, user.id)]
