"""Workers KV through the REST API: the same API and result types as the local KV.

    get               GET    .../storage/kv/namespaces/{id}/values/{key}   (raw bytes)
    get_with_metadata POST   .../bulk/get {keys: [key], type, withMetadata} for text and
                      json (value and metadata in one answer); for bytes and streams,
                      the value, then GET .../metadata/{key} (two reads, not atomic)
    get([keys])       POST   .../bulk/get {keys, type, withMetadata?}
    list              GET    .../keys?prefix&limit&cursor
    put               PUT    .../values/{key}?expiration&expiration_ttl, multipart
                      `value` (+ `metadata` as JSON)
    delete            DELETE .../values/{key}

Key names are percent-encoded into the path by the SDK. Limits (key and value
sizes, metadata size, TTLs, list limits, one write per second per key) are KV's
own, behind the API, with its messages. Checked here are only argument types, the
names the URL cannot carry ("", ".", ".."), strings that are not valid UTF-8, and
the size of a file or stream value, read whole before it is sent. Reads go to
Cloudflare's central stores, not an edge cache: `cache_ttl` is checked and ignored.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from ..errors import KVError
from ..invocation import count
from ..kv import (
    BAD_VALUE,
    MAX_LIST_LIMIT,
    UNKNOWN_TYPE,
    KVKey,
    KVListResult,
    KVTypeError,
    KVValueWithMetadata,
    check_cache_ttl,
    check_expiration,
    check_get_type,
    check_key,
    check_list_limit,
    metadata_json,
    read_value,
    stream_chunks,
    utf8,
    value_chunk,
)
from .client import ApiClient, ApiFailure

KEY_NOT_FOUND = 10009  # Cloudflare's code for a missing key (a missing namespace is 10013)


class _Missing(KVError):
    """The key is not there (404, code 10009): a read answers None. Never escapes."""


def _error_for(method: str) -> Callable[[ApiFailure], KVError]:
    def make(failure: ApiFailure) -> KVError:
        if failure.status == 404 and failure.code == KEY_NOT_FOUND:
            return _Missing(failure.describe())
        status = "" if failure.status is None else f"{failure.status} "
        text = f"KV {method} failed: {status}{failure.describe()}"
        if failure.status == 429:
            return KVError(text, code="KV_TOO_MANY_REQUESTS")
        return KVError(text)

    return make


def _key(key: Any, method: str) -> str:
    """A key name the URL can carry; its length is KV's to check."""
    check_key(key, method, enforce_limit=False)
    return str(key)


def _decode(key: str, data: bytes, type: str) -> Any:
    if type == "text":
        return data.decode(errors="replace")
    if type == "json":
        try:
            return json.loads(data.decode(errors="replace"))
        except ValueError as e:
            raise KVError(f"KV GET: the value of {key!r} is not valid JSON: {e}") from None
    if type == "stream":
        return stream_chunks(data)
    return data  # arrayBuffer / bytes


