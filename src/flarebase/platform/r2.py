"""R2 shapes, limits and errors, shared by every provider (Cloudflare's names, snake_case).

The binding API mirrors the Workers `R2Bucket`: `head`, `get`, `put`, `delete`,
`list`, `create_multipart_upload`, `resume_multipart_upload` (see `R2Bucket`).

Conventions:
- Checksums are `bytes` (the Workers API gives ArrayBuffers); `R2Checksums.to_json()`
  gives lowercase hex, as `checksums.toJSON()` does. `put(md5=...)` etc. accept
  either bytes or a hex string, as the binding does.
- Times are timezone-aware `datetime`s in UTC, with millisecond precision.
- Options that Cloudflare takes as objects (`httpMetadata`, `onlyIf`, `range`,
  multipart parts) may be given as the dataclasses here or as dicts with
  Cloudflare's camelCase names (snake_case names are accepted too).
- Every failure is an `R2Error`. Failures Cloudflare's R2 service reports are
  `R2OperationError`s whose message is Cloudflare's own,
  `"<action>: <message> (<v4 code>)"`, e.g.
  `"put: The specified object name is not valid. (10020)"`, with `code` the
  R2/S3 error name (`"InvalidObjectName"`), `v4code` and HTTP `status`.
  Failures the Workers runtime raises before calling R2 (bad argument types,
  malformed ranges or checksums) are `R2Error`s with code `"TypeError"` or
  `"RangeError"` and workerd's wording.
"""

from __future__ import annotations

import builtins
import inspect
import json as _json
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Protocol

from .errors import R2Error

# Limits, from https://developers.cloudflare.com/r2/platform/limits/ (see
# reference/cloudflare-limits.md) and Miniflare's R2 plugin.
MAX_KEY_BYTES = 1024
MAX_PUT_BYTES = 5 * 1024**3 - 5 * 1024**2  # single PUT: 5 GiB - 5 MiB
MAX_OBJECT_BYTES = 5 * 1024**4 - 5 * 1024**3  # object: 5 TiB - 5 GiB
MIN_PART_BYTES = 5 * 1024**2  # every part but the last
MAX_PART_BYTES = 5 * 1024**3
MAX_PART_NUMBER = 10_000
MAX_CUSTOM_METADATA_BYTES = 8_192  # docs; Miniflare enforces 2,048
MAX_LIST_LIMIT = 1_000
LIST_LIMIT_WITH_INCLUDE = 100  # "may return fewer" when metadata is included (as Miniflare)
MAX_DELETE_KEYS = 1_000
WRITE_INTERVAL_SECONDS = 1.0  # writes to one key: at most 1 per second
MULTIPART_EXPIRY_SECONDS = 7 * 24 * 3600  # unfinished uploads are aborted after 7 days

STORAGE_CLASSES = ("Standard", "InfrequentAccess")

# name -> (HTTP status, v4 code, message). Messages and codes are Cloudflare's, as
# Miniflare reproduces them (workers-sdk, packages/miniflare/src/workers/r2/errors.worker.ts),
# except BadUpload's same-length message and TooManyRequests, which are what
# Cloudflare's R2 answers (quoted in Cloudflare's docs and user reports).
_ERRORS: dict[str, tuple[int, int | None, str]] = {
    "InternalError": (500, 10001, "We encountered an internal error. Please try again."),
    "EntityTooLarge": (
        400,
        100100,
        "Your proposed upload exceeds the maximum allowed object size.",
    ),
    "EntityTooSmall": (
        400,
        10011,
        "Your proposed upload is smaller than the minimum allowed object size.",
    ),
    "MetadataTooLarge": (
        400,
        10012,
        "Your metadata headers exceed the maximum allowed metadata size.",
    ),
    "InvalidObjectName": (400, 10020, "The specified object name is not valid."),
    "InvalidMaxKeys": (400, 10022, "MaxKeys params must be positive integer <= 1000."),
    "NoSuchUpload": (400, 10024, "The specified multipart upload does not exist."),
    "InvalidPart": (400, 10025, "One or more of the specified parts could not be found."),
    "PreconditionFailed": (
        412,
        10031,
        "At least one of the pre-conditions you specified did not hold.",
    ),
    "InvalidRange": (416, 10039, "The requested range is not satisfiable"),
    "BadUpload": (500, 10048, "There was a problem with the multipart upload."),
    "PartsNotSameLength": (400, 10048, "All non-trailing parts must have the same length."),
    "TooManyRequests": (429, 10058, "Reduce your concurrent request rate for the same object."),
    # flarebase's own wording where Cloudflare's is unknown (no v4 code is invented).
    "InvalidCursor": (400, None, "The list cursor is not valid."),
    "InvalidStorageClass": (400, None, "The storage class you specified is not valid."),
    "TooManyKeys": (400, None, f"At most {MAX_DELETE_KEYS} keys can be deleted in one call."),
    "NoParts": (400, None, "A multipart upload must be completed with at least one part."),
}


