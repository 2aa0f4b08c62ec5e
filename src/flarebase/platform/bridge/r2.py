"""R2 through the bridge: the same API and result types as the local R2.

Bodies stream both ways through /v1/stream: a put sends its value as the request
body (its length and SHA-256 computed first: files are read twice, async
iterables are spooled to a temporary file), and a get's body is the open HTTP
response, read chunk by chunk as the caller iterates `body`.

R2's own checks (key and metadata sizes, ranges against the object, multipart
rules, conditions) happen behind the Worker, with R2's messages; the errors come
back as `R2OperationError`s with `code` (InvalidObjectName, ...), `v4code` and
`status`. Checked here are only Python-side types and values that cannot be
represented in JavaScript.
"""

from __future__ import annotations

import builtins
import inspect
import re
import tempfile
from collections.abc import AsyncIterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx

from ..errors import R2Error
from ..invocation import count
from ..r2 import (
    MAX_PART_BYTES,
    MAX_PUT_BYTES,
    Condition,
    R2Checksums,
    R2HTTPMetadata,
    R2MultipartUpload,
    R2Object,
    R2ObjectBody,
    R2Objects,
    R2OperationError,
    R2Range,
    R2UploadedPart,
    bad_value,
    body_chunk,
    check_custom_metadata,
    check_digest,
    check_list_options,
    check_part_number,
    check_parts,
    check_storage_class,
    delete_keys,
    etag_header,
    file_size,
    include_names,
    range_dict,
    resumed_upload,
    str_key,
    value_chunks,
)
from ..r2 import r2_error as service_error
from .client import BridgeClient, OpError, StreamBody

_SPOOL_IN_MEMORY = 8 * 1024 * 1024
EAGER_BODY_BYTES = 1024 * 1024  # bodies up to this size are read at once
_CHECKSUMS = ("md5", "sha1", "sha256", "sha384", "sha512")
# R2's v4 codes -> (error name, HTTP status), as the R2 service (and Miniflare) reports them.
_V4CODES: dict[int, tuple[str, int]] = {
    10001: ("InternalError", 500),
    10007: ("NoSuchKey", 404),
    100100: ("EntityTooLarge", 400),
    10011: ("EntityTooSmall", 400),
    10012: ("MetadataTooLarge", 400),
    10020: ("InvalidObjectName", 400),
    10022: ("InvalidMaxKeys", 400),
    10024: ("NoSuchUpload", 400),
    10025: ("InvalidPart", 400),
    10029: ("InvalidArgument", 400),
    10031: ("PreconditionFailed", 412),
    10037: ("BadDigest", 400),
    10039: ("InvalidRange", 416),
    10048: ("BadUpload", 500),
    10058: ("TooManyRequests", 429),
}
_OPERATION = re.compile(r"^(\w+): (.*) \((\d+)\)$", re.DOTALL)


def r2_error(error: OpError) -> R2Error:
    """workerd's "<action>: <message> (<v4 code>)" as an R2OperationError; TypeErrors and
    RangeErrors (raised before R2 is called) as R2Errors with those codes."""
    if error.name in ("TypeError", "RangeError"):
        return R2Error(error.message, code=error.name)
    match = _OPERATION.match(error.message)
    if match:
        action, v4code = match.group(1), int(match.group(3))
        name, status = _V4CODES.get(v4code, ("R2Error", 500))
        return R2OperationError(
            error.message, code=name, action=action, status=status, v4code=v4code
        )
    return R2Error(error.message, code=error.name or "R2_ERROR")


