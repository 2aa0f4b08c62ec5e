"""Blobs (S3, Vercel Blob, a folder) into an R2 bucket; verified by listing both sides.

Each listed page is copied with at most `concurrency` transfers at a time; the
checkpoint records the position after a page once all of it is in R2.

An object is skipped when R2 already holds it with the same size and ETag (a re-run
of a finished copy, or the objects of a page that were done before a crash). Else:
- up to `multipart_threshold` bytes: one `put`, with the MD5 of the bytes read, which
  R2 checks; when the source's ETag is an MD5 too, the bytes read must match it;
- larger: a multipart upload in parts of `part_size` (at least 5 MiB), or of the
  source's own part size for an S3 multipart object, so that R2's ETag
  (`md5(part md5s)-N`) equals the source's; after `complete`, R2's ETag must equal
  the one computed from the parts sent. A failed upload is aborted.
Content type (and language, disposition, encoding, cache control) and custom
metadata are kept. R2 takes one write per key per second: a write refused with
429 is retried after that second.

Verification lists the source and R2 (under the target prefix) and compares, per
key, size and checksum: the source's ETag where it has one in R2's layout, else one
computed by reading the source (folders; Vercel Blob, whose listing has none). A
sample of objects is also compared by metadata (content type, custom metadata).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import AsyncIterator
from typing import Any

from ..platform.errors import FlarebaseError, R2Error
from ..platform.r2 import MAX_PART_NUMBER, MIN_PART_BYTES
from .model import Plan, TablePlan
from .objects import Batch, Tally, Written
from .sources.blobs import BlobSource, FolderBlobs, SourceObject, composite_etag, file_md5
from .verify import MOD, SHOW, Difference, Summary, TableCheck, Verification

DEFAULT_PART = 8 * 1024 * 1024
DEFAULT_THRESHOLD = 64 * 1024 * 1024


class BlobTargetError(FlarebaseError):
    code = "MIGRATE_TARGET"


class BlobMigration:
    kind = "blobs"
    unit = "bytes"

    def __init__(
        self,
        source: BlobSource,
        bucket: Any,
        bucket_name: str,
        *,
        target_prefix: str = "",
        concurrency: int = 8,
        page_size: int = 100,
        part_size: int = DEFAULT_PART,
        multipart_threshold: int = DEFAULT_THRESHOLD,
        where: str = "local",
    ) -> None:
        if part_size < MIN_PART_BYTES:
            raise BlobTargetError(f"--part-size must be at least {MIN_PART_BYTES:,} bytes (5 MiB)")
        self.source = source
        self.bucket = bucket
        self.description = source.description
        self.target = f"R2 {bucket_name} ({where})"
        self.target_prefix = target_prefix
        self.concurrency = max(1, concurrency)
        self.page_size = page_size
        self.part_size = part_size
        self.threshold = max(multipart_threshold, MIN_PART_BYTES)
        self.options = {
            "target_prefix": target_prefix,
            "part_size": part_size,
            "multipart_threshold": self.threshold,
        }
        self.tally = Tally()
        self.total: int | None = None

    def target_key(self, obj: SourceObject) -> str:
        return self.target_prefix + obj.key

    async def plan(self) -> Plan:
        count = size = 0
        async for page in self.source.pages(None, 1000):
            count += len(page)
            size += sum(o.size for o in page)
        self.total = size
        plan = Plan(self.description, options=dict(self.options))
        plan.tables.append(TablePlan(self.target, self.description, ["key"], ["key"], "", count))
        return plan

    async def prepare(self, saved: dict[str, Any], fresh: bool, replace: bool) -> None:
        pass

    async def batches(self, after: list[Any] | None) -> AsyncIterator[Batch]:
        async for page in self.source.pages(after, self.page_size):
            yield Batch(page, page[-1].position, units=sum(o.size for o in page))

    async def write(self, items: list[SourceObject]) -> Written:
        written = Written()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(obj: SourceObject) -> None:
            async with semaphore:
                try:
                    copied = await self._transfer(obj)
                except (R2Error, BlobTargetError, FlarebaseError) as e:
                    self.tally.add("objects", f"not copied: {e}", obj.key, "error")
                    return
                if copied:
                    written.counts["copied"] = written.counts.get("copied", 0) + 1
                else:
                    written.counts["unchanged"] = written.counts.get("unchanged", 0) + 1

        await asyncio.gather(*(one(o) for o in items))
        written.units = sum(o.size for o in items)
        return written

    async def _expected_etag(self, obj: SourceObject, part_size: int | None) -> str | None:
        """The ETag R2 should have for this object (None: unknown without reading it)."""
        if obj.etag is not None:
            return obj.etag
        if isinstance(self.source, FolderBlobs) and obj.handle is not None:
            multipart = obj.size > self.threshold
            return await asyncio.to_thread(
                file_md5, obj.handle, (part_size or self.part_size) if multipart else None
            )
        return None

    async def _transfer(self, obj: SourceObject) -> bool:
        key = self.target_key(obj)
        part_size = await self.source.part_size(obj) if obj.size > self.threshold else None
        existing = await self.bucket.head(key)
        if existing is not None and existing.size == obj.size:
            expected = await self._expected_etag(obj, part_size)
            if expected is not None and existing.etag == expected:
                return False
        opened = await self.source.open(obj)
        try:
            http = opened.http or None
            custom = opened.custom or None
            if obj.size <= self.threshold:
                data = await opened.chunks(obj.size + 1)
                if len(data) != obj.size:
                    raise BlobTargetError(
                        f"read {len(data):,} bytes, the listing said {obj.size:,}"
                    )
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                if obj.etag and "-" not in obj.etag and obj.etag != md5:
                    raise BlobTargetError(
                        f"the bytes read have MD5 {md5}, the source's ETag is {obj.etag}"
                    )
                await self._retry(
                    lambda: self.bucket.put(
                        key, data, http_metadata=http, custom_metadata=custom, md5=md5
                    )
                )
                return True
            await self._multipart(obj, key, opened, http, custom, part_size or self.part_size)
            return True
        finally:
            if opened.close is not None:
                await opened.close()

    async def _multipart(
        self, obj: SourceObject, key: str, opened: Any, http: Any, custom: Any, part_size: int
    ) -> None:
        if part_size < MIN_PART_BYTES or math.ceil(obj.size / part_size) > MAX_PART_NUMBER:
            part_size = max(MIN_PART_BYTES, math.ceil(obj.size / MAX_PART_NUMBER))
        upload = await self._retry(
            lambda: self.bucket.create_multipart_upload(
                key, http_metadata=http, custom_metadata=custom
            )
        )
        try:
            parts, md5s, size = [], [], 0
            number = 1
            while size < obj.size:
                chunk = await opened.chunks(part_size)
                if not chunk:
                    break
                size += len(chunk)
                md5s.append(hashlib.md5(chunk, usedforsecurity=False).digest())
                parts.append(await upload.upload_part(number, chunk))
                number += 1
            if size != obj.size:
                raise BlobTargetError(f"read {size:,} bytes, the listing said {obj.size:,}")
            done = await self._retry(lambda: upload.complete(parts))
        except BaseException:
            # The upload may be gone already; R2 aborts unfinished ones after 7 days.
            with contextlib.suppress(Exception):
                await upload.abort()
            raise
        expected = composite_etag(md5s)
        if done.etag != expected:
            raise BlobTargetError(f"R2's ETag {done.etag} is not the parts' {expected}")
        if obj.etag and "-" in obj.etag and obj.etag != expected:
            self.tally.add(
                "objects",
                "multipart with other part sizes than the source: ETags differ (sizes and "
                "content checked while copying)",
                obj.key,
            )

    async def _retry(self, call: Any) -> Any:
        for attempt in range(5):
            try:
                return await call()
            except R2Error as e:
                if getattr(e, "code", "") != "TooManyRequests" and "429" not in str(e):
                    raise
                if attempt == 4:
                    raise
                await asyncio.sleep(1.05)  # R2: one write per key per second
        raise BlobTargetError("unreachable")

    # -- verification ----------------------------------------------------------------------
    async def verify(self, sample: int = 100) -> Verification:
        check = TableCheck(self.target)
        target: dict[str, tuple[int, str]] = {}
        cursor = None
        while True:
            listed = await self.bucket.list(prefix=self.target_prefix or None, cursor=cursor)
            for o in listed.objects:
                target[o.key] = (o.size, o.etag)
            if not listed.truncated:
                break
            cursor = listed.cursor
        src, dst = Summary(), Summary()
        seen: set[str] = set()
        count = 0
        sampled: list[SourceObject] = []
        async for page in self.source.pages(None, 1000):
            for obj in page:
                count += 1
                key = self.target_key(obj)
                seen.add(key)
                got = target.get(key)
                layout = got[1] if got else None
                checksum = await self._source_checksum(obj, layout)
                src.add([(key, obj.size, checksum)])
                if got is None:
                    _add(check, Difference("missing", key))
                    continue
                dst.add([(key, got[0], got[1])])
                cols: dict[str, dict[str, Any]] = {}
                if got[0] != obj.size:
                    cols["size"] = {"source": obj.size, "target": got[0]}
                if checksum != got[1]:
                    cols["checksum"] = {"source": checksum, "target": got[1]}
                if cols:
                    _add(check, Difference("changed", key, cols))
                elif len(sampled) < sample:
                    sampled.append(obj)
        extra = [k for k in target if k not in seen]
        for key in extra:
            _add(check, Difference("extra", key))
        for obj in sampled:
            await self._compare_metadata(obj, check)
        check.source_rows, check.target_rows = count, len(target)
        check.source_checksum, check.target_checksum = src.checksum, dst.checksum
        return Verification([check])

    async def _source_checksum(self, obj: SourceObject, layout: str | None) -> str:
        """The source's checksum in the layout of the target's ETag (MD5 or md5-of-parts-N)."""
        parts = None
        if layout and "-" in layout:
            n = int(layout.rsplit("-", 1)[1])
            parts = max(MIN_PART_BYTES, math.ceil(obj.size / n)) if n > 0 else None
            if obj.etag and obj.etag.endswith(f"-{n}"):
                return obj.etag
            if n > 1 and parts is not None:
                parts = self._layout_part_size(obj.size, n) or parts
        elif obj.etag and "-" not in obj.etag:
            return obj.etag
        # Read it: the listing has no checksum in the target's layout.
        if isinstance(self.source, FolderBlobs):
            return await asyncio.to_thread(file_md5, obj.handle, parts)
        opened = await self.source.open(obj)
        whole = hashlib.md5(usedforsecurity=False)
        md5s: list[bytes] = []
        try:
            while True:
                chunk = await opened.chunks(parts or 1 << 20)
                if not chunk:
                    break
                whole.update(chunk)
                md5s.append(hashlib.md5(chunk, usedforsecurity=False).digest())
        finally:
            if opened.close is not None:
                await opened.close()
        return composite_etag(md5s) if parts else whole.hexdigest()

    def _layout_part_size(self, size: int, n: int) -> int | None:
        """The part size this migration would have used for an object of `size` in n parts."""
        for candidate in (self.part_size, max(MIN_PART_BYTES, math.ceil(size / MAX_PART_NUMBER))):
            if math.ceil(size / candidate) == n:
                return candidate
        return None

    async def _compare_metadata(self, obj: SourceObject, check: TableCheck) -> None:
        check.sampled += 1
        head = await self.bucket.head(self.target_key(obj))
        opened = await self.source.open(obj)
        if opened.close is not None:
            await opened.close()
        if head is None:
            return
        cols = {}
        want_type = opened.http.get("content_type")
        got_type = head.http_metadata.content_type if head.http_metadata else None
        if want_type and want_type != got_type:
            cols["content_type"] = {"source": want_type, "target": got_type}
        if (opened.custom or {}) != (head.custom_metadata or {}):
            cols["custom_metadata"] = {"source": opened.custom, "target": head.custom_metadata}
        if cols:
            check.sample_mismatches += 1
            _add(check, Difference("changed", self.target_key(obj), cols))

    async def aclose(self) -> None:
        await self.source.aclose()


def _add(check: TableCheck, difference: Difference) -> None:
    if len(check.differences) < SHOW:
        check.differences.append(difference)
    else:
        check.note = "more differences than listed"


__all__ = ["MOD", "BlobMigration"]