class ApiKV:
    """The `KVNamespace` binding for the namespace `namespace_id`."""

    def __init__(self, client: ApiClient, namespace_id: str) -> None:
        self._client = client
        self.namespace_id = namespace_id

    async def aclose(self) -> None:
        pass  # the client is the provider's

    @property
    def _ns(self) -> Any:
        return self._client.sdk.kv.namespaces

    async def _call(self, method: str, request: Any, *, idempotent: bool = True) -> Any:
        count("kv")
        return await self._client.call(request, _error_for(method), idempotent=idempotent)

    # -- reads -------------------------------------------------------------------------------

    async def get(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """The value of `key` as `type` (text | json | arrayBuffer/bytes | stream), or None.

        With a list of up to 100 keys (text or json only), a dict key -> value or None.
        """
        if not isinstance(key, str) and isinstance(key, list | tuple):
            return await self._get_bulk(list(key), type, cache_ttl, with_metadata=False)
        key = _key(key, "GET")
        check_get_type(type)
        check_cache_ttl(cache_ttl, "GET")
        data = await self._value(key)
        return None if data is None else _decode(key, data, type)

    async def get_with_metadata(
        self, key: str | Sequence[str], type: str = "text", cache_ttl: float | None = None
    ) -> Any:
        """`KVValueWithMetadata` (value and metadata None if missing); for a list, a dict."""
        if not isinstance(key, str) and isinstance(key, list | tuple):
            return await self._get_bulk(list(key), type, cache_ttl, with_metadata=True)
        key = _key(key, "GET")
        check_get_type(type)
        check_cache_ttl(cache_ttl, "GET")
        if type in ("text", "json"):
            found = await self._get_bulk([key], type, None, with_metadata=True)
            return found[key]
        data = await self._value(key)
        if data is None:
            return KVValueWithMetadata(None, None)
        metadata = await self._metadata(key)
        return KVValueWithMetadata(_decode(key, data, type), metadata)

    async def _value(self, key: str) -> bytes | None:
        values = self._ns.values
        request = lambda: values.get(  # noqa: E731
            key, account_id=self._client.account_id, namespace_id=self.namespace_id
        )
        try:
            response = await self._call("GET", request)
        except _Missing:
            return None
        data: bytes = await response.read()
        return data

    async def _metadata(self, key: str) -> Any:
        metadata = self._ns.metadata
        request = lambda: metadata.get(  # noqa: E731
            key, account_id=self._client.account_id, namespace_id=self.namespace_id
        )
        try:
            return await self._call("GET", request)
        except _Missing:  # deleted between the two reads
            return None

    async def _get_bulk(
        self, keys: list[Any], type: Any, cache_ttl: Any, *, with_metadata: bool
    ) -> dict[str, Any]:
        for key in keys:
            _key(key, "GET_BULK")
        if not isinstance(type, str):
            raise KVTypeError(UNKNOWN_TYPE)
        check_cache_ttl(cache_ttl, "GET_BULK")
        body = {"keys": keys, "type": type, "withMetadata": with_metadata}
        path = self._client.account_path(
            "storage", "kv", "namespaces", quote(self.namespace_id, safe=""), "bulk", "get"
        )
        count("kv")  # a bulk read is one operation
        answer = await self._client.post(path, body, _error_for("GET_BULK"), idempotent=True)
        values = (answer or {}).get("values") or {}
        if not with_metadata:
            return {k: values.get(k) for k in keys}
        return {k: _with_metadata(values.get(k)) for k in keys}

    async def list(
        self, prefix: str | None = None, limit: int = MAX_LIST_LIMIT, cursor: str | None = None
    ) -> KVListResult:
        """Keys in UTF-8 byte order, `limit` (1..1000) per page, from an opaque `cursor`."""
        # Only the type: the range is the service's to check.
        params: dict[str, Any] = {"limit": check_list_limit(limit, positive=False)}
        for name, value in (("prefix", prefix), ("cursor", cursor)):
            if value is None or value == "":
                continue
            utf8(value, f"List {name}")
            params[name] = value
        keys = self._ns.keys
        request = lambda: keys.list(  # noqa: E731
            self.namespace_id, account_id=self._client.account_id, **params
        )
        page = await self._call("GET", request)
        found = [KVKey(k.name, _seconds(k.expiration), k.metadata) for k in page.result or []]
        next_cursor = page.result_info.cursor if page.result_info is not None else None
        if next_cursor:
            return KVListResult(found, False, next_cursor)
        return KVListResult(found, True, None)

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        value: Any,
        expiration: float | None = None,
        expiration_ttl: float | None = None,
        metadata: Any = None,
    ) -> None:
        """Store `value` (str, bytes-like, file-like or async iterable of bytes) under `key`.

        `expiration` is seconds since the UNIX epoch, `expiration_ttl` seconds from
        now (at least 60; it wins if both are given). `metadata` is any JSON value.
        """
        key = _key(key, "PUT")
        options: dict[str, Any] = {}
        for name, given in (("expiration", expiration), ("expiration_ttl", expiration_ttl)):
            if given is not None:
                options[name] = check_expiration(given, name)
        if metadata is not None:
            metadata_json(metadata)
            options["metadata"] = metadata
        data = await _value_bytes(value)
        values = self._ns.values
        request = lambda: values.update(  # noqa: E731
            key,
            account_id=self._client.account_id,
            namespace_id=self.namespace_id,
            value=data,
            **options,
        )
        # A repeated put stores the same value again: safe to retry.
        await self._call("PUT", request)

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        key = _key(key, "DELETE")
        values = self._ns.values
        request = lambda: values.delete(  # noqa: E731
            key, account_id=self._client.account_id, namespace_id=self.namespace_id
        )
        with contextlib.suppress(_Missing):
            await self._call("DELETE", request)


def _with_metadata(raw: Any) -> KVValueWithMetadata:
    if raw is None:
        return KVValueWithMetadata(None, None)
    return KVValueWithMetadata(raw.get("value"), raw.get("metadata"))


def _seconds(value: Any) -> int | None:
    return None if value is None else int(value)


async def _value_bytes(value: Any) -> bytes:
    """The whole value: the REST API takes it in one request."""
    if isinstance(value, str):
        return utf8(value, "Value")
    if isinstance(value, bytes | bytearray | memoryview):
        return value_chunk(value)
    if hasattr(value, "read") or hasattr(value, "__aiter__"):
        return await read_value(value)
    raise KVTypeError(f"{BAD_VALUE} Got {type(value).__name__}.")