def _metadata(action: str, custom_metadata: Any, storage_class: Any) -> dict[str, Any]:
    """The customMetadata and storageClass of a put or an upload, those given."""
    options = {
        "customMetadata": check_custom_metadata(action, custom_metadata),
        "storageClass": check_storage_class(action, storage_class),
    }
    return {k: v for k, v in options.items() if v is not None}


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _conditional(value: Any) -> dict[str, Any] | None:
    """`onlyIf` for the wire: the object form, or HTTP headers when it needs them."""
    cond = Condition.coerce(value)
    if cond is None:
        return None
    simple = all(
        etags is None or (len(etags) == 1 and etags[0].kind != "weak")
        for etags in (cond.etag_matches, cond.etag_does_not_match)
    )
    if simple:
        out: dict[str, Any] = {"secondsGranularity": cond.seconds_granularity}
        for name, etags in (
            ("etagMatches", cond.etag_matches),
            ("etagDoesNotMatch", cond.etag_does_not_match),
        ):
            if etags:
                out[name] = "*" if etags[0].kind == "wildcard" else etags[0].value
        if cond.uploaded_before is not None:
            out["uploadedBefore"] = _ms(cond.uploaded_before)
        if cond.uploaded_after is not None:
            out["uploadedAfter"] = _ms(cond.uploaded_after)
        return out
    headers: dict[str, str] = {}
    if cond.etag_matches is not None:
        headers["if-match"] = etag_header(cond.etag_matches)
    if cond.etag_does_not_match is not None:
        headers["if-none-match"] = etag_header(cond.etag_does_not_match)
    if cond.uploaded_before is not None:
        headers["if-unmodified-since"] = format_datetime(
            cond.uploaded_before.astimezone(UTC), usegmt=True
        )
    if cond.uploaded_after is not None:
        headers["if-modified-since"] = format_datetime(
            cond.uploaded_after.astimezone(UTC), usegmt=True
        )
    return {"headers": headers}


def _object(raw: dict[str, Any], *, http: bool = True, custom: bool = True) -> R2Object:
    return R2Object(**_fields(raw, http=http, custom=custom))


def _fields(raw: dict[str, Any], *, http: bool = True, custom: bool = True) -> dict[str, Any]:
    span = raw.get("range")
    http_metadata = raw.get("httpMetadata")
    return {
        "key": raw["key"],
        "version": raw["version"],
        "size": int(raw["size"]),
        "etag": raw["etag"],
        "http_etag": raw["httpEtag"],
        "uploaded": datetime.fromtimestamp(raw["uploaded"] / 1000, UTC),
        "http_metadata": R2HTTPMetadata.from_json(http_metadata or {}) if http else None,
        "custom_metadata": dict(raw.get("customMetadata") or {}) if custom else None,
        "range": R2Range(**{k: int(v) for k, v in span.items() if v is not None})
        if isinstance(span, dict)
        else None,
        "checksums": R2Checksums(
            **{k: bytes.fromhex(v) for k, v in (raw.get("checksums") or {}).items()}
        ),
        "storage_class": raw.get("storageClass") or "Standard",
    }


class _HTTPBody:
    """An object's body, streamed from the bridge's response as it is read."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()

    def __aiter__(self) -> _HTTPBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._response.aclose()
            raise

    async def read_all(self) -> bytes:
        try:
            return await self._response.aread()
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class _Bytes:
    """A body already read (small objects)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Bytes:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if not data:
            raise StopAsyncIteration
        return data

    async def read_all(self) -> bytes:
        data, self._data = self._data, None
        return data or b""

    async def aclose(self) -> None:
        self._data = None


