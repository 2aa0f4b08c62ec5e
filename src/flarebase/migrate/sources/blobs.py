"""Reading blobs: any S3-compatible bucket (boto3), a Vercel Blob store, a local folder.

Every source lists objects in pages, in a stable order, each object with the
position to resume after it, and opens an object as HTTP metadata, custom metadata
and a stream of chunks.

- S3: `ListObjectsV2` (resumed with `StartAfter`, the last key done); `ETag` is the
  object's MD5 for single-part uploads, `md5(part md5s)-N` for multipart ones.
  `HeadObject(PartNumber=1)` gives a multipart object's part size, so the copy in R2
  is made of the same parts and has the same ETag.
- Vercel Blob: `GET <api>?limit=&cursor=&prefix=` with `Authorization: Bearer
  <token>` returns `{blobs: [{url, downloadUrl, pathname, size, uploadedAt}],
  cursor, hasMore}`; a blob is downloaded from its `url`. The listing has no
  checksum: MD5 is computed while reading.
- A folder: files in the order of their relative paths ("/"-separated); the content
  type is guessed from the name; MD5 computed while reading.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ...platform.errors import FlarebaseError

VERCEL_API = "https://blob.vercel-storage.com"


class BlobSourceError(FlarebaseError):
    code = "MIGRATE_BLOBS"


@dataclass
class SourceObject:
    key: str
    size: int
    etag: str | None  # lowercase hex MD5, "hex-N" for multipart, None when the listing has none
    position: list[Any]  # resume after this object
    handle: Any = None  # source-specific (a URL, a path)


@dataclass
class Opened:
    """An object being read: its metadata and its bytes, chunk by chunk."""

    http: dict[str, str] = field(default_factory=dict)  # content_type, cache_control, ...
    custom: dict[str, str] = field(default_factory=dict)
    chunks: Any = None  # async (n) -> bytes: the next n bytes (fewer at the end)
    close: Any = None


class BlobSource(Protocol):
    description: str

    def pages(self, after: list[Any] | None, size: int) -> AsyncIterator[list[SourceObject]]: ...
    async def open(self, obj: SourceObject) -> Opened: ...
    async def part_size(self, obj: SourceObject) -> int | None: ...
    async def aclose(self) -> None: ...


# -- S3 --------------------------------------------------------------------------------------


class S3Blobs:
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise BlobSourceError(f"expected s3://bucket[/prefix], got {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.lstrip("/")
        self.description = f"s3://{self.bucket}/{self.prefix}" + (
            f" ({endpoint_url})" if endpoint_url else ""
        )
        self._s3 = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or os.environ.get("AWS_REGION") or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        )

    async def pages(self, after: list[Any] | None, size: int) -> AsyncIterator[list[SourceObject]]:
        start = str(after[0]) if after else ""
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": size}
            if start:
                args["StartAfter"] = start
            page = await self._call(self._s3.list_objects_v2, **args)
            objects = [
                SourceObject(o["Key"], int(o["Size"]), _etag(o.get("ETag")), [o["Key"]])
                for o in page.get("Contents", [])
            ]
            if objects:
                yield objects
                start = objects[-1].key
            if not page.get("IsTruncated") or not objects:
                return

    async def open(self, obj: SourceObject) -> Opened:
        got = await self._call(self._s3.get_object, Bucket=self.bucket, Key=obj.key)
        body = got["Body"]
        http = {
            "content_type": got.get("ContentType"),
            "content_language": got.get("ContentLanguage"),
            "content_disposition": got.get("ContentDisposition"),
            "content_encoding": got.get("ContentEncoding"),
            "cache_control": got.get("CacheControl"),
        }

        async def chunks(n: int) -> bytes:
            return await asyncio.to_thread(_read_exactly, body, n)

        async def close() -> None:
            await asyncio.to_thread(body.close)

        return Opened(
            {k: v for k, v in http.items() if v}, dict(got.get("Metadata") or {}), chunks, close
        )

    async def part_size(self, obj: SourceObject) -> int | None:
        if not obj.etag or "-" not in obj.etag:
            return None
        try:
            head = await self._call(
                self._s3.head_object, Bucket=self.bucket, Key=obj.key, PartNumber=1
            )
        except BlobSourceError:
            return None
        return int(head["ContentLength"]) if head.get("PartsCount", 0) > 1 else None

    async def _call(self, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, **kwargs)
        except (BotoCoreError, ClientError) as e:
            raise BlobSourceError(f"{self.description}: {e}") from None

    async def aclose(self) -> None:
        self._s3.close()


def _read_exactly(body: Any, n: int) -> bytes:
    parts, size = [], 0
    while size < n:
        chunk = body.read(n - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _etag(raw: str | None) -> str | None:
    if not raw:
        return None
    etag = raw.strip().strip('"').lower()
    return etag or None


# -- Vercel Blob -----------------------------------------------------------------------------


class VercelBlobs:
    def __init__(
        self, token: str, *, api_url: str = VERCEL_API, prefix: str = "", timeout: float = 120.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.prefix = prefix
        self.description = f"vercel-blob:{self.api_url}" + (f"/{prefix}" if prefix else "")
        self._token = token
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self._api_host = urlsplit(self.api_url).hostname or ""

    def _auth(self, url: str) -> dict[str, str]:
        host = urlsplit(url).hostname or ""
        trusted = host == self._api_host or host.endswith(".vercel-storage.com")
        return {"Authorization": f"Bearer {self._token}"} if trusted else {}

    async def pages(self, after: list[Any] | None, size: int) -> AsyncIterator[list[SourceObject]]:
        cursor = after[0] if after else None
        skip = int(after[1]) if after else 0
        while True:
            params: dict[str, Any] = {"limit": size}
            if cursor:
                params["cursor"] = cursor
            if self.prefix:
                params["prefix"] = self.prefix
            response = await self._get(self.api_url, params)
            page = response.json()
            blobs = page.get("blobs", [])
            objects = [
                SourceObject(b["pathname"], int(b["size"]), None, [cursor, i + 1], b["url"])
                for i, b in enumerate(blobs)
            ][skip:]
            skip = 0
            if page.get("hasMore") and page.get("cursor"):
                if objects:
                    objects[-1].position = [page["cursor"], 0]  # the page is done
                if objects:
                    yield objects
                cursor = page["cursor"]
                continue
            if objects:
                yield objects
            return

    async def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        for attempt in range(5):
            try:
                response = await self._http.get(url, params=params, headers=self._auth(url))
            except httpx.HTTPError as e:
                if attempt == 4:
                    raise BlobSourceError(f"{self.description}: {e}") from None
                continue
            if response.status_code in (429, 500, 502, 503, 504) and attempt < 4:
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if response.status_code != 200:
                raise BlobSourceError(f"{self.description}: GET {url}: HTTP {response.status_code}")
            return response
        raise BlobSourceError(f"{self.description}: GET {url}: no answer")

    async def open(self, obj: SourceObject) -> Opened:
        request = self._http.build_request("GET", obj.handle, headers=self._auth(obj.handle))
        response = await self._http.send(request, stream=True)
        if response.status_code != 200:
            await response.aclose()
            raise BlobSourceError(f"{self.description}: {obj.key}: HTTP {response.status_code}")
        headers = response.headers
        http = {
            "content_type": headers.get("content-type"),
            "content_disposition": headers.get("content-disposition"),
            "cache_control": headers.get("cache-control"),
        }
        stream = response.aiter_raw()
        buffer = bytearray()

        async def chunks(n: int) -> bytes:
            while len(buffer) < n:
                try:
                    buffer.extend(await anext(stream))
                except StopAsyncIteration:
                    break
            out = bytes(buffer[:n])
            del buffer[:n]
            return out

        return Opened({k: v for k, v in http.items() if v}, {}, chunks, response.aclose)

    async def part_size(self, obj: SourceObject) -> int | None:
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


# -- a folder --------------------------------------------------------------------------------


class FolderBlobs:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BlobSourceError(f"no such folder: {self.folder}")
        self.description = f"folder:{self.folder.resolve()}"

    def _all(self) -> list[str]:
        names = []
        for root, _, files in os.walk(self.folder):
            for name in files:
                path = Path(root, name)
                if path.is_file() and not path.is_symlink():
                    names.append(path.relative_to(self.folder).as_posix())
        return sorted(names)

    async def pages(self, after: list[Any] | None, size: int) -> AsyncIterator[list[SourceObject]]:
        start = str(after[0]) if after else None
        names = [n for n in await asyncio.to_thread(self._all) if start is None or n > start]
        for i in range(0, len(names), size):
            page = []
            for name in names[i : i + size]:
                path = self.folder / name
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed meanwhile
                page.append(SourceObject(name, stat.st_size, None, [name], path))
            if page:
                yield page

    async def open(self, obj: SourceObject) -> Opened:
        f = open(obj.handle, "rb")  # noqa: SIM115 - closed by `close`
        content_type = mimetypes.guess_type(obj.key)[0] or "application/octet-stream"

        async def chunks(n: int) -> bytes:
            return await asyncio.to_thread(f.read, n)

        async def close() -> None:
            f.close()

        return Opened({"content_type": content_type}, {}, chunks, close)

    async def part_size(self, obj: SourceObject) -> int | None:
        return None

    async def aclose(self) -> None:
        pass


def file_md5(path: Path, part_size: int | None = None) -> str:
    """MD5 of a file, or the multipart ETag (`md5(part md5s)-N`) with `part_size` parts."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    with open(path, "rb") as f:
        while True:
            chunk = f.read(part_size or 1 << 20)
            if not chunk:
                break
            whole.update(chunk)
            if part_size:
                parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if part_size:
        return composite_etag(parts)
    return whole.hexdigest()


def composite_etag(part_md5s: list[bytes]) -> str:
    return f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
