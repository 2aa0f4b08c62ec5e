"""R2 through its S3 API (boto3): the same API and result types as the local R2.

    head / get / put / delete   HeadObject / GetObject / PutObject / DeleteObject(s)
    list                        ListObjectsV2 (+ one HeadObject per object for `include`)
    multipart                   Create / UploadPart / Complete / AbortMultipartUpload

R2's own checks (key and metadata sizes, part sizes, multipart rules) answer with
its S3 errors, kept as `R2OperationError`s with R2's code (`InvalidObjectName`,
...) and message, and the binding's v4 code where flarebase knows it. `onlyIf`
conditions become S3's If-* headers: a failed `get` returns the object without a
body, a failed `put` None, as the binding does.

Differences from the binding, all from S3:
- `version` is R2's version id when it reports one, else the etag;
- `http_metadata.content_type` is whatever R2 answers, a default if none was set;
- `put()` takes etag conditions only (S3's PutObject has no date conditions);
- checksums given to `put()` are verified here, against the bytes sent (md5 also by
  R2, as Content-MD5); `checksums` of an object hold the md5 of single-part objects;
- `put()`'s `uploaded` is the time in R2's answer (to the second), and
  `complete()` reads the new object back with a HeadObject;
- `list(include=...)` costs one HeadObject per object listed.
Boto3 is synchronous: each call runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import R2Error
from ..invocation import count
from ..r2 import (
    MAX_PART_BYTES,
    MAX_PUT_BYTES,
    R2Checksums,
    R2HTTPMetadata,
    R2MultipartUpload,
    R2Object,
    R2ObjectBody,
    R2Objects,
    R2OperationError,
    R2Range,
    R2UploadedPart,
    bad_digest,
    check_custom_metadata,
    check_digest,
    check_list_options,
    check_part_number,
    check_parts,
    delete_keys,
    resumed_upload,
    str_key,
    type_error,
)
from . import s3

_HEADS_AT_ONCE = 8  # HeadObject calls in flight for list(include=...)


def _checksum(name: str, value: Any) -> bytes:
    """The binding takes a digest as bytes or as a hex string."""
    digest = check_digest(name, value)
    if isinstance(digest, bytes):
        return digest
    try:
        return bytes.fromhex(digest)
    except ValueError:
        raise type_error(f"{name} must be a hex string; got {value!r}") from None


def _answer_time(answer: dict[str, Any]) -> datetime:
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


class ApiR2:
    """The `R2Bucket` binding for `bucket`, through an S3 client of R2's endpoint.

    `connect()` gives the client; it is called on each use so that a missing
    credential is reported when R2 is used, not when the env opens."""

    def __init__(self, connect: Callable[[], Any], bucket: str) -> None:
        self._connect = connect  # the provider's S3 client, made on first use
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"ApiR2(bucket={self.bucket!r})"

    async def aclose(self) -> None:
        pass  # the S3 client is the provider's

    async def _run(self, action: str, op: str, **params: Any) -> Any:
        count("r2")
        return await s3.run(action, getattr(self._connect(), op), Bucket=self.bucket, **params)

    # -- reads -------------------------------------------------------------------------------

    async def head(self, key: str) -> R2Object | None:
        str_key("head", key)
        try:
            answer = await self._run("head", "head_object", Key=key)
        except R2OperationError as e:
            if e.status == 404:
                return None
            raise
        return s3.object_of(key, answer)

    async def get(
        self, key: str, only_if: Any = None, range: Any = None
    ) -> R2ObjectBody | R2Object | None:
        str_key("get", key)
        params = s3.condition_params("get", only_if)
        if range is not None:
            params["Range"] = s3.range_header(R2Range.coerce(range))
        try:
            answer = await self._run("get", "get_object", Key=key, **params)
        except R2OperationError as e:
            if e.status == 404:
                return None
            if e.status in (304, 412):  # the condition failed: the object, without its body
                return await self.head(key)
            raise
        span, size = s3.served_range(answer)
        fields = vars(s3.object_of(key, answer, span=span))
        if size is not None:
            fields["size"] = size
        return R2ObjectBody(**fields, source=s3.S3Body(answer["Body"]))

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
        http, custom = check_list_options(
            limit, prefix, cursor, delimiter, start_after, include, in_range=False
        )
        options = {
            "Prefix": prefix,
            "ContinuationToken": cursor,
            "Delimiter": delimiter,
            "StartAfter": start_after,
            "MaxKeys": limit,
        }
        params = {k: v for k, v in options.items() if v is not None}
        answer = await self._run("list", "list_objects_v2", **params)
        entries = answer.get("Contents") or []
        objects = [s3.object_of(e["Key"], e, metadata=False) for e in entries]
        if http or custom:
            await self._fill_metadata(objects, http=http, custom=custom)
        truncated = bool(answer.get("IsTruncated"))
        return R2Objects(
            objects=objects,
            truncated=truncated,
            cursor=answer.get("NextContinuationToken") if truncated else None,
            delimited_prefixes=[p["Prefix"] for p in answer.get("CommonPrefixes") or []],
        )

    async def _fill_metadata(
        self, objects: builtins.list[R2Object], *, http: bool, custom: bool
    ) -> None:
        """S3 listings carry no metadata: read each object's (a few at a time)."""
        gate = asyncio.Semaphore(_HEADS_AT_ONCE)

        async def fill(obj: R2Object) -> None:
            async with gate:
                head = await self.head(obj.key)
            if head is None:  # deleted since the listing
                return
            obj.http_metadata = head.http_metadata if http else None
            obj.custom_metadata = head.custom_metadata if custom else None

        await asyncio.gather(*(fill(obj) for obj in objects))

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
        given = {"md5": md5, "sha1": sha1, "sha256": sha256, "sha384": sha384, "sha512": sha512}
        expected = {n: _checksum(n, v) for n, v in given.items() if v is not None}
        http = R2HTTPMetadata.coerce(http_metadata)
        custom = check_custom_metadata(action, custom_metadata) or {}
        params = {
            **s3.http_params(http),
            **s3.storage_param(action, storage_class),
            **s3.condition_params(action, only_if, dates=False),
            "Metadata": custom,
        }
        body = await s3.spool(action, value, MAX_PUT_BYTES, ("md5", *expected))
        try:
            for name, digest in expected.items():
                if body.digests[name] != digest:
                    raise bad_digest(action, name, digest, body.digests[name])
            answer = await self._put(key, body, params)
        finally:
            body.close()
        if answer is None:
            return None
        etag = s3.etag_of(answer["ETag"])
        return R2Object(
            key=key,
            version=str(answer.get("VersionId") or etag),
            size=body.length,
            etag=etag,
            http_etag=f'"{etag}"',
            uploaded=_answer_time(answer),
            http_metadata=http,
            custom_metadata=custom,
            checksums=R2Checksums(**{**vars(s3.checksums_of(etag)), **expected}),
            storage_class=storage_class or "Standard",
        )

    async def _put(self, key: str, body: s3.Spooled, params: dict[str, Any]) -> Any:
        """PutObject with Content-MD5, so that R2 checks the bytes it received; None when
        an `only_if` condition failed."""
        md5 = base64.b64encode(body.digests["md5"]).decode()
        try:
            return await self._run(
                "put",
                "put_object",
                Key=key,
                Body=body.data,
                ContentLength=body.length,
                ContentMD5=md5,
                **params,
            )
        except R2OperationError as e:
            if e.status == 412:
                return None
            raise

    async def delete(self, keys: str | Sequence[str]) -> None:
        # How many keys one call may delete is R2's to check.
        names = [str_key("delete", k) for k in delete_keys(keys, at_most=None)]
        if isinstance(keys, str):
            await self._run("delete", "delete_object", Key=names[0])
            return
        if not names:
            return
        objects = [{"Key": name} for name in names]
        answer = await self._run(
            "delete", "delete_objects", Delete={"Objects": objects, "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise R2Error(
                f"delete: {first.get('Message') or first.get('Code')} ({first.get('Key')})",
                code=str(first.get("Code") or "R2_ERROR"),
            )

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
        http = R2HTTPMetadata.coerce(http_metadata)
        answer = await self._run(
            action,
            "create_multipart_upload",
            Key=key,
            Metadata=check_custom_metadata(action, custom_metadata) or {},
            **s3.http_params(http),
            **s3.storage_param(action, storage_class),
        )
        return R2MultipartUpload(key, answer["UploadId"], self)

    def resume_multipart_upload(self, key: str, upload_id: str) -> R2MultipartUpload:
        """No lookup, as on Cloudflare: an unknown id fails on first use."""
        return resumed_upload(self, key, upload_id)

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, value: Any
    ) -> R2UploadedPart:
        action = "uploadPart"
        check_part_number(part_number, in_range=False)  # R2 checks the range
        body = await s3.spool(action, value, MAX_PART_BYTES, ())
        try:
            answer = await self._run(
                action,
                "upload_part",
                Key=str_key(action, key),
                UploadId=upload_id,
                PartNumber=part_number,
                Body=body.data,
                ContentLength=body.length,
            )
        finally:
            body.close()
        return R2UploadedPart(part_number=part_number, etag=s3.etag_of(answer["ETag"]))

    async def _complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[R2UploadedPart]
    ) -> R2Object:
        action = "completeMultipartUpload"
        check_parts(action, parts)
        wire = [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in parts]
        await self._run(
            action,
            "complete_multipart_upload",
            Key=str_key(action, key),
            UploadId=upload_id,
            MultipartUpload={"Parts": wire},
        )
        obj = await self.head(key)
        if obj is None:  # deleted in between: nothing better to say than that
            raise R2Error(f"{action}: {key} was deleted right after its upload completed")
        return obj

    async def _abort_multipart(self, key: str, upload_id: str) -> None:
        action = "abortMultipartUpload"
        await self._run(
            action, "abort_multipart_upload", Key=str_key(action, key), UploadId=upload_id
        )
