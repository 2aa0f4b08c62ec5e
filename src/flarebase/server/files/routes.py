"""The uploads API: upload, read (ranges, etags, signed links), share, delete."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..auth import CurrentUser, RegularUser, current_user
from ..deps import get_env, get_settings
from ..errors import ApiError, not_found
from ..settings import Settings
from . import links, ranges, store
from .sniff import sniff
from .store import FileRow
from .upload import FIELD, read_upload, safe_name

log = logging.getLogger("flarebase.server.files")
router = APIRouter(tags=["files"])


class Uploaded(BaseModel):
    """Vercel Blob's `put()` answer, as vercel/chatbot's upload route returns it, plus
    the file's id, size and display name."""

    id: str
    url: str = Field(description="GET it with the owner's session (or share it)")
    downloadUrl: str = Field(description="the same, as an attachment")
    pathname: str = Field(description="the R2 key: users/<user id>/uploads/<id>.<ext>")
    contentType: str = Field(description="detected from the content")
    contentDisposition: str
    size: int
    name: str = Field(description="the client's file name, sanitized")
    createdAt: str


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expiresIn: int | None = Field(
        default=None, ge=1, description="seconds (default FILE_URL_TTL, at most FILE_URL_MAX_TTL)"
    )


class Shared(BaseModel):
    url: str = Field(description="opens the file without a session until expiresAt")
    expiresAt: str
    expiresIn: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    404: {"description": "no such file (or not yours)"},
    422: {"description": "invalid input; `fields` lists each problem"},
}


def _upload_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {
                            FIELD: {
                                "type": "string",
                                "format": "binary",
                                "description": description,
                            }
                        },
                    }
                }
            },
        }
    }


def _disposition(kind: str, name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "'")
    ascii_name = ascii_name.replace("?", "_") or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _file_url(request: Request, file_id: str, **query: Any) -> str:
    url = str(request.url_for("read_file", file_id=file_id))
    return f"{url}?{urlencode(query)}" if query else url


