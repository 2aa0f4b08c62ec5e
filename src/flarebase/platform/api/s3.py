"""R2's S3 API, as the `api` provider's R2 binding needs it (boto3, run in threads).

What lives here is the translation between the binding's shapes and S3's: errors,
object metadata, `onlyIf` conditions and ranges as HTTP headers, response bodies
read chunk by chunk, and values spooled with their length and digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import R2Error
from ..r2 import (
    Condition,
    R2Checksums,
    R2HTTPMetadata,
    R2Object,
    R2OperationError,
    R2Range,
    check_storage_class,
    etag_header,
    r2_error,
    type_error,
    value_chunks,
)

CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024
STORAGE_CLASSES = {"Standard": "STANDARD", "InfrequentAccess": "STANDARD_IA"}
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HTTP_PARAMS = {
    "content_type": "ContentType",
    "content_language": "ContentLanguage",
    "content_disposition": "ContentDisposition",
    "content_encoding": "ContentEncoding",
    "cache_control": "CacheControl",
    "cache_expiry": "Expires",
}


def make_client(
    endpoint: str, key_id: str, secret: str, region: str, timeout: float, retries: int
) -> Any:
    """An S3 client of R2's endpoint. Path-style addressing, as R2's docs show it.
    Boto3's default x-amz-checksum-* headers are switched off (S3-compatible services
    differ in which they accept); puts send Content-MD5 instead."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": retries + 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        config=config,
    )


# -- errors ----------------------------------------------------------------------------------


