"""R2 inside a Python Worker: the runtime's `R2Bucket` binding, with the `local` API.

`head`, `get`, `put`, `delete`, `list` and multipart uploads return the shared
`R2Object`, `R2ObjectBody`, `R2Objects` and `R2MultipartUpload` of
`flarebase.platform.r2`. Options are the same as every provider's (dataclasses or
dicts with Cloudflare's camelCase or snake_case names, or HTTP headers); they
are checked by the shared coercions, then sent as plain JS objects (Dates for
times, ArrayBuffers for digests, a `Headers` for conditional headers).

R2 objects are getter-based in production (enumerating their keys gives
nothing), so every field is read as an attribute. A body is read as a stream,
chunk by chunk, or whole with `arrayBuffer()`. Values that are files or async
iterables are read into memory first (the runtime needs a known length); a
known size over the single-put limit is refused before reading anything.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..r2 import (
    _COND_HEADERS,
    _COND_NAMES,
    MAX_PART_BYTES,
    MAX_PUT_BYTES,
    Condition,
    R2Checksums,
    R2Conditional,
    R2HTTPMetadata,
    R2MultipartUpload,
    R2Object,
    R2ObjectBody,
    R2Objects,
    R2Range,
    R2UploadedPart,
    _pick,
    bad_value,
    check_custom_metadata,
    check_digest,
    check_list_options,
    check_part_number,
    check_storage_class,
    delete_keys,
    include_names,
    key_utf8,
    r2_error,
    range_dict,
    resumed_upload,
    type_error,
    value_chunks,
)
from ._ffi import (
    JSNULL,
    JsException,
    attr,
    require_runtime,
    to_bytes,
    to_js_array,
    to_js_bytes,
    to_js_value,
    to_py,
)
from .errors import r2_error as js_r2_error

_HTTP_KEYS = (
    "contentType",
    "contentLanguage",
    "contentDisposition",
    "contentEncoding",
    "cacheControl",
    "cacheExpiry",
)
_DIGESTS = ("md5", "sha1", "sha256", "sha384", "sha512")


# -- Python -> JS -------------------------------------------------------------------------------


def _key(action: str, key: Any) -> str:
    """A key: a str with a UTF-8 form, not empty (R2 checks the 1,024-byte limit)."""
    if not key_utf8(action, key):
        raise r2_error(action, "InvalidObjectName", "empty key")
    return str(key)


def _http(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    meta = R2HTTPMetadata.coerce(value)
    out: dict[str, Any] = meta.to_json()
    if meta.cache_expiry is not None:
        out["cacheExpiry"] = meta.cache_expiry  # a Date, not milliseconds
    return out


def _only_if(value: Any) -> Any:
    """onlyIf as the binding takes it: an R2Conditional object, or a Headers."""
    if value is None:
        return None
    Condition.coerce(value)  # the shared checks (types, quoted etags, aware datetimes)
    if isinstance(value, Condition):
        raise type_error("only_if: pass an R2Conditional, a dict or HTTP headers")
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and k.lower() in _COND_HEADERS for k in value
    ):
        runtime = require_runtime()
        headers = runtime.Headers.new()
        for k, v in value.items():
            headers.append(k, str(v))
        return headers
    if isinstance(value, R2Conditional):
        fields = {name: getattr(value, name) for name in set(_COND_NAMES.values())}
    else:
        fields = _pick(value, _COND_NAMES, "only_if")
    out: dict[str, Any] = {}
    for name, v in fields.items():
        if v is None or (name == "seconds_granularity" and not v):
            continue
        head, *rest = name.split("_")
        out[head + "".join(p.title() for p in rest)] = v
    return to_js_value(out)


def _digest(name: str, value: Any) -> Any:
    digest = check_digest(name, value)
    return to_js_bytes(digest).buffer if isinstance(digest, bytes) else digest


def _size_hint(value: Any) -> int | None:
    if hasattr(value, "__len__") and not hasattr(value, "read"):
        try:  # not len(): Pyodide's sizes are 32-bit, len() of 5 GiB overflows
            return int(type(value).__len__(value))
        except TypeError:
            return None
    size = getattr(value, "size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    try:
        if value.seekable():
            here = value.tell()
            end = value.seek(0, 2)
            value.seek(here)
            return max(0, int(end) - int(here))
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    return None


async def _read(action: str, value: Any, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0

    def add(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > limit:
            raise r2_error(action, "EntityTooLarge")
        parts.append(data)

    async for data in value_chunks(action, value):
        add(data)
    return b"".join(parts)


async def _body(action: str, value: Any, limit: int = MAX_PUT_BYTES) -> Any:
    """A put/uploadPart value as a JS value: a string, a Uint8Array or null."""
    if value is None:
        return JSNULL
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise type_error(f"{action}: the value is a str with a lone surrogate") from None
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return to_js_bytes(value)
    if callable(getattr(value, "read", None)) or isinstance(value, AsyncIterable):
        size = _size_hint(value)
        if size is not None and size > limit:
            raise r2_error(action, "EntityTooLarge")
        return to_js_bytes(await _read(action, value, limit))
    raise bad_value(action, value)


def _options(**values: Any) -> Any:
    return to_js_value({k: v for k, v in values.items() if v is not None})


# -- JS -> Python -------------------------------------------------------------------------------


def _object_fields(obj: Any, http: bool = True, custom: bool = True) -> dict[str, Any]:
    http_meta: R2HTTPMetadata | None = None
    if http:
        raw = to_py(attr(obj, "httpMetadata")) or {}
        http_meta = R2HTTPMetadata.from_json(
            {k: raw[k] for k in _HTTP_KEYS if raw.get(k) is not None}
        )
    custom_meta = (to_py(attr(obj, "customMetadata")) or {}) if custom else None
    checksums_js = attr(obj, "checksums")
    digests = {}
    if checksums_js is not None:  # toJSON(): the hex digests present, in one call
        for name, hex_digest in (to_py(checksums_js.toJSON()) or {}).items():
            if name in _DIGESTS and isinstance(hex_digest, str):
                digests[name] = bytes.fromhex(hex_digest)
    raw_range = to_py(attr(obj, "range"))
    uploaded = to_py(attr(obj, "uploaded"))
    if not isinstance(uploaded, datetime):
        raise TypeError(f"R2 object without an upload time: {uploaded!r}")
    return {
        "key": str(attr(obj, "key")),
        "version": str(attr(obj, "version")),
        "size": int(attr(obj, "size", 0)),
        "etag": str(attr(obj, "etag")),
        "http_etag": str(attr(obj, "httpEtag")),
        "uploaded": uploaded,
        "http_metadata": http_meta,
        "custom_metadata": custom_meta,
        "range": R2Range(**{k: raw_range.get(k) for k in ("offset", "length", "suffix")})
        if raw_range
        else None,
        "checksums": R2Checksums(**digests),
        "storage_class": str(attr(obj, "storageClass") or "Standard"),
    }


class _JsBody:
    """`R2ObjectBody.source` over the runtime's body: streamed, or read whole."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        self._reader: Any = None

    def __aiter__(self) -> _JsBody:
        return self

    async def __anext__(self) -> bytes:
        if self._reader is None:
            self._reader = self._obj.body.getReader()
        try:
            chunk = await self._reader.read()
        except JsException as e:
            raise js_r2_error(e) from None
        if chunk.done:
            raise StopAsyncIteration
        return to_bytes(chunk.value)

    async def read_all(self) -> bytes:
        if self._reader is None:
            try:
                return to_bytes(await self._obj.arrayBuffer())
            except JsException as e:
                raise js_r2_error(e) from None
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        try:
            if self._reader is not None:
                await self._reader.cancel()
            else:
                await self._obj.body.cancel()
        except JsException:
            pass