@router.post(
    "/api/files/upload",
    status_code=201,
    response_model=Uploaded,
    responses={
        **_ERRORS,
        403: {"description": "guests cannot upload"},
        413: {"description": "the file is over UPLOAD_MAX_BYTES"},
        415: {"description": "not multipart, or a type UPLOAD_ALLOWED_TYPES does not allow"},
    },
    openapi_extra=_upload_body("one file; its type is detected from its content"),
)
async def upload(
    request: Request,
    user: RegularUser,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Any:
    """Store one file (multipart field `file`) in R2 under
    `users/<user id>/uploads/<uuid>.<ext>`. Signed-in regular users only. The size
    limit (UPLOAD_MAX_BYTES) and the allowed types (UPLOAD_ALLOWED_TYPES) are checked
    on the content as it arrives; the client's file name and type are not trusted."""
    received = await read_upload(request, settings.upload_max_bytes)
    try:
        kind = sniff(received.head)
        allowed = settings.upload_types
        if kind is None or kind.content_type not in allowed:
            raise ApiError(
                415,
                "unsupported_file_type",
                f"the file's content is not one of the allowed types: {', '.join(allowed)}",
                allowed=list(allowed),
            )
        env = get_env(request)
        file_id = str(uuid.uuid4())
        key = store.object_key(user.id, file_id, kind.extension)
        name = safe_name(received.filename)
        put = await env.BUCKET.put(
            key,
            received,
            http_metadata={"content_type": kind.content_type},
            custom_metadata={"userId": user.id, "fileId": file_id},
        )
        if put is None:  # only a put with onlyIf may store nothing
            raise RuntimeError(f"R2 stored nothing for {key}")
    finally:
        received.close()
    row = FileRow(
        id=file_id,
        user_id=user.id,
        key=key,
        content_type=kind.content_type,
        size=put.size,
        name=name,
        etag=put.etag,
        created_at=store.now_iso(),
    )
    try:
        await store.insert(env.DB, row)
    except Exception:
        # No row, no file: never leave an object nobody can reach.
        try:
            await env.BUCKET.delete(key)
        except Exception:
            log.exception("could not remove %s after its row failed", key)
        raise
    return {
        "id": row.id,
        "url": _file_url(request, row.id),
        "downloadUrl": _file_url(request, row.id, download=1),
        "pathname": row.key,
        "contentType": row.content_type,
        "contentDisposition": _disposition("inline", row.name),
        "size": row.size,
        "name": row.name,
        "createdAt": row.created_at,
    }


@router.get(
    "/api/files/{file_id}",
    name="read_file",
    response_class=Response,
    responses={
        **_ERRORS,
        200: {"description": "the file", "content": {"application/octet-stream": {}}},
        206: {"description": "the requested range (Content-Range)"},
        304: {"description": "If-None-Match matched the ETag"},
        403: {"description": "the signed link is invalid or expired"},
        416: {"description": "the range lies outside the file"},
    },
)
async def read_file(
    request: Request,
    file_id: Annotated[str, Path(max_length=100)],
    sig: Annotated[str | None, Query(max_length=links.MAX_SIGNATURE_CHARS)] = None,
    exp: Annotated[int | None, Query(description="signed links: expiry, epoch seconds")] = None,
    download: Annotated[bool, Query(description="send as an attachment")] = False,
) -> Response:
    """The file, streamed from R2, to its owner (session) or to anyone holding a signed
    link (`sig` and `exp` from POST /api/files/{id}/share) until it expires. Supports
    `Range` (one range: 206, or 416), `If-Range`, and `If-None-Match` against the ETag
    (304)."""
    db = get_env(request).DB
    if sig is not None or exp is not None:
        settings = get_settings(request)
        if sig is None or exp is None or not links.verify(settings.auth_secrets, file_id, exp, sig):
            raise ApiError(403, "invalid_link", "the link is invalid")
        remaining = exp - int(time.time())
        if remaining <= 0:
            raise ApiError(403, "link_expired", "the link has expired")
        row = await store.get(db, file_id)
        cache = f"private, max-age={min(remaining, 3600)}"
    else:
        user = await current_user(request)
        row = await store.get_owned(db, file_id, user.id)
        cache = "private, no-cache"
    if row is None:
        raise not_found("file")
    return await _serve(request, row, cache, download)


async def _serve(request: Request, row: FileRow, cache: str, download: bool) -> Response:
    headers = {
        "ETag": row.http_etag,
        "Last-Modified": row.last_modified,
        "Cache-Control": cache,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": _disposition("attachment" if download else "inline", row.name),
    }
    if ranges.none_match(request.headers.get("if-none-match"), row.http_etag):
        return Response(status_code=304, headers=headers)
    span = None
    if ranges.if_range_holds(request.headers.get("if-range"), row.http_etag, row.last_modified):
        try:
            span = ranges.byte_range(request.headers.get("range"), row.size)
        except ranges.Unsatisfiable:
            raise _unsatisfiable(row.size) from None
    bucket = get_env(request).BUCKET
    if span is None:
        obj = await bucket.get(row.key)
        status = 200
    else:
        first, last = span
        obj = await bucket.get(row.key, range={"offset": first, "length": last - first + 1})
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{row.size}"
    if obj is None or not hasattr(obj, "body"):
        log.warning("file %s has a row but no object %s", row.id, row.key)
        raise not_found("file")
    length = obj.range.length if obj.range and obj.range.length is not None else obj.size
    headers["Content-Length"] = str(length)
    return StreamingResponse(
        _chunks(obj.body), status_code=status, headers=headers, media_type=row.content_type
    )


def _unsatisfiable(size: int) -> ApiError:
    error = ApiError(416, "range_not_satisfiable", f"the file has {size} bytes")
    error.headers["Content-Range"] = f"bytes */{size}"
    return error


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    """The object's body, closed when done or when the client goes away."""
    try:
        async for chunk in body:
            yield bytes(chunk)
    finally:
        await body.aclose()


@router.post(
    "/api/files/{file_id}/share",
    response_model=Shared,
    responses={**_ERRORS, 422: {"description": "expiresIn out of range"}},
)
async def share(
    request: Request,
    file_id: Annotated[str, Path(max_length=100)],
    user: CurrentUser,
    settings: Annotated[Settings, Depends(get_settings)],
    body: Annotated[ShareRequest | None, Body()] = None,
) -> Any:
    """A link that opens the file without a session until it expires (FILE_URL_TTL
    seconds by default). Deleting the file ends every link to it."""
    ttl = body.expiresIn if body is not None and body.expiresIn is not None else None
    if ttl is None:
        ttl = settings.file_url_ttl
    elif ttl > settings.file_url_max_ttl:
        message = f"at most {settings.file_url_max_ttl} seconds (FILE_URL_MAX_TTL)"
        raise RequestValidationError(
            [{"loc": ("body", "expiresIn"), "msg": message, "type": "value_error"}]
        )
    row = await store.get_owned(get_env(request).DB, file_id, user.id)
    if row is None:
        raise not_found("file")
    exp = int(time.time()) + ttl
    secret = settings.auth_secrets[0]
    url = _file_url(request, row.id, exp=exp, sig=links.sign(secret, row.id, exp))
    expires = datetime.fromtimestamp(exp, UTC).isoformat().replace("+00:00", "Z")
    return {"url": url, "expiresAt": expires, "expiresIn": ttl}


@router.delete(
    "/api/files/{file_id}",
    status_code=204,
    response_class=Response,
    response_model=None,
    responses=_ERRORS,
)
async def delete_file(
    request: Request, file_id: Annotated[str, Path(max_length=100)], user: CurrentUser
) -> Response:
    """Delete the file: its object in R2, then its row (so a failure part-way leaves a
    row that answers 404, never an object nobody can reach). Its links stop working."""
    env = get_env(request)
    row = await store.get_owned(env.DB, file_id, user.id)
    if row is None:
        raise not_found("file")
    await env.BUCKET.delete(row.key)
    await store.delete_owned(env.DB, row.id, user.id)
    return Response(status_code=204)