class BridgeR2:
    """The `R2Bucket` binding of the bridge Worker named `binding`."""

    def __init__(self, client: BridgeClient, binding: str) -> None:
        self._client = client
        self.binding = binding

    def __repr__(self) -> str:
        return f"BridgeR2({self.binding!r})"

    async def aclose(self) -> None:
        pass  # the client is the provider's

    async def _call(self, op: dict[str, Any], idempotent: bool) -> Any:
        count("r2")
        return await self._client.call(
            {**op, "binding": self.binding}, r2_error, idempotent=idempotent
        )

    # -- reads -------------------------------------------------------------------------------

    async def head(self, key: str) -> R2Object | None:
        str_key("head", key)
        raw = await self._call({"op": "r2.head", "key": key}, True)
        return None if raw is None else _object(raw)

    async def get(
        self, key: str, only_if: Any = None, range: Any = None
    ) -> R2ObjectBody | R2Object | None:
        str_key("get", key)
        op: dict[str, Any] = {"op": "r2.get", "binding": self.binding, "key": key}
        if (cond := _conditional(only_if)) is not None:
            op["onlyIf"] = cond
        if (span := range_dict(range)) is not None:
            op["range"] = span
        count("r2")
        reply = await self._client.stream(op, idempotent=True, keep_body=True)
        if "error" in reply.outcome:
            raise r2_error(OpError(**reply.outcome["error"]))
        raw = reply.outcome["ok"]
        if raw is None or not raw.get("hasBody") or reply.response is None:
            await reply.aclose()
            return None if raw is None else _object(raw)
        span = raw.get("range") or {}
        if int(span.get("length", raw["size"])) <= EAGER_BODY_BYTES:
            # Small bodies are read now, so that the connection goes back to the pool
            # even if the caller holds many objects before reading them.
            source: Any = _Bytes(await reply.read())
        else:
            source = _HTTPBody(reply.response)
        return R2ObjectBody(**_fields(raw), source=source)

    async def list(
        self,
        limit: int | None = None,
        prefix: str | None = None,
        cursor: str | None = None,
        delimiter: str | None = None,
        start_after: str | None = None,
        include: Sequence[str] | None = None,
    ) -> R2Objects:
        # The limit's range is R2's to check.
        with_http, with_custom = check_list_options(
            limit, prefix, cursor, delimiter, start_after, include, in_range=False
        )
        options = {
            "prefix": prefix,
            "cursor": cursor,
            "delimiter": delimiter,
            "startAfter": start_after,
            "limit": limit,
            "include": None if include is None else include_names(with_http, with_custom),
        }
        op = {"op": "r2.list"} | {k: v for k, v in options.items() if v is not None}
        raw = await self._call(op, True)
        return R2Objects(
            objects=[_object(o, http=with_http, custom=with_custom) for o in raw["objects"]],
            truncated=bool(raw["truncated"]),
            cursor=raw.get("cursor") if raw["truncated"] else None,
            delimited_prefixes=list(raw.get("delimitedPrefixes") or []),
        )

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: Any,
        http_metadata: Any = None,
        custom_metadata: Mapping[str, str] | None = None,
        md5: bytes | str | None = None,
        sha1: bytes | str | None = None,
        sha256: bytes | str | None = None,
        sha384: bytes | str | None = None,
        sha512: bytes | str | None = None,
        only_if: Any = None,
        storage_class: str | None = None,
    ) -> R2Object | None:
        action = "put"
        str_key(action, key)
        op: dict[str, Any] = {"op": "r2.put", "binding": self.binding, "key": key}
        given = {"md5": md5, "sha1": sha1, "sha256": sha256, "sha384": sha384, "sha512": sha512}
        for name in _CHECKSUMS:
            if given[name] is not None:
                op[name] = check_digest(name, given[name])
        if (cond := _conditional(only_if)) is not None:
            op["onlyIf"] = cond
        http = R2HTTPMetadata.coerce(http_metadata)
        op["httpMetadata"] = http.to_json()
        op |= _metadata(action, custom_metadata, storage_class)
        body = await _body(action, value, MAX_PUT_BYTES)
        op["length"] = body.length
        count("r2")
        try:
            # A retried put without conditions leaves the same object; with them, a
            # retry could see its own first attempt and answer differently.
            reply = await self._client.stream(op, body=body, idempotent=cond is None)
        finally:
            body.close()
        if "error" in reply.outcome:
            raise r2_error(OpError(**reply.outcome["error"]))
        raw = reply.outcome["ok"]
        return None if raw is None else _object(raw)

    async def delete(self, keys: str | Sequence[str]) -> None:
        # How many keys one call may delete is R2's to check.
        names = [str_key("delete", k) for k in delete_keys(keys, at_most=None)]
        wire = names[0] if isinstance(keys, str) else names
        await self._call({"op": "r2.delete", "keys": wire}, True)

    # -- multipart ---------------------------------------------------------------------------

    async def create_multipart_upload(
        self,
        key: str,
        http_metadata: Any = None,
        custom_metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> R2MultipartUpload:
        action = "createMultipartUpload"
        str_key(action, key)
        op: dict[str, Any] = {"op": "r2.createMultipartUpload", "key": key}
        op["httpMetadata"] = R2HTTPMetadata.coerce(http_metadata).to_json()
        op |= _metadata(action, custom_metadata, storage_class)
        raw = await self._call(op, False)
        return R2MultipartUpload(raw["key"], raw["uploadId"], self)

    def resume_multipart_upload(self, key: str, upload_id: str) -> R2MultipartUpload:
        """No lookup, as on Cloudflare: an unknown id fails on first use."""
        return resumed_upload(self, key, upload_id)

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, value: Any
    ) -> R2UploadedPart:
        action = "uploadPart"
        check_part_number(part_number, in_range=False)  # R2 checks the range
        str_key(action, key)
        body = await _body(action, value, MAX_PART_BYTES)
        op = {
            "op": "r2.uploadPart",
            "binding": self.binding,
            "key": key,
            "uploadId": upload_id,
            "partNumber": part_number,
            "length": body.length,
        }
        count("r2")
        try:
            reply = await self._client.stream(op, body=body, idempotent=True)
        finally:
            body.close()
        if "error" in reply.outcome:
            raise r2_error(OpError(**reply.outcome["error"]))
        raw = reply.outcome["ok"]
        return R2UploadedPart(part_number=int(raw["partNumber"]), etag=raw["etag"])

    async def _complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[R2UploadedPart]
    ) -> R2Object:
        check_parts("completeMultipartUpload", parts)
        str_key("completeMultipartUpload", key)
        op = {
            "op": "r2.completeMultipartUpload",
            "key": key,
            "uploadId": upload_id,
            "parts": [{"partNumber": p.part_number, "etag": p.etag} for p in parts],
        }
        return _object(await self._call(op, False))

    async def _abort_multipart(self, key: str, upload_id: str) -> None:
        str_key("abortMultipartUpload", key)
        op = {"op": "r2.abortMultipartUpload", "key": key, "uploadId": upload_id}
        await self._call(op, True)


