"""The local R2 bucket: object bodies as files, metadata in a SQLite index.

Layout of a bucket folder:

    index.sqlite3            objects, multipart uploads and parts (WAL)
    objects/ab/<sha256(key)>-<version>        one file per object version
    parts/cd/<sha256(upload id)>-<n>-<random> one file per uploaded part
    .lock                    shared while open; exclusive for start-up recovery

File names are hashes, never keys, so no key can name a path outside the folder.

A write streams the body into a new file whose name (key hash + a fresh random
version) no other version ever uses, computing the MD5 as it goes; fsyncs the
file and the folder; and only then commits the index row, which is the one
atomic step that makes the object visible (the file is the temporary file, and
the commit is the rename). The replaced version's file is removed after the
commit. A crash at any point leaves the old object or the new one, never a torn
one: files no row points to are removed the next time the bucket is opened with
no other process holding it.

Blocking work (disk writes, fsync, commits) runs in worker threads; index reads
run on the event loop (WAL readers never wait for the writer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import hashlib
import inspect
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import R2Error
from ..invocation import count
from ..r2 import (
    LIST_LIMIT_WITH_INCLUDE,
    MAX_CUSTOM_METADATA_BYTES,
    MAX_LIST_LIMIT,
    MAX_OBJECT_BYTES,
    MAX_PART_BYTES,
    MAX_PUT_BYTES,
    MIN_PART_BYTES,
    MULTIPART_EXPIRY_SECONDS,
    STORAGE_CLASSES,
    WRITE_INTERVAL_SECONDS,
    Condition,
    R2Checksums,
    R2HTTPMetadata,
    R2MultipartUpload,
    R2Object,
    R2ObjectBody,
    R2Objects,
    R2Range,
    R2UploadedPart,
    bad_digest,
    bad_value,
    body_chunk,
    check_custom_metadata,
    check_digest,
    check_key,
    check_list_options,
    check_part_number,
    check_storage_class,
    delete_keys,
    file_size,
    r2_error,
    resumed_upload,
    type_error,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: single-process assumption
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

CHUNK = 1024 * 1024  # bytes per disk write/read and per body chunk
INLINE_IO = CHUNK  # reads up to this size run on the event loop (a thread hop costs more)
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="flarebase-r2")

_ALGORITHMS = {
    "md5": ("MD5", 16),
    "sha1": ("SHA-1", 20),
    "sha256": ("SHA-256", 32),
    "sha384": ("SHA-384", 48),
    "sha512": ("SHA-512", 64),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,          -- epoch milliseconds
    checksums TEXT NOT NULL,            -- JSON: algorithm -> hex
    http_metadata TEXT NOT NULL,        -- JSON, camelCase
    custom_metadata TEXT NOT NULL,      -- JSON
    storage_class TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    storage_class TEXT NOT NULL,
    state TEXT NOT NULL,                -- in-progress | completed | aborted
    created INTEGER NOT NULL            -- epoch milliseconds
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    md5 TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
"""

_OBJECT_COLUMNS = (
    "key, blob, version, size, etag, uploaded, checksums, http_metadata, custom_metadata, "
    "storage_class"
)
_INSERT_OBJECT = (
    f"INSERT OR REPLACE INTO objects ({_OBJECT_COLUMNS}) VALUES (:key, :blob, :version, :size, "
    ":etag, :uploaded, :checksums, :http_metadata, :custom_metadata, :storage_class)"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _new_hash(name: str) -> Any:
    return hashlib.new(name, usedforsecurity=False)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# -- validation ------------------------------------------------------------------------------


def _check_custom(action: str, value: Any) -> dict[str, str]:
    custom = check_custom_metadata(action, value) or {}
    total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in custom.items())
    if total > MAX_CUSTOM_METADATA_BYTES:
        raise r2_error(
            action, "MetadataTooLarge", f"{total} bytes, over {MAX_CUSTOM_METADATA_BYTES}"
        )
    return custom


def _check_storage_class(action: str, value: Any) -> str:
    sclass = check_storage_class(action, value)
    if sclass is None:
        return "Standard"
    if sclass not in STORAGE_CLASSES:
        raise r2_error(
            action, "InvalidStorageClass", f"{sclass!r}; use {' or '.join(STORAGE_CLASSES)}"
        )
    return sclass