def _result(obj: Any, http: bool = True, custom: bool = True) -> R2Object:
    return R2Object(**_object_fields(obj, http, custom))


# -- the binding --------------------------------------------------------------------------------


class WorkersR2:
    """The `R2Bucket` binding of a Worker, with the `local` provider's Python API."""

    def __init__(self, binding: Any) -> None:
        self._js = binding

    async def head(self, key: str) -> R2Object | None:
        name = _key("head", key)
        try:
            obj = await self._js.head(name)
        except JsException as e:
            raise js_r2_error(e) from None
        return None if attr(obj, "key") is None else _result(obj)

    async def get(
        self, key: str, only_if: Any = None, range: Any = None
    ) -> R2ObjectBody | R2Object | None:
        name = _key("get", key)
        options = _options(onlyIf=_only_if(only_if), range=range_dict(range))
        try:
            obj = await self._js.get(name, options)
        except JsException as e:
            raise js_r2_error(e) from None
        if attr(obj, "key") is None:
            return None
        # Not `obj.body`: reading it may start the stream (Miniflare's proxies do).
        if not hasattr(obj, "arrayBuffer"):  # onlyIf did not hold: metadata only
            return _result(obj)
        return R2ObjectBody(**_object_fields(obj), source=_JsBody(obj))

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
        """Store `value`; None if `only_if` did not hold (the binding returns null)."""
        action = "put"
        name = _key(action, key)
        digests = {
            n: _digest(n, v)
            for n, v in zip(_DIGESTS, (md5, sha1, sha256, sha384, sha512), strict=True)
            if v is not None
        }
        only = _only_if(only_if)
        options = to_js_value(
            {
                k: v
                for k, v in {
                    "httpMetadata": _http(http_metadata),
                    "customMetadata": check_custom_metadata(action, custom_metadata),
                    "storageClass": check_storage_class(action, storage_class),
                }.items()
                if v is not None
            }
        )
        for n, digest in digests.items():
            setattr(options, n, digest)
        if only is not None:
            options.onlyIf = only
        body = await _body(action, value)
        try:
            obj = await self._js.put(name, body, options)
        except JsException as e:
            raise js_r2_error(e) from None
        return None if attr(obj, "key") is None else _result(obj)

    async def delete(self, keys: str | Sequence[str]) -> None:
        names = [_key("delete", k) for k in delete_keys(keys)]
        if not names:
            return
        try:
            await self._js.delete(names[0] if isinstance(keys, str) else to_js_array(names))
        except JsException as e:
            raise js_r2_error(e) from None

    async def list(
        self,
        limit: int | None = None,
        prefix: str | None = None,
        cursor: str | None = None,
        delimiter: str | None = None,
        start_after: str | None = None,
        include: Sequence[str] | None = None,
    ) -> R2Objects:
        http, custom = check_list_options(limit, prefix, cursor, delimiter, start_after, include)
        options = _options(
            limit=limit,
            prefix=prefix or None,
            cursor=cursor or None,
            delimiter=delimiter or None,
            startAfter=start_after,
            include=include_names(http, custom) or None,
        )
        try:
            page = await self._js.list(options)
        except JsException as e:
            raise js_r2_error(e) from None
        objects = [_result(o, http, custom) for o in attr(page, "objects", [])]
        truncated = bool(attr(page, "truncated", False))
        prefixes = to_py(attr(page, "delimitedPrefixes")) or []
        return R2Objects(
            objects=objects,
            truncated=truncated,
            cursor=attr(page, "cursor") if truncated else None,
            delimited_prefixes=prefixes,
        )

    async def create_multipart_upload(
        self,
        key: str,
        http_metadata: Any = None,
        custom_metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> R2MultipartUpload:
        action = "createMultipartUpload"
        name = _key(action, key)
        options = _options(
            httpMetadata=_http(http_metadata),
            customMetadata=check_custom_metadata(action, custom_metadata),
            storageClass=check_storage_class(action, storage_class),
        )
        try:
            upload = await self._js.createMultipartUpload(name, options)
        except JsException as e:
            raise js_r2_error(e) from None
        return R2MultipartUpload(str(upload.key), str(upload.uploadId), self)

    def resume_multipart_upload(self, key: str, upload_id: str) -> R2MultipartUpload:
        """No lookup, as on Cloudflare: an unknown id fails on first use."""
        return resumed_upload(self, key, upload_id)

    # -- the multipart backend (R2MultipartUpload calls these) ------------------------------

    def _upload(self, key: str, upload_id: str) -> Any:
        return self._js.resumeMultipartUpload(key, upload_id)

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, value: Any
    ) -> R2UploadedPart:
        action = "uploadPart"
        check_part_number(part_number, in_range=False)  # R2 checks the range
        body = await _body(action, value, MAX_PART_BYTES)
        try:
            part = await self._upload(key, upload_id).uploadPart(part_number, body)
        except JsException as e:
            raise js_r2_error(e) from None
        return R2UploadedPart(part_number=int(part.partNumber), etag=str(part.etag))

    async def _complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[R2UploadedPart]
    ) -> R2Object:
        if not parts:  # Miniflare would complete an empty object
            raise r2_error("completeMultipartUpload", "NoParts")
        js_parts = to_js_value([{"partNumber": p.part_number, "etag": p.etag} for p in parts])
        try:
            obj = await self._upload(key, upload_id).complete(js_parts)
        except JsException as e:
            raise js_r2_error(e) from None
        return _result(obj)

    async def _abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._upload(key, upload_id).abort()
        except JsException as e:
            raise js_r2_error(e) from None

    async def aclose(self) -> None:
        """Nothing to close: the runtime owns the binding."""