def status_of(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def code_of(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code") or "")


def s3_error(action: str, e: Exception) -> R2Error:
    """R2's own S3 error (its code and message), with the v4 code the binding would give
    when the error is one flarebase knows (`R2OperationError`)."""
    if not isinstance(e, ClientError):
        return R2Error(f"{action}: {e}", code="R2_ERROR")
    code = code_of(e) or str(status_of(e))
    message = str(e.response.get("Error", {}).get("Message") or code)
    try:
        v4code = r2_error(action, code).v4code
    except KeyError:
        v4code = None
    text = f"{action}: {message}" + (f" ({v4code})" if v4code is not None else "")
    return R2OperationError(text, code=code, action=action, status=status_of(e), v4code=v4code)


async def run(action: str, fn: Any, /, **params: Any) -> Any:
    """A boto3 call in a thread; its failures as R2 errors."""
    try:
        return await asyncio.to_thread(fn, **params)
    except (ClientError, BotoCoreError) as e:
        raise s3_error(action, e) from None


# -- metadata --------------------------------------------------------------------------------


def http_params(http: R2HTTPMetadata) -> dict[str, Any]:
    return {param: v for name, param in _HTTP_PARAMS.items() if (v := getattr(http, name))}


def storage_param(action: str, storage_class: Any) -> dict[str, str]:
    if check_storage_class(action, storage_class) is None:
        return {}
    if storage_class not in STORAGE_CLASSES:
        raise r2_error(action, "InvalidStorageClass")
    return {"StorageClass": STORAGE_CLASSES[storage_class]}


def _expires(head: dict[str, Any]) -> datetime | None:
    text = head.get("ExpiresString")
    if text:
        try:
            return parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    value = head.get("Expires")
    return value if isinstance(value, datetime) else None


def http_metadata_of(head: dict[str, Any]) -> R2HTTPMetadata:
    fields = {
        name: head.get(param) for name, param in _HTTP_PARAMS.items() if name != "cache_expiry"
    }
    return R2HTTPMetadata(**fields, cache_expiry=_expires(head))


def checksums_of(etag: str) -> R2Checksums:
    """A single-part object's etag is its MD5, as the binding's `checksums.md5`."""
    return R2Checksums(md5=bytes.fromhex(etag) if _MD5_ETAG.match(etag) else None)


def storage_class_of(value: Any) -> str:
    return "InfrequentAccess" if value == "STANDARD_IA" else "Standard"


def etag_of(value: str) -> str:
    return value.strip('"')


def object_of(
    key: str, head: dict[str, Any], *, span: R2Range | None = None, metadata: bool = True
) -> R2Object:
    """An R2Object from a HEAD/GET answer (or a listing entry with `metadata=False`).

    S3 does not expose R2's object version: `version` is the version id R2 reports
    when there is one, else the etag.
    """
    etag = etag_of(head["ETag"])
    uploaded = head["LastModified"]
    return R2Object(
        key=key,
        version=str(head.get("VersionId") or etag),
        size=int(head.get("ContentLength", head.get("Size", 0))),
        etag=etag,
        http_etag=f'"{etag}"',
        uploaded=uploaded if uploaded.tzinfo else uploaded.replace(tzinfo=UTC),
        http_metadata=http_metadata_of(head) if metadata else None,
        custom_metadata=dict(head.get("Metadata") or {}) if metadata else None,
        range=span,
        checksums=checksums_of(etag),
        storage_class=storage_class_of(head.get("StorageClass")),
    )


# -- conditions and ranges -------------------------------------------------------------------


def condition_params(action: str, only_if: Any, *, dates: bool = True) -> dict[str, Any]:
    """`onlyIf` as S3's If-* parameters. S3's PutObject takes the etag ones only."""
    cond = Condition.coerce(only_if)
    if cond is None:
        return {}
    params: dict[str, Any] = {}
    if cond.etag_matches is not None:
        params["IfMatch"] = etag_header(cond.etag_matches)
    if cond.etag_does_not_match is not None:
        params["IfNoneMatch"] = etag_header(cond.etag_does_not_match)
    for name, param in (
        ("uploaded_before", "IfUnmodifiedSince"),
        ("uploaded_after", "IfModifiedSince"),
    ):
        when = getattr(cond, name)
        if when is None:
            continue
        if not dates:
            raise type_error(
                f"{action}: only_if.{name} cannot be sent through R2's S3 API, whose "
                "PutObject takes etag conditions only"
            )
        params[param] = when
    return params


def range_header(r: R2Range) -> str:
    if r.suffix is not None:
        return f"bytes=-{r.suffix}"
    start = r.offset or 0
    return f"bytes={start}-" if r.length is None else f"bytes={start}-{start + r.length - 1}"


def served_range(answer: dict[str, Any]) -> tuple[R2Range | None, int | None]:
    """The range served and the object's full size, from Content-Range."""
    match = _CONTENT_RANGE.match(answer.get("ContentRange") or "")
    if not match:
        return None, None
    start, end, total = match.groups()
    span = R2Range(offset=int(start), length=int(end) - int(start) + 1)
    return span, None if total == "*" else int(total)


# -- bodies ----------------------------------------------------------------------------------


class S3Body:
    """An object's body (a botocore StreamingBody), read in a thread chunk by chunk."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> S3Body:
        return self

    async def __anext__(self) -> bytes:
        data = await asyncio.to_thread(self._stream.read, CHUNK)
        if not data:
            await self.aclose()
            raise StopAsyncIteration
        return bytes(data)

    async def read_all(self) -> bytes:
        try:
            return bytes(await asyncio.to_thread(self._stream.read))
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._stream.close()


@dataclass
class Spooled:
    """A value ready to send: in memory or a temporary file, with its length and digests."""

    data: bytes | IO[bytes]
    length: int
    digests: dict[str, bytes] = field(default_factory=dict)

    def close(self) -> None:
        if not isinstance(self.data, bytes):
            self.data.close()


async def spool(action: str, value: Any, limit: int, algorithms: tuple[str, ...]) -> Spooled:
    """Read `value` (None, str, bytes-like, file-like or async iterable of bytes) once,
    hashing it; refused past `limit` bytes as R2 refuses it (EntityTooLarge)."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    if value is None or isinstance(value, str | bytes | bytearray | memoryview):
        data = value.encode() if isinstance(value, str) else bytes(value or b"")
        if len(data) > limit:
            raise r2_error(action, "EntityTooLarge")
        for h in hashes.values():
            h.update(data)
        return Spooled(data, len(data), {n: h.digest() for n, h in hashes.items()})
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    length = 0
    try:
        async for chunk in value_chunks(action, value):
            length += len(chunk)
            if length > limit:
                raise r2_error(action, "EntityTooLarge")
            file.write(chunk)
            for h in hashes.values():
                h.update(chunk)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return Spooled(file, length, {n: h.digest() for n, h in hashes.items()})