# -- values ----------------------------------------------------------------------------------


async def _body(action: str, value: Any, limit: int) -> StreamBody:
    """A put/part value as a body of known length (R2 needs one). A size known up front
    is checked against `limit` before anything is read; a stream of unknown length is
    spooled to a temporary file first (in memory up to 8 MiB)."""
    if value is None:
        return _checked(action, StreamBody(b"", 0), limit)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _checked(action, StreamBody(data, len(data)), limit)
    if isinstance(value, bytes | bytearray | memoryview):
        data = _chunk(action, value)
        return _checked(action, StreamBody(data, len(data)), limit)
    read = getattr(value, "read", None)
    if callable(read):
        size = file_size(value)
        if size is not None:
            _checked(action, StreamBody(b"", size), limit)
            if not inspect.iscoroutinefunction(read):
                return _Borrowed(_SyncChunks(action, value), size)
            return StreamBody(value_chunks(action, value), size)
        return await _spool(action, value_chunks(action, value), limit)
    if isinstance(value, AsyncIterable):
        size = len(value) if hasattr(value, "__len__") else None  # type: ignore[arg-type]
        if size is not None:
            return _checked(action, StreamBody(value_chunks(action, value), size), limit)
        return await _spool(action, value_chunks(action, value), limit)
    raise bad_value(action, value)


def _checked(action: str, body: StreamBody, limit: int) -> StreamBody:
    if body.length is not None and body.length > limit:
        raise service_error(action, "EntityTooLarge")
    return body


class _SyncChunks:
    """A caller's sync file, read in chunks (checked), rewindable by seeking."""

    def __init__(self, action: str, f: Any) -> None:
        self.action = action
        self.f = f

    def seekable(self) -> bool:
        try:
            return bool(self.f.seekable())
        except (AttributeError, OSError, ValueError):
            return False

    def tell(self) -> int:
        return int(self.f.tell())

    def seek(self, offset: int) -> int:
        return int(self.f.seek(offset))

    def read(self, n: int) -> bytes:
        return _chunk(self.action, self.f.read(n))


class _Borrowed(StreamBody):
    """A caller's file: read, never closed by us."""


async def _spool(action: str, chunks: Any, limit: int) -> StreamBody:
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    length = 0
    try:
        async for data in chunks:
            length += len(data)
            if length > limit:
                raise service_error(action, "EntityTooLarge")
            spool.write(data)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return StreamBody(spool, length, owned=True)


def _chunk(action: str, chunk: Any) -> bytes:
    return bytes(body_chunk(action, chunk))