class R2OperationError(R2Error):
    """An error the R2 service reports: `code` is its name, `v4code` its number.

    The message is exactly Cloudflare's (so it is the same on every provider);
    `detail`, when set, says more for a human (e.g. which part was missing).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        action: str,
        status: int,
        v4code: int | None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.action = action
        self.status = status
        self.v4code = v4code
        self.detail = detail


def r2_error(action: str, name: str, detail: str | None = None) -> R2OperationError:
    """Cloudflare's error `name` for `action`, worded as the Workers runtime words it.

    `detail` goes into the message only for flarebase's own errors (no v4 code).
    """
    status, v4code, message = _ERRORS[name]
    code = "BadUpload" if name == "PartsNotSameLength" else name
    if v4code is None:
        text = f"{action}: {message}" + (f" ({detail})" if detail else "")
    else:
        text = f"{action}: {message} ({v4code})"
    return R2OperationError(
        text, code=code, action=action, status=status, v4code=v4code, detail=detail
    )


def bad_digest(action: str, algorithm: str, provided: bytes, actual: bytes) -> R2OperationError:
    message = (
        f"The {algorithm} checksum you specified did not match what we received.\n"
        f"You provided a {algorithm} checksum with value: {provided.hex()}\n"
        f"Actual {algorithm} was: {actual.hex()}"
    )
    return R2OperationError(
        f"{action}: {message} (10037)", code="BadDigest", action=action, status=400, v4code=10037
    )


def type_error(message: str) -> R2Error:
    """What workerd raises as a JavaScript TypeError before calling R2."""
    return R2Error(message, code="TypeError")


def range_error(message: str) -> R2Error:
    """What workerd raises as a JavaScript RangeError before calling R2."""
    return R2Error(message, code="RangeError")


# -- options ---------------------------------------------------------------------------------


def _pick(
    value: Mapping[str, Any], names: dict[str, str], what: str
) -> dict[str, Any]:  # accepted name -> field
    out: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str) or k not in names:
            known = ", ".join(sorted(names))
            raise type_error(f"{what}: unknown option {k!r}; known: {known}")
        out[names[k]] = v
    return out


def _names(*fields: str) -> dict[str, str]:
    """snake_case field -> {snake: snake, camel: snake}."""
    out = {}
    for f in fields:
        head, *rest = f.split("_")
        out[f] = f
        out[head + "".join(p.title() for p in rest)] = f
    return out


def _aware(what: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise type_error(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        raise type_error(f"{what} must be a timezone-aware datetime (e.g. datetime.now(UTC))")
    return value


def _optional_str(what: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise type_error(f"{what} must be a string, not {type(value).__name__}")
    return value


_HTTP_FIELDS = (
    "content_type",
    "content_language",
    "content_disposition",
    "content_encoding",
    "cache_control",
    "cache_expiry",
)
_HTTP_NAMES = _names(*_HTTP_FIELDS)
_HTTP_HEADERS = {
    "content-type": "content_type",
    "content-language": "content_language",
    "content-disposition": "content_disposition",
    "content-encoding": "content_encoding",
    "cache-control": "cache_control",
    "expires": "cache_expiry",
}


@dataclass(kw_only=True)
class R2HTTPMetadata:
    content_type: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    cache_expiry: datetime | None = None

    @classmethod
    def coerce(cls, value: Any) -> R2HTTPMetadata:
        """From an R2HTTPMetadata, a dict of camelCase/snake_case names, or HTTP headers
        (`{"Content-Type": ..., "Expires": ...}`, as the binding accepts a Headers)."""
        if value is None:
            return cls()
        if isinstance(value, R2HTTPMetadata):
            fields = {f: getattr(value, f) for f in _HTTP_FIELDS}
        elif isinstance(value, Mapping):
            if value and all(isinstance(k, str) and k.lower() in _HTTP_HEADERS for k in value):
                fields = {_HTTP_HEADERS[k.lower()]: v for k, v in value.items()}
                expires = fields.get("cache_expiry")
                if isinstance(expires, str):
                    try:
                        fields["cache_expiry"] = parsedate_to_datetime(expires)
                    except (TypeError, ValueError):
                        raise type_error(
                            f"http_metadata: invalid Expires date {expires!r}"
                        ) from None
            else:
                fields = _pick(value, _HTTP_NAMES, "http_metadata")
        else:
            raise type_error(
                f"http_metadata must be an R2HTTPMetadata or a dict, not {type(value).__name__}"
            )
        for name in _HTTP_FIELDS[:-1]:
            _optional_str(f"http_metadata.{name}", fields.get(name))
        if fields.get("cache_expiry") is not None:
            _aware("http_metadata.cache_expiry", fields["cache_expiry"])
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        """camelCase, without unset fields; cacheExpiry in epoch milliseconds."""
        out: dict[str, Any] = {}
        for name in _HTTP_FIELDS:
            v = getattr(self, name)
            if v is None:
                continue
            head, *rest = name.split("_")
            camel = head + "".join(p.title() for p in rest)
            out[camel] = int(v.timestamp() * 1000) if isinstance(v, datetime) else v
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> R2HTTPMetadata:
        fields = _pick(data, _HTTP_NAMES, "http_metadata")
        if isinstance(fields.get("cache_expiry"), int | float):
            fields["cache_expiry"] = datetime.fromtimestamp(fields["cache_expiry"] / 1000, UTC)
        return cls(**fields)


@dataclass(kw_only=True)
class R2Checksums:
    """Raw digests (bytes). md5 is always present for single-part objects."""

    md5: bytes | None = None
    sha1: bytes | None = None
    sha256: bytes | None = None
    sha384: bytes | None = None
    sha512: bytes | None = None

    def to_json(self) -> dict[str, str]:
        """Hex strings of the digests present, as `checksums.toJSON()`."""
        return {
            name: digest.hex()
            for name in ("md5", "sha1", "sha256", "sha384", "sha512")
            if (digest := getattr(self, name)) is not None
        }


@dataclass(kw_only=True)
class R2Range:
    """`{offset, length}` or `{suffix}` (the last `suffix` bytes)."""

    offset: int | None = None
    length: int | None = None
    suffix: int | None = None

    @classmethod
    def coerce(cls, value: Any) -> R2Range:
        """Validate as workerd does before calling R2 (messages are workerd's)."""
        if isinstance(value, R2Range):
            fields = {"offset": value.offset, "length": value.length, "suffix": value.suffix}
        elif isinstance(value, Mapping):
            fields = _pick(value, _names("offset", "length", "suffix"), "range")
        else:
            raise type_error(f"range must be an R2Range or a dict, not {type(value).__name__}")
        out: dict[str, int | None] = {}
        labels = {"offset": "Starting offset", "length": "Length", "suffix": "Suffix"}
        for name in ("offset", "length", "suffix"):
            v = fields.get(name)
            if v is None:
                out[name] = None
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise type_error(f"range.{name} must be a number, not {type(v).__name__}")
            if name == "suffix" and fields.get("offset") is not None:
                raise type_error("Suffix is incompatible with offset.")
            if name == "suffix" and fields.get("length") is not None:
                raise type_error("Suffix is incompatible with length.")
            kind = "suffix" if name == "suffix" else "range"
            if v < 0:
                raise range_error(
                    f"Invalid {kind}. {labels[name]} ({v}) must be greater than or equal to 0."
                )
            if isinstance(v, float) and not float(v).is_integer():
                raise range_error(
                    f"Invalid range. {labels[name]} ({v}) must be an integer, not floating point."
                )
            out[name] = int(v)
        return cls(**out)


@dataclass(kw_only=True)
class R2Conditional:
    """`onlyIf`. Etags are unquoted (`"*"` matches any); times are aware datetimes.

    To pass HTTP conditional headers instead (quoted etags, lists, `W/` weak etags,
    HTTP dates), give `only_if` a dict of headers: `{"If-Match": '"abc"'}`, as the
    binding accepts `request.headers`.
    """

    etag_matches: str | None = None
    etag_does_not_match: str | None = None
    uploaded_before: datetime | None = None
    uploaded_after: datetime | None = None
    seconds_granularity: bool = False


_COND_NAMES = _names(
    "etag_matches",
    "etag_does_not_match",
    "uploaded_before",
    "uploaded_after",
    "seconds_granularity",
)
_COND_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


@dataclass(frozen=True)
class Etag:
    """One parsed etag condition: kind is "strong", "weak" or "wildcard"."""

    kind: str
    value: str = ""


@dataclass(frozen=True, kw_only=True)
class Condition:
    """`onlyIf`, normalized: what providers evaluate or send."""

    etag_matches: tuple[Etag, ...] | None = None
    etag_does_not_match: tuple[Etag, ...] | None = None
    uploaded_before: datetime | None = None
    uploaded_after: datetime | None = None
    seconds_granularity: bool = False

    @classmethod
    def coerce(cls, value: Any) -> Condition | None:
        if value is None:
            return None
        if isinstance(value, Condition):
            return value
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(k, str) and k.lower() in _COND_HEADERS for k in value)
        ):
            return cls._from_headers(value)
        if isinstance(value, R2Conditional):
            fields: dict[str, Any] = {
                name: getattr(value, name) for name in set(_COND_NAMES.values())
            }
        elif isinstance(value, Mapping):
            fields = _pick(value, _COND_NAMES, "only_if")
        else:
            raise type_error(
                f"only_if must be an R2Conditional or a dict, not {type(value).__name__}"
            )
        out: dict[str, Any] = {"seconds_granularity": bool(fields.get("seconds_granularity"))}
        for name in ("etag_matches", "etag_does_not_match"):
            etag = fields.get(name)
            if etag is None:
                continue
            if not isinstance(etag, str):
                raise type_error(f"only_if.{name} must be a string, not {type(etag).__name__}")
            if len(etag) >= 2 and etag.startswith('"') and etag.endswith('"'):
                raise type_error(f"Conditional ETag should not be wrapped in quotes ({etag}).")
            out[name] = (Etag("wildcard"),) if etag == "*" else (Etag("strong", etag),)
        for name in ("uploaded_before", "uploaded_after"):
            if fields.get(name) is not None:
                out[name] = _aware(f"only_if.{name}", fields[name])
        return cls(**out)

    @classmethod
    def _from_headers(cls, headers: Mapping[str, Any]) -> Condition:
        out: dict[str, Any] = {"seconds_granularity": True}
        for key, raw in headers.items():
            name = key.lower()
            if not isinstance(raw, str):
                raise type_error(f"only_if header {key} must be a string")
            if name in ("if-match", "if-none-match"):
                field_name = "etag_matches" if name == "if-match" else "etag_does_not_match"
                out[field_name] = parse_etag_header(raw)
            else:
                try:
                    when = parsedate_to_datetime(raw)
                except (TypeError, ValueError):
                    raise type_error(f"only_if header {key}: invalid HTTP date {raw!r}") from None
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                field_name = "uploaded_after" if name == "if-modified-since" else "uploaded_before"
                out[field_name] = when
        return cls(**out)

    def holds(self, etag: str | None, uploaded_ms: int | None) -> bool:
        """Whether the condition passes for the current object (None: no object).

        Cloudflare's rules (RFC 7232 section 6), as Miniflare implements them.
        """
        if etag is None or uploaded_ms is None:
            return self.etag_matches is None and self.uploaded_after is None

        def ms(when: datetime) -> int:
            return int(when.timestamp() * 1000)

        def trunc(t: int) -> int:
            return (t // 1000) * 1000 if self.seconds_granularity else t

        if_match = self.etag_matches is None or _includes(self.etag_matches, etag, weak=False)
        if_none_match = self.etag_does_not_match is None or not _includes(
            self.etag_does_not_match, etag, weak=True
        )
        last = trunc(uploaded_ms)
        modified_since = (
            self.uploaded_after is None
            or trunc(ms(self.uploaded_after)) < last
            or (self.etag_does_not_match is not None and if_none_match)
        )
        unmodified_since = (
            self.uploaded_before is None
            or last < trunc(ms(self.uploaded_before))
            or (self.etag_matches is not None and if_match)
        )
        return if_match and if_none_match and modified_since and unmodified_since


def _includes(conditions: Sequence[Etag], etag: str, *, weak: bool) -> bool:
    for c in conditions:
        if c.kind == "wildcard":
            return True
        if c.value == etag and (c.kind == "strong" or weak):
            return True
    return False


def etag_header(etags: Sequence[Etag]) -> str:
    """Parsed etag conditions as an If-Match / If-None-Match value again."""
    return ", ".join(
        "*" if e.kind == "wildcard" else (f'W/"{e.value}"' if e.kind == "weak" else f'"{e.value}"')
        for e in etags
    )


def parse_etag_header(header: str) -> tuple[Etag, ...]:
    """An If-Match / If-None-Match value: `*`, `"a"`, `W/"b"`, comma-separated."""
    etags: list[Etag] = []
    rest = header.strip()
    while rest:
        if rest.startswith(","):
            rest = rest[1:].lstrip()
            continue
        if rest.startswith("*"):
            return (Etag("wildcard"),)
        kind = "strong"
        if rest.startswith("W/"):
            kind, rest = "weak", rest[2:]
        if not rest.startswith('"'):
            raise R2Error("Invalid conditional header", code="Error")
        end = rest.find('"', 1)
        if end < 0:
            raise R2Error("Unclosed double quote for Etag", code="Error")
        etags.append(Etag(kind, rest[1:end]))
        rest = rest[end + 1 :].lstrip()
        if rest and not rest.startswith(","):
            raise R2Error("Comma was expected to separate etags.", code="Error")
    return tuple(etags)


# -- results ---------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class R2Object:
    """Metadata of one object (`head`, `put`, `list`, or a `get` whose onlyIf failed).

    `http_metadata`/`custom_metadata` are None in `list` results unless asked for
    with `include`. `range` is set by `head` and `get`.
    """

    key: str
    version: str
    size: int
    etag: str
    http_etag: str
    uploaded: datetime
    http_metadata: R2HTTPMetadata | None
    custom_metadata: dict[str, str] | None
    range: R2Range | None = None
    checksums: R2Checksums = field(default_factory=R2Checksums)
    storage_class: str = "Standard"

    def write_http_metadata(self, headers: MutableMapping[str, str]) -> None:
        """Set Content-Type, Cache-Control, Expires, ... on `headers`."""
        if self.http_metadata is None:
            raise type_error(
                f"HTTP metadata unknown for key `{self.key}`. "
                "Did you forget to add 'httpMetadata' to `include` when listing?"
            )
        m = self.http_metadata
        for name, header in (
            ("content_type", "content-type"),
            ("content_language", "content-language"),
            ("content_disposition", "content-disposition"),
            ("content_encoding", "content-encoding"),
            ("cache_control", "cache-control"),
        ):
            if (v := getattr(m, name)) is not None:
                headers[header] = v
        if m.cache_expiry is not None:
            headers["expires"] = format_datetime(m.cache_expiry.astimezone(UTC), usegmt=True)


class BodySource(Protocol):
    """What a provider streams an object body from."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def __anext__(self) -> bytes: ...
    async def read_all(self) -> bytes: ...
    async def aclose(self) -> None: ...


_BODY_USED = (
    "Body has already been used. It can only be used once. "
    "Use tee() first if you need to read it twice."
)


class _Body:
    """`R2ObjectBody.body`: an async iterator of bytes chunks that marks the body used."""

    def __init__(self, owner: R2ObjectBody) -> None:
        self._owner = owner

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        self._owner._used = True
        return await self._owner.source.__anext__()

    async def aclose(self) -> None:
        await self._owner.source.aclose()


@dataclass(kw_only=True, eq=False)
class R2ObjectBody(R2Object):
    """An object with its body: iterate `body` (chunks streamed from storage) or call
    one of `bytes()`, `text()`, `json()` -- once, as a Response body."""

    source: BodySource = field(repr=False)
    _used: bool = field(default=False, init=False, repr=False)

    @property
    def body(self) -> AsyncIterator[bytes]:
        return _Body(self)

    @property
    def body_used(self) -> bool:
        return self._used

    async def bytes(self) -> builtins.bytes:
        if self._used:
            raise type_error(_BODY_USED)
        self._used = True
        return await self.source.read_all()

    async def array_buffer(self) -> builtins.bytes:
        return await self.bytes()

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        return _json.loads(await self.text())


@dataclass(kw_only=True)
class R2Objects:
    objects: list[R2Object]
    truncated: bool
    cursor: str | None = None
    delimited_prefixes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class R2UploadedPart:
    part_number: int
    etag: str

    @classmethod
    def coerce(cls, value: Any) -> R2UploadedPart:
        if isinstance(value, R2UploadedPart):
            return value
        if isinstance(value, Mapping):
            fields = _pick(value, _names("part_number", "etag"), "part")
            if "part_number" in fields and "etag" in fields:
                return cls(part_number=fields["part_number"], etag=fields["etag"])
        raise type_error(
            f"parts must be R2UploadedPart objects or dicts with partNumber and etag, not {value!r}"
        )


class MultipartBackend(Protocol):
    """What a provider implements for `R2MultipartUpload`."""

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, value: Any
    ) -> R2UploadedPart: ...
    async def _complete_multipart(
        self, key: str, upload_id: str, parts: list[R2UploadedPart]
    ) -> R2Object: ...
    async def _abort_multipart(self, key: str, upload_id: str) -> None: ...


class R2MultipartUpload:
    """An unfinished multipart upload. Keep `upload_id` to resume it later."""

    def __init__(self, key: str, upload_id: str, backend: MultipartBackend) -> None:
        self.key = key
        self.upload_id = upload_id
        self._backend = backend

    def __repr__(self) -> str:
        return f"R2MultipartUpload(key={self.key!r}, upload_id={self.upload_id!r})"

    async def upload_part(self, part_number: int, value: Any) -> R2UploadedPart:
        return await self._backend._upload_part(self.key, self.upload_id, part_number, value)

    async def abort(self) -> None:
        await self._backend._abort_multipart(self.key, self.upload_id)

    async def complete(self, parts: Sequence[R2UploadedPart | Mapping[str, Any]]) -> R2Object:
        if isinstance(parts, str | bytes | Mapping) or not isinstance(parts, Sequence):
            raise type_error("complete() takes a list of uploaded parts")
        coerced = [R2UploadedPart.coerce(p) for p in parts]
        return await self._backend._complete_multipart(self.key, self.upload_id, coerced)


class R2Bucket(Protocol):
    """The binding every provider implements (Cloudflare's `R2Bucket`)."""

    async def head(self, key: str) -> R2Object | None: ...
    async def get(
        self, key: str, only_if: Any = None, range: Any = None
    ) -> R2ObjectBody | R2Object | None: ...
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
    ) -> R2Object | None: ...
    async def delete(self, keys: str | Sequence[str]) -> None: ...
    async def list(
        self,
        limit: int | None = None,
        prefix: str | None = None,
        cursor: str | None = None,
        delimiter: str | None = None,
        start_after: str | None = None,
        include: Sequence[str] | None = None,
    ) -> R2Objects: ...
    async def create_multipart_upload(
        self,
        key: str,
        http_metadata: Any = None,
        custom_metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> R2MultipartUpload: ...
    def resume_multipart_upload(self, key: str, upload_id: str) -> R2MultipartUpload: ...


# -- argument checks, shared by every provider -------------------------------------------------
# What a Python value could get wrong on its way to the binding is checked the same way
# everywhere, with workerd's wording; R2's own limits are checked by the R2 service, so
# only a provider that plays the service (`local`) asks for them (`in_range`, ...).


def key_utf8(action: str, key: Any) -> bytes:
    """A key's UTF-8 bytes. A lone surrogate is refused: JavaScript would store U+FFFD."""
    if not isinstance(key, str):
        raise type_error(f"{action}: key must be a string, not {type(key).__name__}")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise r2_error(action, "InvalidObjectName", "not valid UTF-8") from None


def str_key(action: str, key: Any) -> str:
    """A key as a provider that leaves R2's checks to R2 passes it on: a str with a UTF-8
    form (only what JavaScript would silently change is refused here)."""
    key_utf8(action, key)
    return str(key)


def check_key(action: str, key: Any) -> str:
    """A key R2 accepts: valid UTF-8, not empty, at most 1,024 bytes."""
    size = len(key_utf8(action, key))
    if size == 0:
        raise r2_error(action, "InvalidObjectName", "empty key")
    if size > MAX_KEY_BYTES:
        raise r2_error(action, "InvalidObjectName", f"{size} bytes, over {MAX_KEY_BYTES}")
    return str(key)


def check_custom_metadata(action: str, value: Any) -> dict[str, str] | None:
    """Custom metadata: a dict of str to str with a UTF-8 form (None: none given)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise type_error(
            f"{action}: custom_metadata must be a dict of strings, not {type(value).__name__}"
        )
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise type_error(
                f"{action}: custom_metadata keys and values must be strings "
                f"(got {type(k).__name__}: {type(v).__name__})"
            )
        try:
            k.encode("utf-8"), v.encode("utf-8")
        except UnicodeEncodeError:
            raise type_error(f"{action}: custom_metadata is not valid UTF-8") from None
    return dict(value)


def check_storage_class(action: str, value: Any) -> str | None:
    """A storage class name, or None (the bucket's default)."""
    if value is not None and not isinstance(value, str):
        raise type_error(f"{action}: storage_class must be a string")
    return value


def check_digest(name: str, value: Any) -> bytes | str:
    """A `put` checksum: bytes, or a hex string, as the binding takes either."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value
    raise type_error(f"{name} must be bytes or a hex string, not {type(value).__name__}")


def range_dict(value: Any) -> dict[str, int] | None:
    """A `get` range, checked, as `{offset, length}` or `{suffix}` (None: no range)."""
    if value is None:
        return None
    r = R2Range.coerce(value)
    return {
        k: v
        for k, v in (("offset", r.offset), ("length", r.length), ("suffix", r.suffix))
        if v is not None
    }


def check_part_number(n: Any, *, in_range: bool = True) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise type_error(f"part_number must be an integer, not {type(n).__name__}")
    if in_range and not 1 <= n <= MAX_PART_NUMBER:
        raise type_error(
            f"Part number must be between 1 and {MAX_PART_NUMBER} (inclusive). "
            f"Actual value was: {n}"
        )
    return n


def check_list_options(
    limit: Any,
    prefix: Any,
    cursor: Any,
    delimiter: Any,
    start_after: Any,
    include: Any,
    *,
    in_range: bool = True,
) -> tuple[bool, bool]:
    """The options of `list()`; returns whether to include (http, custom) metadata."""
    for name, v in (
        ("prefix", prefix),
        ("cursor", cursor),
        ("delimiter", delimiter),
        ("start_after", start_after),
    ):
        if v is not None and not isinstance(v, str):
            raise type_error(f"list: {name} must be a string, not {type(v).__name__}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise type_error(f"list: limit must be an integer, not {type(limit).__name__}")
        if in_range and not 1 <= limit <= MAX_LIST_LIMIT:  # workerd would drop 0, list 1,000
            raise r2_error("list", "InvalidMaxKeys")
    return _include_flags(include)


def _include_flags(include: Any) -> tuple[bool, bool]:
    if include is None:
        return False, False
    if isinstance(include, str) or not isinstance(include, Sequence):
        raise type_error("list: include must be a list of strings")
    http = custom = False
    for item in include:
        if item in ("httpMetadata", "http_metadata"):
            http = True
        elif item in ("customMetadata", "custom_metadata"):
            custom = True
        else:
            raise range_error(f"Unsupported include value {item}")
    return http, custom


def include_names(http: bool, custom: bool) -> list[str]:
    """`include` as the binding takes it."""
    names = []
    if http:
        names.append("httpMetadata")
    if custom:
        names.append("customMetadata")
    return names


def check_parts(action: str, parts: Sequence[R2UploadedPart]) -> None:
    """The types of the parts given to `complete()` (R2 checks the numbers' range)."""
    for p in parts:
        if isinstance(p.part_number, bool) or not isinstance(p.part_number, int):
            raise type_error(f"{action}: part numbers must be integers")
        if not isinstance(p.etag, str):
            raise type_error(f"{action}: part etags must be strings")


def delete_keys(keys: Any, *, at_most: int | None = MAX_DELETE_KEYS) -> list[Any]:
    """The keys of `delete()` (one str or a list of them) as a list, not yet checked
    one by one; more than `at_most` is R2's TooManyKeys."""
    if isinstance(keys, str):
        return [keys]
    if isinstance(keys, Sequence) and not isinstance(keys, bytes | bytearray):
        names = list(keys)
        if at_most is not None and len(names) > at_most:
            raise r2_error("delete", "TooManyKeys", f"got {len(names)}")
        return names
    raise type_error(
        f"delete: keys must be a string or a list of strings, not {type(keys).__name__}"
    )


def resumed_upload(backend: MultipartBackend, key: Any, upload_id: Any) -> R2MultipartUpload:
    """`resume_multipart_upload()`: no lookup, as on Cloudflare (an unknown id fails on
    first use)."""
    if not isinstance(key, str):
        raise type_error("resumeMultipartUpload: key must be a string")
    if not isinstance(upload_id, str):
        raise type_error("resumeMultipartUpload: upload_id must be a string")
    return R2MultipartUpload(key, upload_id, backend)


# -- values ------------------------------------------------------------------------------------


def bad_value(action: str, value: Any) -> R2Error:
    return type_error(
        f"{action}: value must be bytes, str, a file-like object with .read(), an async "
        f"iterable of bytes, or None; not {type(value).__name__}"
    )


def body_chunk(action: str, chunk: Any) -> bytes | memoryview:
    """One chunk of a file or stream value: bytes as they are, other buffers as a flat
    byte view (no copy)."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        view = memoryview(chunk)
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    if isinstance(chunk, str):
        raise type_error(
            f"{action}: the value yielded str; yield bytes (open files in binary mode)"
        )
    raise type_error(f"{action}: the value yielded {type(chunk).__name__}, not bytes")


READ_CHUNK = 1 << 20  # bytes asked of a file-like value per read()


async def value_chunks(action: str, value: Any) -> AsyncIterator[bytes]:
    """The bytes of a file-like value (sync or async `read()`) or of an async iterable
    of bytes, chunk by chunk, each checked; anything else is `bad_value`."""
    if callable(getattr(value, "read", None)):
        while True:
            chunk = value.read(READ_CHUNK)
            if inspect.isawaitable(chunk):
                chunk = await chunk
            data = bytes(body_chunk(action, chunk))
            if not data:
                return
            yield data
    elif isinstance(value, AsyncIterable):
        async for chunk in value:
            yield bytes(body_chunk(action, chunk))
    else:
        raise bad_value(action, value)


def file_size(f: Any) -> int | None:
    """Bytes left to read in a file-like object, when cheaply known."""
    size = getattr(f, "size", None)  # e.g. starlette's UploadFile
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(0, st.st_size - f.tell())
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    try:
        if f.seekable():
            here = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(here)
            return max(0, end - here)
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    return None


__all__ = [
    "MAX_CUSTOM_METADATA_BYTES",
    "MAX_DELETE_KEYS",
    "MAX_KEY_BYTES",
    "MAX_LIST_LIMIT",
    "MAX_OBJECT_BYTES",
    "MAX_PART_BYTES",
    "MAX_PART_NUMBER",
    "MAX_PUT_BYTES",
    "MIN_PART_BYTES",
    "BodySource",
    "Condition",
    "Etag",
    "MultipartBackend",
    "R2Bucket",
    "R2Checksums",
    "R2Conditional",
    "R2HTTPMetadata",
    "R2MultipartUpload",
    "R2Object",
    "R2ObjectBody",
    "R2Objects",
    "R2OperationError",
    "R2Range",
    "R2UploadedPart",
    "bad_digest",
    "r2_error",
]
