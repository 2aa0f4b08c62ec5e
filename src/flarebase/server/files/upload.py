"""Reading one uploaded file from a `multipart/form-data` request, as it streams in.

The part named `file` is copied into a spooled temporary file (memory up to 1 MiB,
then disk) and counted as it arrives: past the size limit the request is refused at
once (413), without reading the rest. Other fields are skipped, never stored. The
client's file name is kept only as a display name; its Content-Type is ignored.
"""

from __future__ import annotations

import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import anyio.to_thread
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import ApiError
from .sniff import HEAD_BYTES

FIELD = "file"
SPOOL_IN_MEMORY = 1 << 20
MAX_HEADER_BYTES = 8 * 1024  # per part, all headers together
MAX_PARTS = 100
MAX_NAME_CHARS = 255


def invalid(message: str, *loc: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": message, "type": "value_error"}])


def too_large(limit: int) -> ApiError:
    shown = f"{limit / 1024 / 1024:g} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return ApiError(413, "file_too_large", f"the file is over {shown}", limit=limit)


class SpooledUpload:
    """The received file: a seekable, readable binary file of known `size` (what
    `R2Bucket.put` streams from without reading it all into memory)."""

    def __init__(self, spool: IO[bytes], size: int, head: bytes, filename: str | None) -> None:
        self._spool = spool
        self.size = size
        self.head = head
        self.filename = filename

    def read(self, n: int = -1) -> bytes:
        return self._spool.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._spool.seek(offset, whence)

    def tell(self) -> int:
        return self._spool.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._spool.close()


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0
    is_file: bool = False


def _header_text(raw: bytes) -> str:
    return raw.decode("latin-1")


def safe_name(raw: str | None) -> str:
    """A display name from the client's file name: no folders, no control or format
    characters, NFC, at most 255 characters; "upload" when nothing is left."""
    if not raw:
        return "upload"
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        " " if unicodedata.category(c) in ("Zs", "Zl", "Zp") else c
        for c in name
        if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name or "upload"


async def read_upload(request: Request, max_bytes: int) -> SpooledUpload:
    """The request's one `file` part, spooled. 415 when the request is not multipart;
    422 (listing `body.file`) when the body is malformed, has no file or more than
    one, or the file is empty; 413 as soon as the file passes `max_bytes`."""
    media, options = parse_options_header(request.headers.get("content-type"))
    if media != b"multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", "send the file as multipart/form-data, field 'file'"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise invalid("the multipart/form-data Content-Type has no boundary")

    events: list[tuple[str, bytes]] = []

    def on(kind: str) -> Callable[..., None]:
        def with_data(data: bytes, start: int, end: int) -> None:
            events.append((kind, data[start:end]))

        return with_data

    def mark(kind: str) -> Callable[[], None]:
        return lambda: events.append((kind, b""))

    callbacks: Any = {
        "on_part_begin": mark("part_begin"),
        "on_header_field": on("header_field"),
        "on_header_value": on("header_value"),
        "on_header_end": mark("header_end"),
        "on_headers_finished": mark("headers_finished"),
        "on_part_data": on("part_data"),
        "on_part_end": mark("part_end"),
        "on_end": mark("end"),
    }
    parser = MultipartParser(boundary, callbacks)
    spool: Any = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        size, head, filename = await _receive(request, parser, events, spool, max_bytes)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return SpooledUpload(spool, size, head, filename)


async def _receive(
    request: Request,
    parser: MultipartParser,
    events: list[tuple[str, bytes]],
    spool: Any,
    max_bytes: int,
) -> tuple[int, bytes, str | None]:
    part = _Part()
    field_name, value = b"", b""
    parts = 0
    found = finished = False
    size = 0
    head = b""
    filename: str | None = None
    async for chunk in request.stream():
        if not chunk:
            continue
        try:
            parser.write(chunk)
        except MultipartParseError as e:
            raise invalid(f"malformed multipart body: {e}") from None
        batch, events[:] = list(events), []
        for kind, data in batch:
            if kind == "part_begin":
                parts += 1
                if parts > MAX_PARTS:
                    raise invalid(f"more than {MAX_PARTS} parts")
                part, field_name, value = _Part(), b"", b""
            elif kind in ("header_field", "header_value"):
                part.header_bytes += len(data)
                if part.header_bytes > MAX_HEADER_BYTES:
                    raise invalid("a part's headers are too long")
                if kind == "header_field":
                    field_name += data
                else:
                    value += data
            elif kind == "header_end":
                part.headers[_header_text(field_name).strip().lower()] = _header_text(value)
                field_name, value = b"", b""
            elif kind == "headers_finished":
                disposition, params = parse_options_header(
                    part.headers.get("content-disposition", "")
                )
                if disposition == b"form-data" and params.get(b"name") == FIELD.encode():
                    if found:
                        raise invalid("send one file per upload", FIELD)
                    found = part.is_file = True
                    raw_name = params.get(b"filename")
                    if raw_name is not None:
                        filename = raw_name.decode("utf-8", errors="replace")
            elif kind == "part_data" and part.is_file:
                size += len(data)
                if size > max_bytes:
                    raise too_large(max_bytes)
                if len(head) < HEAD_BYTES:
                    head += data[: HEAD_BYTES - len(head)]
                if getattr(spool, "_rolled", False):
                    await anyio.to_thread.run_sync(spool.write, data)
                else:
                    spool.write(data)
            elif kind == "end":
                finished = True
    if not finished:
        raise invalid("the multipart body is incomplete (no closing boundary)")
    if not found:
        raise RequestValidationError(
            [{"loc": ("body", FIELD), "msg": "Field required", "type": "missing"}]
        )
    if size == 0:
        raise invalid("the file is empty", FIELD)
    return size, head, filename
