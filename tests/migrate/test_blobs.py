"""Blobs -> R2 (local): an S3 endpoint from moto_server (started here) with a multipart
object, a Vercel Blob store (a fake of its list/download API), a folder with kill -9 in
the middle, and verification that catches a changed object."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flarebase.platform import open_env

from .conftest import FLAREBASE, Project

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    binary = shutil.which("moto_server") or str(Path(FLAREBASE).with_name("moto_server"))
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


def make_project(root: Path) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wrangler.toml").write_text(
        """name = "blobs-test"
compatibility_date = "2025-09-29"
[[r2_buckets]]
binding = "FILES"
bucket_name = "files"
""",
        encoding="utf-8",
    )
    return Project(root, root / "migrations")


async def r2_objects(project: Project) -> dict[str, Any]:
    async with open_env(project.config, state_dir=project.state) as env:
        out = {}
        cursor = None
        while True:
            listed = await env.FILES.list(cursor=cursor, include=["httpMetadata", "customMetadata"])
            for o in listed.objects:
                got = await env.FILES.get(o.key)
                out[o.key] = (o, await got.bytes())
            if not listed.truncated:
                return out
            cursor = listed.cursor


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_s3_with_a_multipart_object(s3_endpoint: str, tmp_path: Path) -> None:
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket="src")
    s3.put_object(
        Bucket="src",
        Key="docs/readme.txt",
        Body=b"hello R2",
        ContentType="text/plain; charset=utf-8",
        Metadata={"owner": "ann"},
    )
    s3.put_object(Bucket="src", Key="docs/empty.bin", Body=b"")
    big = os.urandom(6 * MIB + 123)
    upload = s3.create_multipart_upload(
        Bucket="src", Key="media/big.bin", ContentType="video/mp4", Metadata={"kind": "video"}
    )
    parts = []
    for n, start in enumerate(range(0, len(big), 5 * MIB), 1):
        part = s3.upload_part(
            Bucket="src",
            Key="media/big.bin",
            UploadId=upload["UploadId"],
            PartNumber=n,
            Body=big[start : start + 5 * MIB],
        )
        parts.append({"PartNumber": n, "ETag": part["ETag"]})
    s3.complete_multipart_upload(
        Bucket="src",
        Key="media/big.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    source_etag = s3.head_object(Bucket="src", Key="media/big.bin")["ETag"].strip('"')
    assert source_etag.endswith("-2")

    project = make_project(tmp_path / "p")
    project.migrate(
        "blobs",
        "s3://src",
        "--endpoint-url",
        s3_endpoint,
        "--r2",
        "FILES",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
        "--report",
        "r.json",
    )
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "verified", report["verification"]
    check = report["verification"]["tables"][0]
    assert check["source_rows"] == check["target_rows"] == 3

    objects = asyncio.run(r2_objects(project))
    readme, data = objects["docs/readme.txt"]
    assert data == b"hello R2" and readme.etag == hashlib.md5(b"hello R2").hexdigest()
    assert readme.http_metadata.content_type == "text/plain; charset=utf-8"
    assert readme.custom_metadata == {"owner": "ann"}
    video, data = objects["media/big.bin"]
    assert data == big
    assert video.etag == source_etag  # same parts, so the same multipart ETag
    assert video.http_metadata.content_type == "video/mp4"
    assert video.custom_metadata == {"kind": "video"}
    assert objects["docs/empty.bin"][1] == b""

    # Again: nothing to copy; the objects are left as they are (same versions).
    project.migrate(
        "blobs",
        "s3://src",
        "--endpoint-url",
        s3_endpoint,
        "--r2",
        "FILES",
        "--restart",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
        "--report",
        "r2.json",
    )
    again = json.loads((project.root / "r2.json").read_text())
    assert again["copied"] == {"copy:unchanged": 3}
    after = asyncio.run(r2_objects(project))
    assert after["media/big.bin"][0].version == video.version

    # A changed object in R2: verification names it and fails.
    async def tamper() -> None:
        async with open_env(project.config, state_dir=project.state) as env:
            await env.FILES.put("docs/readme.txt", b"hello R3")

    asyncio.run(tamper())
    project.cli(
        "migrate",
        "verify",
        "s3://src",
        "--endpoint-url",
        s3_endpoint,
        "--r2",
        "FILES",
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--report",
        "v.json",
        code=1,
    )
    check = json.loads((project.root / "v.json").read_text())["verification"]["tables"][0]
    assert [d["key"] for d in check["differences"]] == ["docs/readme.txt"]
    assert "checksum" in check["differences"][0]["columns"]


class FakeVercelBlob(BaseHTTPRequestHandler):
    """A *fake* Vercel Blob store: `GET /?limit=&cursor=&prefix=` lists (bearer token),
    `GET /blob/<pathname>` downloads."""

    blobs: dict[str, tuple[bytes, str]]
    token = "vercel_blob_rw_test"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith("/blob/"):
            body, content_type = self.blobs[url.path[len("/blob/") :]]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_error(403)
            return
        query = parse_qs(url.query)
        limit = int(query.get("limit", ["1000"])[0])
        start = int(query.get("cursor", ["0"])[0])
        names = sorted(n for n in self.blobs if n.startswith(query.get("prefix", [""])[0]))
        page = names[start : start + limit]
        host = f"http://{self.headers['Host']}"
        result = {
            "blobs": [
                {
                    "url": f"{host}/blob/{n}",
                    "downloadUrl": f"{host}/blob/{n}?download=1",
                    "pathname": n,
                    "size": len(self.blobs[n][0]),
                    "uploadedAt": "2025-01-01T00:00:00.000Z",
                }
                for n in page
            ],
            "hasMore": start + limit < len(names),
        }
        if result["hasMore"]:
            result["cursor"] = str(start + limit)
        payload = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_vercel_blob_store(tmp_path: Path) -> None:
    blobs = {f"avatars/u{i}.png": (os.urandom(100 + i), "image/png") for i in range(12)}
    blobs["notes/a.md"] = (b"# hi", "text/markdown")
    handler = type("Handler", (FakeVercelBlob,), {"blobs": blobs})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        project = make_project(tmp_path / "p")
        api = f"http://127.0.0.1:{server.server_address[1]}"
        project.migrate(
            "blobs",
            "vercel-blob://",
            "--vercel-api-url",
            api,
            "--vercel-token",
            "vercel_blob_rw_test",
            "--page-size",
            "5",
            "--report",
            "r.json",
        )
        report = json.loads((project.root / "r.json").read_text())
        assert report["status"] == "verified"
        objects = asyncio.run(r2_objects(project))
        assert set(objects) == set(blobs)
        assert objects["notes/a.md"][1] == b"# hi"
        assert objects["notes/a.md"][0].http_metadata.content_type == "text/markdown"
        assert objects["avatars/u3.png"][1] == blobs["avatars/u3.png"][0]
        denied = project.migrate(
            "blobs",
            "vercel-blob://",
            "--vercel-api-url",
            api,
            "--vercel-token",
            "wrong",
            "--restart",
            code=1,
        )
        assert "403" in denied.output
    finally:
        server.shutdown()


def test_folder_kill_then_resume(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    expected = {}
    for i in range(300):
        path = folder / f"d{i % 4}" / f"f{i:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"file {i}\n".encode() * (i % 50 + 1)
        path.write_bytes(data)
        expected[f"d{i % 4}/f{i:03}.txt"] = data
    project = make_project(tmp_path / "p")
    ck = project.root / "ck.json"
    args = [
        "migrate",
        "blobs",
        str(folder),
        "--r2",
        "FILES",
        "--target-prefix",
        "up/",
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--checkpoint",
        str(ck),
        "--page-size",
        "5",
        "--concurrency",
        "2",
    ]
    proc = subprocess.Popen(
        [str(FLAREBASE), *args, "--max-items-per-second", "250"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = json.loads(ck.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("stages", {}).get("copy", {}).get("rows", 0) >= 100:
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        assert proc.poll() is None, "finished before the kill"
        time.sleep(0.01)
    killed = json.loads(ck.read_text())
    assert not killed["finished"] and 0 < killed["stages"]["copy"]["rows"] < 300
    done = subprocess.run(
        [str(FLAREBASE), *args, "--report", "r.json"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "verified" and report["resumed"]
    assert sum(report["copied"].values()) < 300  # continued after the checkpoint
    objects = asyncio.run(r2_objects(project))
    assert set(objects) == {"up/" + k for k in expected}
    assert all(objects["up/" + k][1] == v for k, v in expected.items())
    assert objects["up/d1/f001.txt"][0].http_metadata.content_type == "text/plain"