def _check_checksum(given: dict[str, Any]) -> tuple[str, bytes] | None:
    """At most one of md5/sha1/...; bytes of the right size or hex (workerd's messages)."""
    chosen: tuple[str, bytes] | None = None
    for name, value in given.items():
        if value is None:
            continue
        if chosen is not None:
            raise type_error("You cannot specify multiple hashing algorithms.")
        label, size = _ALGORITHMS[name]
        digest = check_digest(name, value)
        if isinstance(digest, bytes):
            if len(digest) != size:
                raise type_error(f"{label} is {size} bytes, not {len(digest)}")
        else:
            if len(digest) != size * 2:
                raise type_error(f"{label} is {size * 2} hex characters, not {len(digest)}")
            try:
                digest = bytes.fromhex(digest)
            except ValueError:
                raise type_error(f"Provided {label} wasn't a valid hex string") from None
        chosen = (name, digest)
    return chosen


def _resolve_range(action: str, value: Any, size: int) -> tuple[int, int] | None:
    """(offset, length) for a get's range, with Cloudflare's 416 rules (as Miniflare)."""
    if value is None:
        return None
    r = R2Range.coerce(value)
    offset, length = r.offset, r.length
    if r.suffix is not None:
        if r.suffix <= 0:
            raise r2_error(action, "InvalidRange")
        suffix = min(r.suffix, size)
        offset, length = size - suffix, suffix
    if offset is None:
        offset = 0
    if length is None:
        length = size - offset
    if offset < 0 or offset > size or length <= 0:
        raise r2_error(action, "InvalidRange")
    return offset, min(length, size - offset)


# -- values ----------------------------------------------------------------------------------


@dataclass
class _Value:
    """A put/uploadPart value, classified. `size` is known up front when it can be."""

    kind: str  # bytes | sync-file | async-file | async-iter
    obj: Any
    size: int | None


def _classify(action: str, value: Any) -> _Value:
    if value is None:
        return _Value("bytes", b"", 0)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _Value("bytes", data, len(data))
    if isinstance(value, bytes | bytearray | memoryview):
        view = _as_chunk(action, value)
        return _Value("bytes", view, view.nbytes)
    read = getattr(value, "read", None)
    if callable(read):
        kind = "async-file" if inspect.iscoroutinefunction(read) else "sync-file"
        return _Value(kind, value, file_size(value))
    if isinstance(value, AsyncIterable):
        size = len(value) if hasattr(value, "__len__") else None  # type: ignore[arg-type]
        return _Value("async-iter", value, size)
    raise bad_value(action, value)


def _as_chunk(action: str, chunk: Any) -> memoryview:
    return memoryview(body_chunk(action, chunk))


