"""The memory API: ingest documents, list and delete them, search them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import UploadFile

from ...platform.errors import ConfigError
from ..auth import CurrentUser, RegularUser, User
from ..deps import get_env, get_settings
from ..errors import ApiError, not_found
from ..settings import Settings
from .config import make_embedder, with_cache
from .embeddings import Embedder, EmbeddingError
from .extract import ExtractError
from .service import IngestInterrupted, Memory, NotFound

log = logging.getLogger("flarebase.server.memory")

Kind = Literal["text", "markdown", "pdf"]
DocumentId = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
_STATE = "flarebase_memory"


@asynccontextmanager
async def _prepare_at_start(app: FastAPI) -> AsyncIterator[None]:
    """At start: build the embedder (bad settings stop the server) and prepare the
    index: created on the local provider if missing, dimensions and model checked."""
    env, settings = app.state.env, app.state.settings
    if getattr(env, settings.memory_binding, None) is None:
        log.info(
            "memory: no Vectorize binding %s; /api/memory answers 503", settings.memory_binding
        )
    else:
        memory = _memory(app, env, settings)  # bad embedding settings: ConfigError, no start
        try:
            done = await memory.prepare()  # wrong dimensions or model: ConfigError, no start
        except ConfigError:
            raise
        except Exception as e:  # e.g. migrations not applied yet: retried on first use
            log.warning("memory: could not prepare index %s: %s", settings.memory_binding, e)
            yield
            return
        _state(app).prepared.add(settings.memory_binding)
        log.info(
            "memory: index %s %s (%s)", settings.memory_binding, done, memory.embedder.model_id
        )
    yield


router = APIRouter(tags=["memory"], lifespan=_prepare_at_start)


class _State:
    def __init__(self) -> None:
        self.embedder: Embedder | None = None
        self.prepared: set[str] = set()
        self.lock: asyncio.Lock | None = None


def _state(app: Any) -> _State:
    state = getattr(app.state, _STATE, None)
    if state is None:
        state = _State()
        setattr(app.state, _STATE, state)
    return state


def _memory(app: Any, env: Any, settings: Settings) -> Memory:
    state = _state(app)
    if state.embedder is None:
        state.embedder = make_embedder(settings, getattr(env, "vars", {}) or {})
    kv = getattr(env, "KV", None)
    return Memory(
        db=env.DB,
        index=getattr(env, settings.memory_binding),
        bucket=env.BUCKET,
        embedder=with_cache(state.embedder, kv, settings.memory_embedding_cache_ttl),
        binding_name=settings.memory_binding,
        chunk_chars=settings.memory_chunk_chars,
        chunk_overlap=settings.memory_chunk_overlap,
        batch=settings.memory_ingest_batch,
    )


async def get_memory(request: Request) -> Memory:
    """The memory service for this request's env, prepared once per app (503
    `memory_unavailable` when there is no binding or the index does not fit)."""
    env, settings = get_env(request), get_settings(request)
    if getattr(env, settings.memory_binding, None) is None:
        raise ApiError(
            503,
            "memory_unavailable",
            f"no Vectorize binding {settings.memory_binding} in wrangler.toml "
            "(add a [[vectorize]] entry; see flarebase.server.memory)",
        )
    state = _state(request.app)
    try:
        memory = _memory(request.app, env, settings)
        if settings.memory_binding not in state.prepared:
            state.lock = state.lock or asyncio.Lock()
            async with state.lock:
                if settings.memory_binding not in state.prepared:
                    await memory.prepare()
                    state.prepared.add(settings.memory_binding)
    except ConfigError as e:
        raise ApiError(503, "memory_unavailable", str(e)) from None
    return memory


# -- shapes --------------------------------------------------------------------------


class DocumentOut(BaseModel):
    id: str
    userId: str
    title: str
    kind: Kind
    status: Literal["pending", "indexing", "ready", "deleting"] = Field(
        description="ready: searchable; pending/indexing: interrupted, POST .../resume"
    )
    shared: bool
    fileId: str | None = Field(description="the upload it came from, if any")
    size: int = Field(description="bytes of the original")
    chars: int = Field(description="characters of extracted text")
    chunks: int
    indexed: int = Field(description="chunks with vectors so far")
    model: str = Field(description="the embedding model of its vectors")
    error: str | None = Field(description="why the last ingest attempt stopped")
    createdAt: str
    updatedAt: str


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    nextCursor: str | None = Field(description="pass as `cursor` for the next page")


class IngestJson(BaseModel):
    """Either `text` (text or Markdown) or `fileId` (an upload of POST /api/files/upload)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1)
    fileId: str | None = Field(default=None, min_length=1, max_length=100)
    title: str | None = Field(default=None, max_length=200)
    kind: Kind | None = Field(default=None, description="default: detected")
    shared: bool = Field(default=False, description="searchable by every user (admins only)")

    @model_validator(mode="after")
    def _one_source(self) -> IngestJson:
        if (self.text is None) == (self.fileId is None):
            raise ValueError("give either text or fileId")
        if self.text is not None and self.kind == "pdf":
            raise ValueError("text cannot be a PDF; upload the file (multipart) instead")
        return self


class SearchFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documentId: DocumentId | list[DocumentId] | None = Field(
        default=None, description="only these documents (at most 20)"
    )
    kind: Kind | list[Kind] | None = None
    shared: bool | None = Field(
        default=None, description="true: only shared documents; false: only your own"
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    topK: int = Field(default=5, ge=1, le=50)
    filter: SearchFilter | None = None


class MatchOut(BaseModel):
    id: str = Field(description="the vector id: <documentId>:<chunk>")
    score: float = Field(description="cosine similarity, higher is nearer")
    text: str
    documentId: str
    chunk: int
    title: str
    kind: Kind
    shared: bool
    start: int = Field(description="offset of the chunk in the document's text")
    end: int
    page: int | None = Field(description="PDF page the chunk starts on")
    heading: str = Field(description="Markdown headings above the chunk")
    fileId: str | None


class SearchOut(BaseModel):
    matches: list[MatchOut]
    model: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    422: {"description": "invalid input; `fields` lists each problem"},
    503: {"description": "memory is not configured (no index binding, wrong dimensions)"},
}
_MULTIPART = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "text, Markdown or PDF"},
        "title": {"type": "string", "maxLength": 200},
        "kind": {"type": "string", "enum": ["text", "markdown", "pdf"]},
        "shared": {"type": "boolean"},
    },
}


def _ingest_body() -> dict[str, Any]:
    schema = IngestJson.model_json_schema()
    schema.pop("title", None)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": _MULTIPART},
            },
        }
    }


# -- routes --------------------------------------------------------------------------


@router.post(
    "/api/memory/documents",
    status_code=201,
    response_model=DocumentOut,
    responses={
        **_ERRORS,
        403: {"description": "guests cannot add documents; only admins can share them"},
        404: {"description": "no such file (fileId)"},
        413: {"description": "the document is over MEMORY_MAX_BYTES"},
        415: {"description": "not JSON or multipart, or not text, Markdown or PDF"},
        502: {"description": "the embedding provider refused; the document can be resumed"},
        503: {
            "description": "the embedding provider is unavailable (or memory is not "
            "configured); the document can be resumed"
        },
    },
    openapi_extra=_ingest_body(),
)
async def add_document(request: Request, user: RegularUser) -> Any:
    """Add a document to the user's memory and index it for search: a multipart upload
    (field `file`, plus `title`, `kind`, `shared`), or JSON with `text` (text or
    Markdown) or `fileId` (a file uploaded with POST /api/files/upload). Its text is
    extracted (PDF pages with pypdf), cut into overlapping chunks, embedded, and
    stored in Vectorize; the answer is the document, `status: ready`. If indexing
    stops part way (the embedding provider failed), the answer is 502/503 with
    `document`; POST /api/memory/documents/{id}/resume continues it."""
    settings = get_settings(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        body = await _json_body(request)
        _may_share(user, body.shared)
        memory = await get_memory(request)
        if body.fileId is not None:
            call = memory.ingest_file(
                user.id, body.fileId, title=body.title, kind=body.kind, shared=body.shared
            )
        else:
            assert body.text is not None
            data = body.text.encode("utf-8", "surrogatepass")
            _within(len(data), settings)
            call = memory.ingest(
                user.id, data, title=body.title, kind=body.kind or "text", shared=body.shared
            )
    elif media == "multipart/form-data":
        upload, title, kind, shared = await _form_body(request, settings)
        _may_share(user, shared)
        memory = await get_memory(request)
        call = memory.ingest(
            user.id,
            upload[1],
            title=title or upload[0],
            kind=kind,
            filename=upload[0],
            content_type=upload[2],
            shared=shared,
        )
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send JSON ({text} or {fileId}) or multipart/form-data with field 'file'",
        )
    try:
        row = await call
    except ExtractError as e:
        status = 415 if e.code == "unsupported_document_type" else 422
        raise ApiError(status, e.code, e.message) from None
    except NotFound:
        raise not_found("file") from None
    except IngestInterrupted as e:
        raise _interrupted(e) from None
    return row.to_json()


@router.get("/api/memory/documents", response_model=DocumentList, responses=_ERRORS)
async def list_documents(
    request: Request,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    shared: Annotated[bool, Query(description="include documents shared with everyone")] = False,
) -> Any:
    """The user's documents, newest first (with `shared=true`, shared ones too)."""
    memory = await get_memory(request)
    rows = await memory.list(user.id, include_shared=shared, limit=limit + 1, before=cursor)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = f"{rows[-1].created_at}|{rows[-1].id}" if more and rows else None
    return {"documents": [r.to_json() for r in rows], "nextCursor": next_cursor}


@router.get(
    "/api/memory/documents/{document_id}",
    response_model=DocumentOut,
    responses={**_ERRORS, 404: {"description": "no such document (or not yours)"}},
)
async def get_document(
    request: Request, user: CurrentUser, document_id: Annotated[str, Path(max_length=64)]
) -> Any:
    """One of the user's documents, or a shared one (its status and progress)."""
    memory = await get_memory(request)
    try:
        return (await memory.get(user.id, document_id)).to_json()
    except NotFound:
        raise not_found("document") from None


