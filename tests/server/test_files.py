"""Uploads to R2: limits and types checked on content, streaming reads with ranges and
etags, signed links, delete, and no access to another user's files."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from flarebase.platform import ConfigError
from flarebase.server.files import links, store
from flarebase.server.files.upload import read_upload, safe_name

from .conftest import SECRET, Server

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # 2,056 bytes
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"j" * 500
GIF = b"GIF89a" + b"g" * 100
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"w" * 100
PDF = b"%PDF-1.7\n" + b"p" * 100
HTML = b"<html><script>alert(1)</script></html>"


def upload(
    client: TestClient, data: bytes, name: str = "picture.png", ctype: str = "image/png"
) -> Any:
    return client.post("/api/files/upload", files={"file": (name, data, ctype)})


def uploaded(client: TestClient, data: bytes = PNG, **kwargs: Any) -> dict[str, Any]:
    r = upload(client, data, **kwargs)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def objects(server: Server, prefix: str = "users/") -> list[str]:
    return [o.key for o in server.run(server.env.BUCKET.list, None, prefix).objects]


@pytest.fixture
def alice(server: Server) -> tuple[TestClient, dict[str, Any]]:
    client = server.client()
    return client, server.sign_up(client, "alice@example.com")


@pytest.fixture
def bob(server: Server) -> tuple[TestClient, dict[str, Any]]:
    client = server.client()
    return client, server.sign_up(client, "bob@example.com")


# -- upload -----------------------------------------------------------------------------


def test_upload_stores_the_file_under_the_users_key_with_a_row(server: Server, alice: Any) -> None:
    client, me = alice
    body = uploaded(client, PNG, name="holiday.png")
    user_id = me["user"]["id"]
    assert body["pathname"] == f"users/{user_id}/uploads/{body['id']}.png"
    assert body["contentType"] == "image/png"
    assert body["size"] == len(PNG) and body["name"] == "holiday.png"
    assert body["url"] == f"http://testserver/api/files/{body['id']}"
    assert body["downloadUrl"] == body["url"] + "?download=1"
    assert "holiday.png" in body["contentDisposition"]
    obj = server.run(server.env.BUCKET.get, body["pathname"])
    assert server.run(obj.bytes) == PNG
    assert obj.http_metadata.content_type == "image/png"
    rows = server.sql("SELECT * FROM files")
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["user_id"], row["key"]) == (body["id"], user_id, body["pathname"])
    assert (row["content_type"], row["size"], row["name"]) == ("image/png", len(PNG), "holiday.png")
    assert row["etag"] == obj.etag


@pytest.mark.parametrize(
    ("data", "ctype", "ext"),
    [(JPEG, "image/jpeg", "jpg"), (GIF, "image/gif", "gif"), (WEBP, "image/webp", "webp")],
)
def test_default_types_are_accepted(alice: Any, data: bytes, ctype: str, ext: str) -> None:
    body = uploaded(alice[0], data, name="x.bin", ctype="application/octet-stream")
    assert body["contentType"] == ctype and body["pathname"].endswith(f".{ext}")


def test_type_comes_from_the_content_not_the_claim(server: Server, alice: Any) -> None:
    client, _ = alice
    # A PNG that claims to be a Windows program is stored as the PNG it is.
    body = uploaded(client, PNG, name="setup.exe", ctype="application/x-msdownload")
    assert body["contentType"] == "image/png" and body["pathname"].endswith(".png")
    # HTML that claims to be a PNG is refused, and nothing is stored.
    r = upload(client, HTML, name="cat.png", ctype="image/png")
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_file_type"
    assert r.json()["allowed"] == ["image/jpeg", "image/png", "image/gif", "image/webp"]
    assert len(objects(server)) == 1 and len(server.sql("SELECT id FROM files")) == 1


def test_allowed_types_are_configurable(server: Server) -> None:
    client = server.client(UPLOAD_ALLOWED_TYPES="application/pdf")
    server.sign_up(client, "pdf@example.com")
    assert upload(client, PNG).status_code == 415
    body = uploaded(client, PDF, name="report.pdf", ctype="application/pdf")
    assert body["contentType"] == "application/pdf" and body["pathname"].endswith(".pdf")


def test_size_limit_is_checked_on_the_content(server: Server) -> None:
    client = server.client(UPLOAD_MAX_BYTES=1000)
    server.sign_up(client, "small@example.com")
    exact = PNG[:1000]
    assert upload(client, exact).status_code == 201
    r = upload(client, PNG[:1001])
    assert r.status_code == 413
    assert r.json()["code"] == "file_too_large" and r.json()["limit"] == 1000
    assert len(objects(server)) == 1


def test_default_size_limit_is_5_mb(alice: Any) -> None:
    client, _ = alice
    big = PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG))
    body = uploaded(client, big)  # exactly 5 MB: spooled to disk, streamed to R2
    assert body["size"] == 5 * 1024 * 1024
    assert client.get(f"/api/files/{body['id']}").content == big
    r = upload(client, big + b"\x00")
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"


async def test_an_oversized_upload_is_refused_before_the_rest_is_read() -> None:
    chunk = b"\x00" * 1024
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + PNG
    )
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        if sent == 1:
            return {"type": "http.request", "body": head, "more_body": True}
        return {"type": "http.request", "body": chunk, "more_body": True}  # endless

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"multipart/form-data; boundary=B")],
    }
    with pytest.raises(Exception) as raised:
        await read_upload(Request(scope, receive), max_bytes=10 * 1024)
    assert getattr(raised.value, "status", None) == 413
    assert sent <= 12  # stopped right after passing 10 KiB, not at the end of the body


def test_guests_and_signed_out_users_cannot_upload(server: Server) -> None:
    guest = server.client()
    assert guest.post("/api/auth/guest").status_code == 201
    r = upload(guest, PNG)
    assert r.status_code == 403 and r.json()["code"] == "guest_not_allowed"
    r = upload(server.client(), PNG)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert objects(server) == []


def test_malformed_uploads_are_422_listing_the_field(alice: Any) -> None:
    client, _ = alice
    r = client.post("/api/files/upload", files={"other": ("a.png", PNG, "image/png")})
    assert r.status_code == 422
    assert [f["field"] for f in r.json()["fields"]] == ["body.file"]
    r = client.post(
        "/api/files/upload",
        files=[("file", ("a.png", PNG, "image/png")), ("file", ("b.png", PNG, "image/png"))],
    )
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.file"
    r = upload(client, b"", name="empty.png")
    assert r.status_code == 422 and "empty" in r.json()["message"]
    r = client.post(
        "/api/files/upload",
        content=b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + PNG,
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 422 and "incomplete" in r.json()["message"]
    r = client.post("/api/files/upload", content=PNG, headers={"content-type": "image/png"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"


def test_client_file_names_are_sanitized_and_never_the_key(alice: Any) -> None:
    client, _ = alice
    name = "../../etc/pass\x07wd\u202e.png".encode()  # raw: httpx would escape the bell
    r = client.post(
        "/api/files/upload",
        content=b'--B\r\nContent-Disposition: form-data; name="file"; filename="'
        + name
        + b'"\r\n\r\n'
        + PNG
        + b"\r\n--B--\r\n",
        headers={"content-type": "multipart/form-data; boundary=B"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "passwd.png"
    assert "passwd" not in body["pathname"] and ".." not in body["pathname"]
    assert safe_name("C:\\Users\\me\\photo.png") == "photo.png"
    assert safe_name("  ..  ") == "upload" and safe_name(None) == "upload"
    assert safe_name("a" * 300 + ".jpeg") == "a" * 250 + ".jpeg"


def test_row_failure_removes_the_stored_object(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = server.client(raise_server_exceptions=False)
    server.sign_up(client, "carol@example.com")

    async def broken(db: Any, row: Any) -> None:
        raise RuntimeError("D1 is down")

    monkeypatch.setattr(store, "insert", broken)
    assert upload(client, PNG).status_code == 500
    assert objects(server) == []


# -- read ---------------------------------------------------------------------------------


def test_owner_reads_the_file_with_its_headers(alice: Any) -> None:
    client, _ = alice
    body = uploaded(client, PNG, name="photo.png")
    r = client.get(f"/api/files/{body['id']}")
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-length"] == str(len(PNG))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"].startswith('"') and len(r.headers["etag"]) == 34
    assert r.headers["content-disposition"].startswith("inline;")
    r = client.get(f"/api/files/{body['id']}", params={"download": 1})
    assert r.headers["content-disposition"].startswith('attachment; filename="photo.png"')


def test_ranges(alice: Any) -> None:
    client, _ = alice
    url = f"/api/files/{uploaded(client)['id']}"
    size = len(PNG)
    r = client.get(url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == PNG[:10]
    assert r.headers["content-range"] == f"bytes 0-9/{size}"
    assert r.headers["content-length"] == "10"
    r = client.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == PNG[-5:]
    assert r.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    r = client.get(url, headers={"Range": "bytes=2000-"})
    assert r.status_code == 206 and r.content == PNG[2000:]
    r = client.get(url, headers={"Range": f"bytes=100-{size + 500}"})  # clamped to the end
    assert r.status_code == 206 and r.content == PNG[100:]
    r = client.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["code"] == "range_not_satisfiable"
    for ignored in ("bytes=9-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-"):
        r = client.get(url, headers={"Range": ignored})
        assert r.status_code == 200 and r.content == PNG, ignored


def test_if_none_match_and_if_range(alice: Any) -> None:
    client, _ = alice
    url = f"/api/files/{uploaded(client)['id']}"
    etag = client.get(url).headers["etag"]
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    r = client.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert r.status_code == 206 and r.content == PNG[:4]
    r = client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == PNG


def test_reading_needs_a_session(alice: Any, server: Server) -> None:
    file_id = uploaded(alice[0])["id"]
    r = server.client().get(f"/api/files/{file_id}")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


# -- signed links -------------------------------------------------------------------------


def test_shared_link_works_without_a_session_until_it_expires(server: Server, alice: Any) -> None:
    client, _ = alice
    file_id = uploaded(client)["id"]
    r = client.post(f"/api/files/{file_id}/share", json={"expiresIn": 60})
    assert r.status_code == 200
    shared = r.json()
    assert shared["expiresIn"] == 60
    query = parse_qs(urlsplit(shared["url"]).query)
    exp = int(query["exp"][0])
    assert abs(exp - (time.time() + 60)) < 5
    assert shared["expiresAt"].endswith("Z")
    stranger = server.client()
    r = stranger.get(shared["url"])
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["cache-control"].startswith("private, max-age=")
    r = stranger.get(shared["url"], headers={"Range": "bytes=0-7"})
    assert r.status_code == 206 and r.content == PNG[:8]
    # Tampering with the expiry or the signature, or moving it to another file, fails.
    path = f"/api/files/{file_id}"
    sig = query["sig"][0]
    later = stranger.get(path, params={"exp": exp + 3600, "sig": sig})
    assert later.status_code == 403 and later.json()["code"] == "invalid_link"
    bad = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert stranger.get(path, params={"exp": exp, "sig": bad}).status_code == 403
    other_id = uploaded(client)["id"]
    moved = stranger.get(f"/api/files/{other_id}", params={"exp": exp, "sig": sig})
    assert moved.status_code == 403
    assert stranger.get(path, params={"sig": sig}).status_code == 403
    # Past its expiry, a genuine signature no longer opens the file.
    past = int(time.time()) - 1
    r = stranger.get(path, params={"exp": past, "sig": links.sign(SECRET, file_id, past)})
    assert r.status_code == 403 and r.json()["code"] == "link_expired"


def test_share_default_and_maximum_lifetime(server: Server) -> None:
    client = server.client(FILE_URL_TTL=120, FILE_URL_MAX_TTL=600)
    server.sign_up(client, "dave@example.com")
    file_id = uploaded(client)["id"]
    assert client.post(f"/api/files/{file_id}/share").json()["expiresIn"] == 120
    assert client.post(f"/api/files/{file_id}/share", json={}).json()["expiresIn"] == 120
    r = client.post(f"/api/files/{file_id}/share", json={"expiresIn": 601})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.expiresIn"
    r = client.post(f"/api/files/{file_id}/share", json={"expiresIn": 0})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.expiresIn"


def test_links_survive_secret_rotation(server: Server) -> None:
    client = server.client()
    server.sign_up(client, "erin@example.com")
    file_id = uploaded(client)["id"]
    url = client.post(f"/api/files/{file_id}/share").json()["url"]
    rotated = server.client(AUTH_SECRET="new-secret-0123456789abcdef," + SECRET)
    assert rotated.get(url).status_code == 200
    dropped = server.client(AUTH_SECRET="new-secret-0123456789abcdef")
    assert dropped.get(url).status_code == 403
    assert links.sign("a" * 16, "id", 1) != links.sign("b" * 16, "id", 1)
    assert links.verify(["a" * 16], "id", 1, links.sign("a" * 16, "id", 1))


# -- delete -------------------------------------------------------------------------------


def test_delete_removes_object_row_and_links(server: Server, alice: Any) -> None:
    client, _ = alice
    body = uploaded(client)
    url = client.post(f"/api/files/{body['id']}/share").json()["url"]
    r = client.delete(f"/api/files/{body['id']}")
    assert r.status_code == 204 and r.content == b""
    assert objects(server) == [] and server.sql("SELECT id FROM files") == []
    assert client.get(f"/api/files/{body['id']}").status_code == 404
    assert server.client().get(url).status_code == 404
    assert client.delete(f"/api/files/{body['id']}").status_code == 404


# -- another user's files -----------------------------------------------------------------


def test_another_user_can_never_read_share_or_delete_your_files(
    server: Server, alice: Any, bob: Any
) -> None:
    mine = uploaded(alice[0])
    other, _ = bob
    missing = other.get("/api/files/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    path = f"/api/files/{mine['id']}"
    for r in (
        other.get(path),
        other.get(path, headers={"Range": "bytes=0-1"}),
        other.post(f"{path}/share"),
        other.delete(path),
    ):
        assert r.status_code == 404, r.text
        assert r.json() == missing.json()  # exactly as a file that does not exist
    # Still there, untouched, for its owner.
    assert alice[0].get(path).content == PNG
    assert len(objects(server)) == 1
    # And bob's own uploads land under his own prefix.
    assert uploaded(other)["pathname"].startswith(f"users/{bob[1]['user']['id']}/")


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"UPLOAD_MAX_BYTES": "big"}, ["UPLOAD_MAX_BYTES"]),
        ({"UPLOAD_MAX_BYTES": 0}, ["UPLOAD_MAX_BYTES"]),
        ({"UPLOAD_MAX_BYTES": 20_000_000}, ["UPLOAD_MAX_BYTES", "MAX_BODY_BYTES"]),
        ({"UPLOAD_ALLOWED_TYPES": "image/png,text/html"}, ["UPLOAD_ALLOWED_TYPES", "text/html"]),
        ({"UPLOAD_ALLOWED_TYPES": " , "}, ["UPLOAD_ALLOWED_TYPES"]),
        ({"FILE_URL_TTL": 700_000}, ["FILE_URL_TTL", "FILE_URL_MAX_TTL"]),
        ({"FILE_URL_MAX_TTL": -1}, ["FILE_URL_MAX_TTL"]),
    ],
)
def test_invalid_upload_settings_refuse_to_start_naming_the_setting(
    server: Server, bad: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        server.client(**bad)
    assert all(name in str(raised.value) for name in named), raised.value


def test_upload_settings_are_normalized(server: Server) -> None:
    settings = server.settings(UPLOAD_ALLOWED_TYPES=" Image/PNG , image/png,application/pdf")
    assert settings.upload_types == ("image/png", "application/pdf")
    # Lowering MAX_BODY_BYTES alone is allowed: it bounds what uploads can reach.
    assert server.settings(MAX_BODY_BYTES=4096).upload_max_bytes == 5 * 1024 * 1024