class _BlobWriter:
    """Writes one file under its final name, which no other version ever uses.

    Nothing points to the file until the index row is committed after `finish`
    (file and folder fsynced), so a crash mid-write leaves only an orphan, which
    the next start-up removes, never a torn object.
    """

    def __init__(self, path: Path, *, action: str, limit: int, algorithms: tuple[str, ...]) -> None:
        self.path = path
        self.action = action
        self.limit = limit
        self.size = 0
        self._hashes = {name: _new_hash(name) for name in algorithms}
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(path.parent.parent)
        self._file: IO[bytes] | None = open(path, "xb", buffering=0)  # noqa: SIM115
        self._synced = False
        self._lock = threading.Lock()

    def _put(self, view: memoryview) -> None:
        assert self._file is not None
        while view:
            written = self._file.write(view)
            view = view[written or 0 :]

    def write(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        n = view.nbytes
        with self._lock:
            if self._file is None:
                raise RuntimeError("blob writer is closed")
            if self.size + n > self.limit:
                raise r2_error(self.action, "EntityTooLarge")
            for h in self._hashes.values():
                h.update(view)
            self._put(view)
            self.size += n

    def write_all(self, chunks: list[memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_whole(self, data: memoryview | bytes) -> None:
        """A whole in-memory value, durably: hashing on one thread and the folder's
        fsync on another run while this thread writes and fsyncs the file."""
        view = memoryview(data)
        with self._lock:
            assert self._file is not None
            if view.nbytes > self.limit:
                raise r2_error(self.action, "EntityTooLarge")
            jobs = [_POOL.submit(_fsync_dir, self.path.parent)]
            if view.nbytes >= 64 * 1024:
                jobs += [_POOL.submit(h.update, view) for h in self._hashes.values()]
            else:
                for h in self._hashes.values():
                    h.update(view)
            try:
                self._put(view)
                os.fsync(self._file.fileno())
            finally:
                for job in jobs:
                    job.result()
            self.size = view.nbytes
            self._synced = True

    def copy_file(self, path: Path) -> None:
        """Append a whole file (a multipart part), in the kernel where it can."""
        with self._lock, open(path, "rb", buffering=0) as src:
            assert self._file is not None
            dst = self._file.fileno()
            copied = 0
            if hasattr(os, "copy_file_range"):
                try:
                    while n := os.copy_file_range(src.fileno(), dst, 64 * CHUNK):
                        copied += n
                except OSError:  # not supported here: copy through user space
                    src.seek(copied)
                    os.lseek(dst, self.size + copied, os.SEEK_SET)
                else:
                    self.size += copied
                    return
            while chunk := src.read(CHUNK):
                self._put(memoryview(chunk))
                copied += len(chunk)
            self.size += copied

    def copy_from(self, f: Any) -> None:
        """Drain a synchronous file-like object (runs in a worker thread)."""
        readinto = getattr(f, "readinto", None)
        if callable(readinto):
            view = memoryview(bytearray(CHUNK))
            while n := readinto(view):
                self.write(view[:n])
            return
        while chunk := f.read(CHUNK):
            self.write(_as_chunk(self.action, chunk))

    def finish(self) -> dict[str, bytes]:
        """Make the file durable (file and folder fsynced); return the digests."""
        with self._lock:
            assert self._file is not None
            if not self._synced:
                os.fsync(self._file.fileno())
                _fsync_dir(self.path.parent)
            self._file.close()
            self._file = None
        return {name: h.digest() for name, h in self._hashes.items()}

    def discard(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            _unlink(self.path)


class _FileBody:
    """An object's bytes [start, start+length) from an open file, read in chunks."""

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        self._file: IO[bytes] | None = file
        self._pos = start
        self._left = length

    def _pread(self, n: int) -> bytes:
        assert self._file is not None
        parts = []
        want = n
        fd = self._file.fileno()
        while want:
            chunk = os.pread(fd, want, self._pos + (n - want))
            if not chunk:
                raise r2_error("get", "InternalError", "object file is shorter than its index")
            parts.append(chunk)
            want -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read(self, n: int) -> bytes:
        if self._file is None:
            raise type_error("The body stream is closed.")
        data = self._pread(n) if n <= INLINE_IO else await asyncio.to_thread(self._pread, n)
        self._pos += n
        self._left -= n
        if self._left == 0:
            self._close()
        return data

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._left <= 0:
            self._close()
            raise StopAsyncIteration
        return await self._read(min(CHUNK, self._left))

    async def read_all(self) -> bytes:
        if self._left <= 0:
            self._close()
            return b""
        return await self._read(self._left)

    async def aclose(self) -> None:
        self._close()

    def __del__(self) -> None:
        self._close()


# -- the bucket ------------------------------------------------------------------------------


class LocalR2:
    """One R2 bucket in a folder. Cloudflare's `R2Bucket` API (snake_case)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._objects_dir = self.folder / "objects"
        self._parts_dir = self.folder / "parts"
        self._lock_file: IO[bytes] | None = open(self.folder / ".lock", "a+b")  # noqa: SIM115
        exclusive = _lock(self._lock_file)
        path = self.folder / "index.sqlite3"
        self._writer = _connect(path)
        self._reader = _connect(path)
        self._wlock = threading.Lock()
        with self._wlock:
            self._writer.executescript(_SCHEMA)
        if exclusive:
            self._recover()
            _share(self._lock_file)
        self._last_write: dict[str, float] = {}
        self._writing: set[str] = set()
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._wlock:
            self._writer.close()
        self._reader.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def __repr__(self) -> str:
        return f"LocalR2({str(self.folder)!r})"

    # -- reads -------------------------------------------------------------------------------

    async def head(self, key: str) -> R2Object | None:
        self._begin("head")
        check_key("head", key)
        row = self._row(key)
        if row is None:
            return None
        return self._object(row, R2Range(offset=0, length=row["size"]))

    async def get(
        self, key: str, only_if: Any = None, range: Any = None
    ) -> R2ObjectBody | R2Object | None:
        action = "get"
        self._begin(action)
        check_key(action, key)
        cond = Condition.coerce(only_if)
        if range is not None:
            R2Range.coerce(range)  # client-side checks come before the request
        for _attempt in (1, 2, 3, 4, 5):
            row = self._row(key)
            if row is None:
                return None
            size = row["size"]
            if cond is not None and not cond.holds(row["etag"], row["uploaded"]):
                return self._object(row, R2Range(offset=0, length=size))
            span = _resolve_range(action, range, size)
            offset, length = span if span is not None else (0, size)
            try:
                file = open(self._blob_path(row["blob"]), "rb", buffering=0)  # noqa: SIM115
            except FileNotFoundError:
                continue  # replaced between the lookup and the open: look again
            obj = self._object(row, R2Range(offset=offset, length=length))
            return R2ObjectBody(**_fields(obj), source=_FileBody(file, offset, length))
        raise r2_error(action, "InternalError", "the object kept changing while being read")

    async def list(
        self,
        limit: int | None = None,
        prefix: str | None = None,
        cursor: str | None = None,
        delimiter: str | None = None,
        start_after: str | None = None,
        include: Sequence[str] | None = None,
    ) -> R2Objects:
        action = "list"
        self._begin(action)
        with_http, with_custom = check_list_options(
            limit, prefix, cursor, delimiter, start_after, include
        )
        if limit is None:
            limit = MAX_LIST_LIMIT
        if include:
            limit = min(limit, LIST_LIMIT_WITH_INCLUDE)
        prefix = prefix or ""
        delimiter = delimiter or None

        # Scan position: (bound, inclusive). Start at the prefix, then move past
        # start_after and the cursor, whichever is later.
        pos: tuple[str, bool] = (prefix, True)
        if start_after is not None:
            pos = _later(pos, (start_after, False))
        if cursor:
            after = _decode_cursor(cursor)
            if after is None:
                return R2Objects(objects=[], truncated=False, delimited_prefixes=[])
            pos = _later(pos, after)
        end = _successor(prefix) if prefix else None

        entries: list[tuple[str, Any]] = []  # ("object", row) | ("prefix", str)
        done = False
        while not done and len(entries) <= limit:
            want = limit + 1 - len(entries)
            rows = self._scan(pos, end, want)
            restarted = False
            for row in rows:
                key = row["key"]
                if delimiter is not None:
                    i = key.find(delimiter, len(prefix))
                    if i >= 0:
                        group = key[: i + len(delimiter)]
                        entries.append(("prefix", group))
                        nxt = _successor(group)
                        if nxt is None:
                            done = True
                        else:
                            pos = (nxt, True)
                        restarted = True
                        break
                entries.append(("object", row))
                pos = (key, False)
            if not restarted and len(rows) < want:
                done = True

        truncated = len(entries) > limit
        entries = entries[:limit]
        next_cursor = None
        if truncated:
            kind, last = entries[-1]
            next_cursor = _encode_cursor(("a", last["key"]) if kind == "object" else ("p", last))
        objects = [
            self._object(v, None, http=with_http, custom=with_custom)
            for k, v in entries
            if k == "object"
        ]
        prefixes = [v for k, v in entries if k == "prefix"]
        return R2Objects(
            objects=objects, truncated=truncated, cursor=next_cursor, delimited_prefixes=prefixes
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
        self._begin(action)
        check_key(action, key)
        checksum = _check_checksum(
            {"md5": md5, "sha1": sha1, "sha256": sha256, "sha384": sha384, "sha512": sha512}
        )
        cond = Condition.coerce(only_if)
        http = R2HTTPMetadata.coerce(http_metadata)
        custom = _check_custom(action, custom_metadata)
        sclass = _check_storage_class(action, storage_class)
        source = _classify(action, value)
        if source.size is not None and source.size > MAX_PUT_BYTES:
            raise r2_error(action, "EntityTooLarge")

        self._reserve(action, key)
        try:
            if cond is not None:
                existing = self._row(key)
                current = (existing["etag"], existing["uploaded"]) if existing else (None, None)
                if not cond.holds(*current):
                    return None
            version = secrets.token_hex(16)
            blob = f"{_sha256(key)}-{version}"
            algorithms = (
                ("md5",) if checksum is None or checksum[0] == "md5" else ("md5", checksum[0])
            )
            writer = _BlobWriter(
                self._blob_path(blob), action=action, limit=MAX_PUT_BYTES, algorithms=algorithms
            )
            row: dict[str, Any] = {
                "key": key,
                "blob": blob,
                "version": version,
                "http_metadata": json.dumps(http.to_json()),
                "custom_metadata": json.dumps(custom),
                "storage_class": sclass,
            }

            def commit(digests: dict[str, bytes]) -> dict[str, Any] | None:
                if checksum is not None and digests[checksum[0]] != checksum[1]:
                    label = _ALGORITHMS[checksum[0]][0]
                    raise bad_digest(action, label, checksum[1], digests[checksum[0]])
                row["size"] = writer.size
                row["etag"] = digests["md5"].hex()
                row["checksums"] = json.dumps({k: v.hex() for k, v in digests.items()})
                if not self._commit_object(row, cond):
                    _unlink(writer.path)
                    return None
                return row

            committed = await self._write_value(action, source, writer, commit)
            if committed is None:
                return None
            obj = self._object(committed, None)
            obj.http_metadata, obj.custom_metadata = http, custom
            return obj
        finally:
            self._writing.discard(key)

    async def delete(self, keys: str | Sequence[str]) -> None:
        action = "delete"
        self._begin(action)
        names = delete_keys(keys)
        for name in names:
            check_key(action, name)
        if names:
            await asyncio.to_thread(self._delete_rows, names)

    # -- multipart ---------------------------------------------------------------------------

    async def create_multipart_upload(
        self,
        key: str,
        http_metadata: Any = None,
        custom_metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,
    ) -> R2MultipartUpload:
        action = "createMultipartUpload"
        self._begin(action)
        check_key(action, key)
        http = R2HTTPMetadata.coerce(http_metadata)
        custom = _check_custom(action, custom_metadata)
        sclass = _check_storage_class(action, storage_class)
        upload_id = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        row = (
            upload_id,
            key,
            json.dumps(http.to_json()),
            json.dumps(custom),
            sclass,
            "in-progress",
            _now_ms(),
        )
        await asyncio.to_thread(
            self._write, "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)", row
        )
        return R2MultipartUpload(key, upload_id, self)

    def resume_multipart_upload(self, key: str, upload_id: str) -> R2MultipartUpload:
        """No lookup, as on Cloudflare: an unknown id fails on first use."""
        return resumed_upload(self, key, upload_id)

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, value: Any
    ) -> R2UploadedPart:
        action = "uploadPart"
        self._begin(action)
        check_part_number(part_number)
        check_key(action, key)
        source = _classify(action, value)
        if source.size is not None and source.size > MAX_PART_BYTES:
            raise r2_error(action, "EntityTooLarge")
        self._upload(action, key, upload_id)
        blob = f"{_sha256(upload_id)}-{part_number}-{secrets.token_hex(8)}"
        writer = _BlobWriter(
            self._part_path(blob), action=action, limit=MAX_PART_BYTES, algorithms=("md5",)
        )

        def commit(digests: dict[str, bytes]) -> str:
            etag = digests["md5"].hex()
            self._commit_part(action, key, upload_id, part_number, blob, writer.size, etag)
            return etag

        etag = await self._write_value(action, source, writer, commit)
        return R2UploadedPart(part_number=part_number, etag=etag)

    async def _complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[R2UploadedPart]
    ) -> R2Object:
        action = "completeMultipartUpload"
        self._begin(action)
        for p in parts:
            check_part_number(p.part_number)
            if not isinstance(p.etag, str):
                raise type_error("completeMultipartUpload: part etags must be strings")
        check_key(action, key)
        upload = self._upload(action, key, upload_id)
        if not parts:
            raise r2_error(action, "NoParts")
        numbers = [p.part_number for p in parts]
        if len(set(numbers)) != len(numbers):
            dupes = sorted({n for n in numbers if numbers.count(n) > 1})
            raise r2_error(action, "InvalidPart", f"part numbers listed twice: {dupes}")
        stored = {
            r["part_number"]: r
            for r in self._reader.execute(
                "SELECT part_number, blob, size, etag, md5 FROM parts WHERE upload_id = ?",
                (upload_id,),
            )
        }
        chosen = []
        for p in parts:
            r = stored.get(p.part_number)
            if r is None or r["etag"] != p.etag:
                raise r2_error(action, "InvalidPart", f"part {p.part_number}")
            chosen.append(r)
        for r in chosen[:-1]:
            if r["size"] < MIN_PART_BYTES:
                raise r2_error(action, "EntityTooSmall", f"part {r['part_number']}")
        chosen.sort(key=lambda r: r["part_number"])
        sizes = {r["size"] for r in chosen[:-1]}
        if len(sizes) > 1:
            raise r2_error(action, "PartsNotSameLength")
        if sizes and chosen[-1]["size"] > next(iter(sizes)):
            raise r2_error(action, "BadUpload", "the last part is larger than the others")
        total = sum(r["size"] for r in chosen)
        if total > MAX_OBJECT_BYTES:
            raise r2_error(action, "EntityTooLarge")

        self._reserve(action, key)
        try:
            version = secrets.token_hex(16)
            blob = f"{_sha256(key)}-{version}"
            writer = _BlobWriter(self._blob_path(blob), action=action, limit=total, algorithms=())
            md5s = b"".join(bytes.fromhex(r["md5"]) for r in chosen)
            row = {
                "key": key,
                "blob": blob,
                "version": version,
                "size": total,
                "etag": f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}",
                "checksums": "{}",
                "http_metadata": upload["http_metadata"],
                "custom_metadata": upload["custom_metadata"],
                "storage_class": upload["storage_class"],
            }

            def build() -> dict[str, Any]:
                try:
                    for r in chosen:
                        writer.copy_file(self._part_path(r["blob"]))
                    writer.finish()
                except BaseException:
                    writer.discard()
                    raise
                try:
                    self._commit_completion(action, key, upload_id, row)
                except BaseException:
                    _unlink(writer.path)
                    raise
                return row

            # Once in the worker thread, the completion runs to its end (cleaning up
            # after itself on failure) even if this call is cancelled.
            committed = await asyncio.to_thread(build)
            return self._object(committed, None)
        finally:
            self._writing.discard(key)

    async def _abort_multipart(self, key: str, upload_id: str) -> None:
        action = "abortMultipartUpload"
        self._begin(action)
        check_key(action, key)
        await asyncio.to_thread(self._abort_rows, action, key, upload_id)

    # -- internals: index --------------------------------------------------------------------

    def _begin(self, action: str) -> None:
        if self._closed:
            raise R2Error(f"{action}: the bucket {self.folder} is closed", code="Closed")
        count("r2")

    def _row(self, key: str) -> sqlite3.Row | None:
        # fetchall, not fetchone: finishing the statement ends the read transaction
        rows = self._reader.execute(
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE key = ?", (key,)
        ).fetchall()
        return rows[0] if rows else None

    def _scan(
        self, pos: tuple[str, bool], end: str | None, limit: int
    ) -> builtins.list[sqlite3.Row]:
        bound, inclusive = pos
        sql = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE key {'>=' if inclusive else '>'} ?"
        params: list[Any] = [bound]
        if end is not None:
            sql += " AND key < ?"
            params.append(end)
        sql += " ORDER BY key LIMIT ?"
        params.append(limit)
        return self._reader.execute(sql, params).fetchall()

    def _object(
        self,
        row: Any,
        span: R2Range | None,
        *,
        http: bool = True,
        custom: bool = True,
    ) -> R2Object:
        checksums = {k: bytes.fromhex(v) for k, v in json.loads(row["checksums"]).items()}
        etag = row["etag"]
        return R2Object(
            key=row["key"],
            version=row["version"],
            size=row["size"],
            etag=etag,
            http_etag=f'"{etag}"',
            uploaded=datetime.fromtimestamp(row["uploaded"] / 1000, UTC),
            http_metadata=R2HTTPMetadata.from_json(json.loads(row["http_metadata"]))
            if http
            else None,
            custom_metadata=json.loads(row["custom_metadata"]) if custom else None,
            range=span,
            checksums=R2Checksums(**checksums),
            storage_class=row["storage_class"],
        )

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        with self._wlock, self._transaction():
            self._writer.execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        """BEGIN IMMEDIATE ... COMMIT on the writer (hold `_wlock`)."""
        db = self._writer
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _commit_object(self, row: dict[str, Any], cond: Condition | None) -> bool:
        """Make the new version visible, if `cond` still holds. Runs in a worker thread."""
        with self._wlock, self._transaction() as db:
            old = db.execute(
                "SELECT blob, etag, uploaded FROM objects WHERE key = ?", (row["key"],)
            ).fetchone()
            if cond is not None and not cond.holds(
                old["etag"] if old else None, old["uploaded"] if old else None
            ):
                return False
            _insert_object(db, row)
        if old is not None and old["blob"] != row["blob"]:
            _unlink(self._blob_path(old["blob"]))
        return True

    def _delete_rows(self, keys: builtins.list[str]) -> None:
        blobs = []
        with self._wlock, self._transaction() as db:
            for key in keys:
                gone = db.execute("DELETE FROM objects WHERE key = ? RETURNING blob", (key,))
                blobs += [r["blob"] for r in gone.fetchall()]
        for blob in blobs:
            _unlink(self._blob_path(blob))

    def _upload(self, action: str, key: str, upload_id: str) -> sqlite3.Row:
        """The in-progress upload `upload_id` of `key`, or NoSuchUpload."""
        if not isinstance(upload_id, str):
            raise type_error(f"{action}: upload_id must be a string")
        rows = self._reader.execute(
            "SELECT * FROM uploads WHERE upload_id = ? AND key = ?", (upload_id, key)
        ).fetchall()
        row: sqlite3.Row | None = rows[0] if rows else None
        if row is None or row["state"] != "in-progress" or _expired(row["created"]):
            raise r2_error(action, "NoSuchUpload")
        return row

    def _commit_part(
        self,
        action: str,
        key: str,
        upload_id: str,
        part_number: int,
        blob: str,
        size: int,
        md5: str,
    ) -> None:
        with self._wlock, self._transaction() as db:
            _check_in_progress(db, action, key, upload_id)
            old = db.execute(
                "SELECT blob FROM parts WHERE upload_id = ? AND part_number = ?",
                (upload_id, part_number),
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?)",
                (upload_id, part_number, blob, size, md5, md5),
            )
        if old is not None:
            _unlink(self._part_path(old["blob"]))

    def _commit_completion(
        self, action: str, key: str, upload_id: str, row: dict[str, Any]
    ) -> None:
        with self._wlock, self._transaction() as db:
            _check_in_progress(db, action, key, upload_id)
            old = db.execute("SELECT blob FROM objects WHERE key = ?", (key,)).fetchone()
            _insert_object(db, row)
            parts = db.execute(
                "DELETE FROM parts WHERE upload_id = ? RETURNING blob", (upload_id,)
            ).fetchall()
            db.execute("UPDATE uploads SET state = 'completed' WHERE upload_id = ?", (upload_id,))
        for p in parts:
            _unlink(self._part_path(p["blob"]))
        if old is not None:
            _unlink(self._blob_path(old["blob"]))

    def _abort_rows(self, action: str, key: str, upload_id: str) -> None:
        with self._wlock, self._transaction() as db:
            up = db.execute(
                "SELECT state FROM uploads WHERE upload_id = ? AND key = ?", (upload_id, key)
            ).fetchone()
            if up is None:
                raise r2_error(action, "NoSuchUpload")
            if up["state"] != "in-progress":
                return  # aborting twice, or after completing, does nothing (as Cloudflare)
            parts = db.execute(
                "DELETE FROM parts WHERE upload_id = ? RETURNING blob", (upload_id,)
            ).fetchall()
            db.execute("UPDATE uploads SET state = 'aborted' WHERE upload_id = ?", (upload_id,))
        for p in parts:
            _unlink(self._part_path(p["blob"]))

    # -- internals: files --------------------------------------------------------------------

    def _blob_path(self, blob: str) -> Path:
        return self._objects_dir / blob[:2] / blob

    def _part_path(self, blob: str) -> Path:
        return self._parts_dir / blob[:2] / blob

    async def _write_value(
        self,
        action: str,
        source: _Value,
        writer: _BlobWriter,
        commit: Callable[[dict[str, bytes]], T],
    ) -> T:
        """Write `source` into `writer`, make it durable, then `commit(digests)` (in a
        worker thread). On any failure the new file is removed. Once the last step has
        started in its thread it runs to its end, cleaning up after itself, even if
        this call is cancelled: the caller never removes a file a commit may use."""

        def finish() -> T:
            try:
                digests = writer.finish()
            except BaseException:
                writer.discard()
                raise
            try:
                return commit(digests)
            except BaseException:
                _unlink(writer.path)
                raise

        if source.kind == "bytes":

            def whole() -> T:
                try:
                    writer.write_whole(source.obj)
                except BaseException:
                    writer.discard()
                    raise
                return finish()

            return await asyncio.to_thread(whole)
        try:
            await self._stream(action, source, writer)
        except BaseException:
            writer.discard()
            raise
        return await asyncio.to_thread(finish)

    async def _stream(self, action: str, source: _Value, writer: _BlobWriter) -> None:
        """Copy a non-bytes value into `writer`, a chunk (about 1 MiB) at a time."""
        if source.kind == "sync-file":
            await asyncio.to_thread(writer.copy_from, source.obj)
            return
        pending: list[memoryview] = []
        size = 0

        async def flush() -> None:
            nonlocal pending, size
            if pending:
                batch, pending, size = pending, [], 0
                await asyncio.to_thread(writer.write_all, batch)

        async def add(chunk: Any) -> None:
            nonlocal size
            view = _as_chunk(action, chunk)
            if writer.size + size + view.nbytes > writer.limit:
                raise r2_error(action, "EntityTooLarge")  # before writing past the limit
            pending.append(view)
            size += view.nbytes
            if size >= CHUNK:
                await flush()

        if source.kind == "async-file":
            while chunk := await source.obj.read(CHUNK):
                await add(chunk)
        else:
            async for chunk in source.obj:
                await add(chunk)
        await flush()

    def _recover(self) -> None:
        """Remove what a crash left behind: temporary files, files no row points to,
        and the parts of uploads unfinished for 7 days. Only run with no other user."""
        db = self._writer
        with self._wlock:
            cutoff = _now_ms() - MULTIPART_EXPIRY_SECONDS * 1000
            with self._transaction():
                db.execute(
                    "DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads "
                    "WHERE state = 'in-progress' AND created < ?)",
                    (cutoff,),
                )
                db.execute(
                    "UPDATE uploads SET state = 'aborted' "
                    "WHERE state = 'in-progress' AND created < ?",
                    (cutoff,),
                )
                db.execute(
                    "DELETE FROM uploads WHERE state != 'in-progress' AND created < ?",
                    (cutoff,),
                )
            referenced = {r[0] for r in db.execute("SELECT blob FROM objects")}
            referenced |= {r[0] for r in db.execute("SELECT blob FROM parts")}
        for root in (self._objects_dir, self._parts_dir):
            if not root.is_dir():
                continue
            for shard in root.iterdir():
                if not shard.is_dir():
                    continue
                for f in shard.iterdir():
                    if f.name not in referenced:
                        _unlink(f)

    def _reserve(self, action: str, key: str) -> None:
        """At most one write to a key per second, and none while one is in flight
        (Cloudflare answers 429, 10058). Counted per process."""
        now = time.monotonic()
        last = self._last_write.get(key)
        if key in self._writing or (last is not None and now - last < WRITE_INTERVAL_SECONDS):
            raise r2_error(action, "TooManyRequests")
        if len(self._last_write) > 10_000:
            self._last_write = {
                k: t for k, t in self._last_write.items() if now - t < WRITE_INTERVAL_SECONDS
            }
        self._last_write[key] = now
        self._writing.add(key)


# -- helpers ---------------------------------------------------------------------------------


def _fields(obj: R2Object) -> dict[str, Any]:
    return {
        "key": obj.key,
        "version": obj.version,
        "size": obj.size,
        "etag": obj.etag,
        "http_etag": obj.http_etag,
        "uploaded": obj.uploaded,
        "http_metadata": obj.http_metadata,
        "custom_metadata": obj.custom_metadata,
        "range": obj.range,
        "checksums": obj.checksums,
        "storage_class": obj.storage_class,
    }


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    return db


def _lock(f: IO[bytes]) -> bool:
    """Try for the exclusive lock (no one else has the bucket open)."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        with contextlib.suppress(OSError):  # e.g. a file system without locks
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        return False


def _share(f: IO[bytes]) -> None:
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)


def _expired(created_ms: int) -> bool:
    return _now_ms() - created_ms > MULTIPART_EXPIRY_SECONDS * 1000


def _insert_object(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    """Write an object's row, uploaded now (inside the caller's write transaction)."""
    row["uploaded"] = _now_ms()
    db.execute(_INSERT_OBJECT, row)


def _check_in_progress(db: sqlite3.Connection, action: str, key: str, upload_id: str) -> None:
    """Inside the write transaction: the upload may have ended since it was looked up."""
    up = db.execute(
        "SELECT state, created FROM uploads WHERE upload_id = ? AND key = ?", (upload_id, key)
    ).fetchone()
    if up is None or up["state"] != "in-progress" or _expired(up["created"]):
        raise r2_error(action, "NoSuchUpload")


def _successor(s: str) -> str | None:
    """The least string greater than every string starting with `s` (code point order,
    which is UTF-8 byte order, which is SQLite's BINARY order)."""
    chars = list(s)
    while chars:
        c = ord(chars[-1]) + 1
        if c > 0x10FFFF:
            chars.pop()
            continue
        if 0xD800 <= c <= 0xDFFF:
            c = 0xE000
        chars[-1] = chr(c)
        return "".join(chars)
    return None


def _later(a: tuple[str, bool], b: tuple[str, bool]) -> tuple[str, bool]:
    """The later of two scan positions (bound, inclusive)."""
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    return a if not a[1] else b


def _encode_cursor(pos: tuple[str, str]) -> str:
    kind, value = pos
    return base64.urlsafe_b64encode((kind + value).encode("utf-8")).decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, bool] | None:
    """A scan position; None when the cursor is past the end of the key space."""
    try:
        text = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise r2_error("list", "InvalidCursor") from None
    kind, value = text[:1], text[1:]
    if kind == "a" and value:
        return (value, False)
    if kind == "p" and value:
        nxt = _successor(value)
        return None if nxt is None else (nxt, True)
    raise r2_error("list", "InvalidCursor")