@router.delete(
    "/api/memory/documents/{document_id}",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 404: {"description": "no such document (or not yours)"}},
)
async def delete_document(
    request: Request, user: CurrentUser, document_id: Annotated[str, Path(max_length=64)]
) -> Response:
    """Delete one of the user's documents and every one of its vectors (and its
    stored original; an upload it came from stays in /api/files)."""
    memory = await get_memory(request)
    try:
        await memory.delete(user.id, document_id)
    except NotFound:
        raise not_found("document") from None
    return Response(status_code=204)


@router.post(
    "/api/memory/documents/{document_id}/resume",
    response_model=DocumentOut,
    responses={
        **_ERRORS,
        404: {"description": "no such document (or not yours)"},
        502: {"description": "the embedding provider refused again"},
        503: {"description": "the embedding provider is unavailable again"},
    },
)
async def resume_document(
    request: Request, user: RegularUser, document_id: Annotated[str, Path(max_length=64)]
) -> Any:
    """Continue indexing a document whose ingest stopped part way, from the last chunk
    recorded (nothing is embedded twice); a ready document is answered as it is."""
    memory = await get_memory(request)
    try:
        row = await memory.get(user.id, document_id)
        if row.user_id != user.id:
            raise NotFound(document_id)
        row = await memory.resume(document_id)
    except NotFound:
        raise not_found("document") from None
    except ExtractError as e:
        raise ApiError(422, e.code, e.message) from None
    except IngestInterrupted as e:
        raise _interrupted(e) from None
    except ConfigError as e:
        raise ApiError(409, "model_mismatch", str(e)) from None
    return row.to_json()


@router.post("/api/memory/search", response_model=SearchOut, responses=_ERRORS)
async def search(request: Request, user: CurrentUser, body: SearchRequest) -> Any:
    """The chunks nearest to `query` among the user's documents and shared ones, best
    first. `filter` narrows by document, kind, or shared/own."""
    memory = await get_memory(request)
    where = body.filter or SearchFilter()
    ids = [where.documentId] if isinstance(where.documentId, str) else where.documentId
    kinds = [where.kind] if isinstance(where.kind, str) else where.kind
    if ids is not None and len(ids) > 20:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "filter", "documentId"),
                    "msg": "at most 20 ids",
                    "type": "value_error",
                }
            ]
        )
    try:
        matches = await memory.search(
            user.id, body.query, top_k=body.topK, document_ids=ids, kinds=kinds, shared=where.shared
        )
    except EmbeddingError as e:
        raise ApiError(
            503 if e.retryable else 502, "embedding_failed", f"could not embed the query: {e}"
        ) from None
    return {"matches": [m.to_json() for m in matches], "model": memory.embedder.model_id}


# -- helpers -------------------------------------------------------------------------


def _may_share(user: User, shared: bool) -> None:
    if shared and not user.has_role("admin"):
        raise ApiError(403, "forbidden", "only admins can share documents with every user")


def _within(size: int, settings: Settings) -> None:
    if size > settings.memory_max_bytes:
        raise ApiError(
            413,
            "document_too_large",
            f"the document is over {settings.memory_max_bytes} bytes",
            limit=settings.memory_max_bytes,
        )


async def _json_body(request: Request) -> IngestJson:
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "invalid JSON", "type": "json_invalid"}]
        ) from None
    try:
        return IngestJson.model_validate(raw)
    except ValidationError as e:
        errors = [
            {"loc": ("body", *err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in e.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from None


async def _form_body(
    request: Request, settings: Settings
) -> tuple[tuple[str | None, bytes, str | None], str | None, str | None, bool]:
    """((file name, bytes, declared type), title, kind, shared) of a multipart body."""
    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid("a file is required (multipart field 'file')", "file")
        data = await upload.read(settings.memory_max_bytes + 1)
        _within(len(data), settings)
        if not data:
            raise _invalid("the file is empty", "file")
        fields = {}
        for name in ("title", "kind", "shared"):
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                raise _invalid("must be a text field", name)
            fields[name] = value
        title, kind, shared_text = fields["title"], fields["kind"], fields["shared"]
        if title is not None and len(title) > 200:
            raise _invalid("at most 200 characters", "title")
        if kind is not None and kind not in ("text", "markdown", "pdf"):
            raise _invalid("one of text, markdown, pdf", "kind")
        shared = (shared_text or "false").strip().lower()
        if shared not in ("true", "false", "1", "0"):
            raise _invalid("true or false", "shared")
        return (
            (upload.filename, data, upload.content_type),
            title or None,
            kind,
            shared in ("true", "1"),
        )
    finally:
        await form.close()


def _invalid(message: str, field: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _interrupted(e: IngestInterrupted) -> ApiError:
    cause = e.cause
    retryable = not isinstance(cause, EmbeddingError) or cause.retryable
    error = ApiError(
        503 if retryable else 502,
        "ingest_interrupted",
        f"indexing stopped after {e.document.indexed} of {e.document.chunks} chunks: {cause}; "
        f"POST /api/memory/documents/{e.document.id}/resume continues it",
        document=e.document.to_json(),
    )
    return error
