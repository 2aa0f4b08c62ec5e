"""R2 through its S3 API, with real boto3 requests against moto's S3 server on
loopback (no Cloudflare account is reachable here). moto implements S3, not R2:
these tests check the provider's S3 requests and its mapping of S3 answers onto the
binding's types, not R2's own behaviour (its error wording, its limits).
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest

from flarebase.platform import Env, R2Error
from flarebase.platform.r2 import (
    R2HTTPMetadata,
    R2Object,
    R2ObjectBody,
    R2OperationError,
    R2Range,
)

from .conftest import BUCKET


async def test_put_then_get_and_head_round_trip(r2_env: Env, s3: Any):
    data = b"hello, r2"
    put = await r2_env.MEDIA.put(
        "docs/a.txt",
        data,
        http_metadata={"contentType": "text/plain", "cacheControl": "max-age=60"},
        custom_metadata={"owner": "ada"},
    )

    md5 = hashlib.md5(data).digest()
    assert put is not None
    assert (put.key, put.size, put.etag, put.http_etag) == (
        "docs/a.txt",
        9,
        md5.hex(),
        f'"{md5.hex()}"',
    )
    assert put.checksums.md5 == md5
    stored = s3.get_object(Bucket=BUCKET, Key="docs/a.txt")
    assert stored["Body"].read() == data
    assert stored["Metadata"] == {"owner": "ada"}
    assert stored["CacheControl"] == "max-age=60"

    got = await r2_env.MEDIA.get("docs/a.txt")
    assert isinstance(got, R2ObjectBody)
    assert await got.text() == "hello, r2"
    assert got.http_metadata == R2HTTPMetadata(
        content_type="text/plain", cache_control="max-age=60"
    )
    assert got.custom_metadata == {"owner": "ada"}
    assert got.uploaded.tzinfo is not None

    head = await r2_env.MEDIA.head("docs/a.txt")
    assert head is not None and head.etag == put.etag and head.size == 9


async def test_missing_objects_are_none(r2_env: Env):
    assert await r2_env.MEDIA.get("nope") is None
    assert await r2_env.MEDIA.head("nope") is None


async def test_ranges(r2_env: Env):
    await r2_env.MEDIA.put("r", b"0123456789")

    part = await r2_env.MEDIA.get("r", range={"offset": 2, "length": 3})
    assert isinstance(part, R2ObjectBody)
    assert await part.bytes() == b"234"
    assert part.range == R2Range(offset=2, length=3)
    assert part.size == 10

    tail = await r2_env.MEDIA.get("r", range=R2Range(suffix=4))
    assert isinstance(tail, R2ObjectBody)
    assert b"".join([c async for c in tail.body]) == b"6789"


async def test_a_failed_condition_gives_the_object_without_its_body(r2_env: Env):
    put = await r2_env.MEDIA.put("c", b"x")
    assert put is not None

    unchanged = await r2_env.MEDIA.get("c", only_if={"etagDoesNotMatch": put.etag})
    assert isinstance(unchanged, R2Object) and not isinstance(unchanged, R2ObjectBody)
    assert unchanged.etag == put.etag

    changed = await r2_env.MEDIA.get("c", only_if={"etagMatches": "0" * 32})
    assert type(changed) is R2Object


async def test_a_conditional_put_that_fails_returns_none(r2_env: Env, s3: Any):
    await r2_env.MEDIA.put("p", b"first")

    assert await r2_env.MEDIA.put("p", b"second", only_if={"etagMatches": "0" * 32}) is None
    assert s3.get_object(Bucket=BUCKET, Key="p")["Body"].read() == b"first"


async def test_put_refuses_date_conditions_s3_cannot_send(r2_env: Env):
    from datetime import UTC, datetime

    with pytest.raises(R2Error, match="etag conditions only"):
        await r2_env.MEDIA.put("p", b"x", only_if={"uploadedBefore": datetime.now(UTC)})


async def test_a_wrong_checksum_stops_the_put(r2_env: Env, s3: Any):
    with pytest.raises(R2OperationError) as caught:
        await r2_env.MEDIA.put("bad", b"data", sha256=hashlib.sha256(b"other").hexdigest())
    assert caught.value.code == "BadDigest"
    assert "sha256 checksum you specified did not match" in str(caught.value)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)

    good = await r2_env.MEDIA.put("good", b"data", sha1=hashlib.sha1(b"data").digest())
    assert good is not None and good.checksums.sha1 == hashlib.sha1(b"data").digest()


async def test_files_and_streams_are_uploaded_whole(r2_env: Env, s3: Any):
    async def chunks():
        yield b"ab"
        yield memoryview(b"cd")

    await r2_env.MEDIA.put("file", io.BytesIO(b"from a file"))
    await r2_env.MEDIA.put("stream", chunks())

    assert s3.get_object(Bucket=BUCKET, Key="file")["Body"].read() == b"from a file"
    assert s3.get_object(Bucket=BUCKET, Key="stream")["Body"].read() == b"abcd"


async def test_list_with_prefix_delimiter_pages_and_metadata(r2_env: Env):
    for key in ("a/1", "a/2", "a/3", "a/sub/4", "b/5"):
        await r2_env.MEDIA.put(key, key.encode(), custom_metadata={"k": key})

    first = await r2_env.MEDIA.list(prefix="a/", delimiter="/", limit=2)
    assert [o.key for o in first.objects] == ["a/1", "a/2"]
    assert first.truncated and first.cursor
    assert first.objects[0].custom_metadata is None  # not asked for

    rest = await r2_env.MEDIA.list(
        prefix="a/", delimiter="/", cursor=first.cursor, include=["customMetadata"]
    )
    assert [o.key for o in rest.objects] == ["a/3"]
    assert rest.delimited_prefixes == ["a/sub/"]
    assert not rest.truncated and rest.cursor is None
    assert rest.objects[0].custom_metadata == {"k": "a/3"}
    assert rest.objects[0].http_metadata is None


async def test_delete_one_and_many(r2_env: Env):
    for key in ("x", "y", "z"):
        await r2_env.MEDIA.put(key, b"1")

    await r2_env.MEDIA.delete("x")
    await r2_env.MEDIA.delete(["y", "z", "never-there"])

    assert (await r2_env.MEDIA.list()).objects == []


async def test_multipart_upload_complete_and_abort(r2_env: Env, s3: Any):
    first, last = b"a" * (5 * 1024 * 1024), b"tail"
    upload = await r2_env.MEDIA.create_multipart_upload(
        "big", http_metadata={"contentType": "application/x-big"}, custom_metadata={"n": "2"}
    )
    parts = [await upload.upload_part(1, first)]
    resumed = r2_env.MEDIA.resume_multipart_upload("big", upload.upload_id)
    parts.append(await resumed.upload_part(2, last))

    done = await resumed.complete(parts)

    assert done.size == len(first) + len(last)
    assert done.custom_metadata == {"n": "2"}
    assert done.etag.endswith("-2") and done.checksums.md5 is None
    assert s3.get_object(Bucket=BUCKET, Key="big")["Body"].read() == first + last

    doomed = await r2_env.MEDIA.create_multipart_upload("never")
    await doomed.abort()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)


async def test_an_unknown_upload_is_no_such_upload(r2_env: Env):
    upload = r2_env.MEDIA.resume_multipart_upload("k", "no-such-upload-id")

    with pytest.raises(R2OperationError) as caught:
        await upload.abort()

    assert caught.value.code == "NoSuchUpload"
    assert caught.value.v4code == 10024  # the binding's v4 code for it
    assert caught.value.action == "abortMultipartUpload"
    assert str(caught.value).startswith("abortMultipartUpload: The specified upload does not")


async def test_s3_errors_keep_r2s_code_and_the_bindings_v4_code(r2_env: Env):
    await r2_env.MEDIA.put("short", b"abc")

    with pytest.raises(R2OperationError) as caught:
        await r2_env.MEDIA.get("short", range={"offset": 10, "length": 2})

    assert caught.value.code == "InvalidRange"
    assert caught.value.status == 416
    assert str(caught.value).startswith("get: ") and str(caught.value).endswith("(10039)")


async def test_argument_types_are_checked_before_any_request(r2_env: Env):
    with pytest.raises(R2Error) as caught:
        await r2_env.MEDIA.put(7, b"x")  # type: ignore[arg-type]
    assert caught.value.code == "TypeError"
    with pytest.raises(R2Error, match="Unsupported include"):
        await r2_env.MEDIA.list(include=["everything"])
