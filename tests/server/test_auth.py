"""Accounts and sign-in: tokens against the real Auth.js v5 and NextAuth v4 (Node),
the sign-up/sign-in/guest/sign-out/session flows on a real local env, bcrypt hashes
from other systems, throttling, roles, redirects and bad input."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from flarebase.platform import ConfigError
from flarebase.server import create_app
from flarebase.server.auth import (
    CurrentUser,
    OptionalUser,
    RegularUser,
    check_settings,
    require_role,
    tokens,
)
from flarebase.server.auth.sessions import CHUNK_SIZE
from flarebase.server.settings import Settings

from .conftest import PASSWORD, SECRET, Server

JS = Path(__file__).parents[1] / "js"
V5 = "authjs.session-token"
V5_SECURE = "__Secure-authjs.session-token"
V4 = "next-auth.session-token"
OTHER_SECRET = "another-secret-abcdefghijklmnopqrstuv"


# -- helpers ---------------------------------------------------------------------------


def authjs(*ops: dict[str, Any]) -> list[dict[str, Any]]:
    """Run operations through tests/js/authjs.mjs (the real @auth/core, next-auth@4)."""
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@auth" / "core").is_dir():
        message = "needs node and `npm ci` in tests/js (scripts/bootstrap --node)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [node, str(JS / "authjs.mjs")],
        input=json.dumps(list(ops)),
        capture_output=True,
        text=True,
        cwd=JS,
        timeout=60,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def v5_token(
    claims: dict[str, Any], secret: Any = SECRET, salt: str = V5, max_age: int = 3600
) -> str:
    [result] = authjs(
        {
            "op": "encode",
            "lib": "v5",
            "token": claims,
            "secret": secret,
            "salt": salt,
            "maxAge": max_age,
        }
    )
    assert result["ok"], result
    return str(result["token"])


def v4_token(claims: dict[str, Any], secret: str = SECRET, max_age: int = 3600) -> str:
    [result] = authjs(
        {"op": "encode", "lib": "v4", "token": claims, "secret": secret, "maxAge": max_age}
    )
    assert result["ok"], result
    return str(result["token"])


def authjs_decode(token: str, secret: Any = SECRET, salt: str = V5) -> dict[str, Any]:
    [result] = authjs({"op": "decode", "lib": "v5", "token": token, "secret": secret, "salt": salt})
    return result


def probe(server: Server, **overrides: Any) -> TestClient:
    """A client whose app also has routes guarded by each dependency."""
    client = server.client(**overrides)
    app = client.app

    @app.get("/t/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return user.public()

    @app.get("/t/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"user": user.public() if user else None}

    @app.post("/t/regular")
    async def regular(user: RegularUser) -> dict[str, Any]:
        return user.public()

    @app.get("/t/staff", dependencies=[Depends(require_role("admin", "staff"))])
    async def staff() -> dict[str, Any]:
        return {"ok": True}

    return client


def cookie_header(**cookies: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def set_cookies(response: Any) -> dict[str, str]:
    """name -> the whole Set-Cookie line, for each cookie the response sets."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def assert_json_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    if code is not None:
        assert body["code"] == code, body
    return body


# -- tokens: the Python side alone ----------------------------------------------------


def test_token_round_trip_and_claims() -> None:
    token = tokens.encode({"sub": "u1", "role": "x"}, SECRET, V5, max_age=60, now=1_000_000)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {
        "alg": "dir",
        "enc": "A256CBC-HS512",
        "kid": tokens.thumbprint(tokens.derive_key(SECRET, V5)),
    }
    claims = tokens.decode(token, [SECRET], [V5], now=1_000_030)
    assert claims["sub"] == "u1" and claims["iat"] == 1_000_000 and claims["exp"] == 1_000_060
    assert isinstance(claims["jti"], str) and len(claims["jti"]) == 36


def test_token_refused_for_wrong_secret_salt_or_expiry() -> None:
    token = tokens.encode({"sub": "u1"}, SECRET, V5, max_age=60, now=1_000_000)
    with pytest.raises(tokens.TokenError, match="kid"):
        tokens.decode(token, [OTHER_SECRET], [V5], now=1_000_000)
    with pytest.raises(tokens.TokenError):
        tokens.decode(token, [SECRET], [V5_SECURE], now=1_000_000)
    # exp is enforced with 15 s of skew: 14 s late is fine, 15 s is not.
    assert tokens.decode(token, [SECRET], [V5], now=1_000_074)["sub"] == "u1"
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode(token, [SECRET], [V5], now=1_000_075)


def test_a_token_decrypted_before_is_judged_again_by_its_secrets_and_times() -> None:
    # (decrypted tokens are cached: the cache must not widen what is accepted)
    token = tokens.encode({"sub": "u1"}, SECRET, V5, max_age=60, now=1_000_000)
    claims = tokens.decode(token, [SECRET], [V5], now=1_000_000)
    claims["sub"] = "someone else"
    assert tokens.decode(token, [SECRET], [V5], now=1_000_001)["sub"] == "u1"
    with pytest.raises(tokens.TokenError, match="kid"):
        tokens.decode(token, [OTHER_SECRET], [V5], now=1_000_001)
    with pytest.raises(tokens.TokenError):
        tokens.decode(token, [SECRET], [V5_SECURE], now=1_000_001)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.decode(token, [SECRET], [V5], now=1_000_100)


@pytest.mark.parametrize("part", [0, 2, 3, 4])
def test_tampered_token_is_refused(part: int) -> None:
    token = tokens.encode({"sub": "u1"}, SECRET, V5)
    parts = token.split(".")
    piece = parts[part]
    flipped = ("A" if piece[5] != "A" else "B").join([piece[:5], piece[6:]])
    parts[part] = flipped
    with pytest.raises(tokens.TokenError):
        tokens.decode(".".join(parts), [SECRET], [V5])


def _forged(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    from joserfc import jwe
    from joserfc.jwk import OctKey

    algorithms = ["dir", "A256CBC-HS512", "A256GCM"]
    return jwe.encrypt_compact(
        header, json.dumps(claims), OctKey.import_key(key), algorithms=algorithms
    )


def test_tokens_without_exp_or_with_future_nbf_are_refused() -> None:
    key = tokens.derive_key(SECRET, V5)
    header = {"alg": "dir", "enc": "A256CBC-HS512"}
    with pytest.raises(tokens.TokenError, match="exp"):
        tokens.decode(_forged(header, {"sub": "u"}, key), [SECRET], [V5])
    with pytest.raises(tokens.TokenError, match="exp"):
        tokens.decode(_forged(header, {"sub": "u", "exp": "never"}, key), [SECRET], [V5])
    future = {"sub": "u", "exp": time.time() + 600, "nbf": time.time() + 300}
    with pytest.raises(tokens.TokenError, match="not yet valid"):
        tokens.decode(_forged(header, future, key), [SECRET], [V5])
    fine = {"sub": "u", "exp": time.time() + 600}
    assert tokens.decode(_forged(header, fine, key), [SECRET], [V5])["sub"] == "u"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b.c.d.e",
        "not a token",
        "x" * (tokens.MAX_TOKEN_CHARS + 1),
        base64.urlsafe_b64encode(b'{"alg":"none","enc":"A256CBC-HS512"}').decode() + "....",
        base64.urlsafe_b64encode(b'{"alg":"dir","enc":"A128GCM"}').decode() + "....",
        base64.urlsafe_b64encode(b'{"alg":"dir","enc":"A256GCM","zip":"DEF"}').decode() + "....",
        base64.urlsafe_b64encode(b'{"alg":"dir","enc":"A256CBC-HS512","kid":7}').decode() + "....",
        base64.urlsafe_b64encode(b"[1,2]").decode() + "....",
    ],
)
def test_malformed_tokens_raise_token_error(token: str) -> None:
    with pytest.raises(tokens.TokenError):
        tokens.decode(token, [SECRET], [V5])


# -- tokens against the real libraries -------------------------------------------------


def test_authjs_v5_token_is_accepted_and_d1_decides_the_role(server: Server) -> None:
    client = server.client()
    user = server.sign_up(client, "ada@example.com")["user"]
    # The front end's Auth.js made this token; its role claim must not make an admin.
    token = v5_token({"sub": user["id"], "email": "ada@example.com", "role": "admin"})
    fresh = server.client()
    r = fresh.get("/api/auth/session", headers=cookie_header(**{V5: token}))
    assert r.status_code == 200 and r.json()["user"] == user
    assert fresh.get("/api/auth/session", headers=bearer(token)).json()["user"]["id"] == user["id"]
    assert_json_error(fresh.get("/api/admin/users", headers=bearer(token)), 403, "forbidden")


def test_nextauth_v4_token_is_accepted(server: Server) -> None:
    client = server.client()
    user = server.sign_up(client, "v4@example.com")["user"]
    token = v4_token({"sub": user["id"], "email": "v4@example.com"})
    fresh = server.client()
    assert (
        fresh.get("/api/auth/session", headers=cookie_header(**{V4: token})).json()["user"] == user
    )
    assert fresh.get("/api/auth/session", headers=bearer(token)).json()["user"] == user
    # A v4 token made with another secret is not.
    wrong = v4_token({"sub": user["id"]}, secret=OTHER_SECRET)
    assert fresh.get("/api/auth/session", headers=cookie_header(**{V4: wrong})).json() is None


def test_flarebase_tokens_decode_with_authjs(server: Server) -> None:
    client = server.client()
    signed = server.sign_up(client, "grace@example.com", name="Grace")
    cookie = cookie_value(set_cookies(client.get("/api/auth/session"))[V5])
    for token in (signed["token"], cookie):
        decoded = authjs_decode(token)
        assert decoded["ok"], decoded
        payload = decoded["payload"]
        assert payload["sub"] == signed["user"]["id"] and payload["email"] == "grace@example.com"
        assert payload["name"] == "Grace" and payload["type"] == "regular"
        assert payload["exp"] - payload["iat"] == 30 * 24 * 3600
    # The salt is the cookie name: the __Secure- name does not decrypt it.
    assert not authjs_decode(signed["token"], salt=V5_SECURE)["ok"]
    assert not authjs_decode(signed["token"], secret=OTHER_SECRET)["ok"]


def test_https_uses_the_secure_cookie_and_its_salt(server: Server) -> None:
    client = TestClient(server.client().app, base_url="https://testserver")
    client.portal = server.portal
    signed = server.sign_up(client, "secure@example.com")
    r = client.get("/api/auth/session")
    lines = set_cookies(r)
    assert V5_SECURE in lines and "; secure" in lines[V5_SECURE].lower()
    assert V5 not in lines
    assert authjs_decode(cookie_value(lines[V5_SECURE]), salt=V5_SECURE)["ok"]
    assert not authjs_decode(signed["token"], salt=V5)["ok"]
    # A Bearer token works with either salt.
    fresh = server.client()
    assert fresh.get("/api/auth/session", headers=bearer(signed["token"])).json()["user"]


def test_wrong_salt_wrong_secret_expired_and_tampered_are_refused(server: Server) -> None:
    client = probe(server)
    user = server.sign_up(client, "eve@example.com")["user"]
    claims = {"sub": user["id"]}
    secure_salt = v5_token(claims, salt=V5_SECURE)
    wrong_secret = v5_token(claims, secret=OTHER_SECRET)
    expired = v5_token(claims, max_age=-20)  # past the 15 s of allowed skew
    within_skew = v5_token(claims, max_age=-5)
    good = v5_token(claims)
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    fresh = probe(server)
    for token in (wrong_secret, expired, tampered):
        assert fresh.get("/api/auth/session", headers=bearer(token)).json() is None
        r = fresh.get("/t/me", headers=bearer(token))
        body = assert_json_error(r, 401, "unauthorized")
        assert "invalid or has expired" in body["message"]
    # The plain cookie is salted with its own name: a token salted for __Secure- fails.
    assert fresh.get("/api/auth/session", headers=cookie_header(**{V5: secure_salt})).json() is None
    r = fresh.get("/api/auth/session", headers=cookie_header(**{V5_SECURE: secure_salt}))
    assert r.json()["user"]["id"] == user["id"]
    assert fresh.get("/t/me", headers=bearer(within_skew)).json()["id"] == user["id"]
    assert fresh.get("/t/me", headers=bearer(good)).json()["id"] == user["id"]


def test_secret_rotation(server: Server) -> None:
    rotated = probe(server, AUTH_SECRET=f"{OTHER_SECRET},{SECRET}")
    user = server.sign_up(server.client(), "rot@example.com")["user"]
    # Tokens made with the old secret (by Auth.js v5 and by NextAuth v4) still work...
    old_v5 = v5_token({"sub": user["id"]}, secret=SECRET)
    old_v4 = v4_token({"sub": user["id"]}, secret=SECRET)
    new_v5 = v5_token({"sub": user["id"]}, secret=[OTHER_SECRET, SECRET])
    for token in (old_v5, old_v4, new_v5):
        assert rotated.get("/t/me", headers=bearer(token)).json()["id"] == user["id"]
    # ... and new ones are made with the first secret, which Auth.js finds by kid.
    signed = rotated.post(
        "/api/auth/signin", json={"email": "rot@example.com", "password": PASSWORD}
    )
    token = signed.json()["token"]
    assert authjs_decode(token, secret=[SECRET, OTHER_SECRET])["ok"]
    assert authjs_decode(token, secret=OTHER_SECRET)["ok"]
    assert not authjs_decode(token, secret=SECRET)["ok"]
    # Without the old secret, the old token is refused.
    only_new = probe(server, AUTH_SECRET=OTHER_SECRET)
    assert_json_error(only_new.get("/t/me", headers=bearer(old_v5)), 401)


def test_chunked_cookies_are_read_and_written(server: Server) -> None:
    client = server.client()
    user = server.sign_up(client, "chunk@example.com")["user"]
    big = {"sub": user["id"], "picture": "https://example.com/" + "p" * 5000}
    token = v5_token(big)
    count = -(-len(token) // CHUNK_SIZE)
    assert count >= 2
    chunks = {f"{V5}.{i}": token[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] for i in range(count)}
    assert "".join(chunks.values()) == token
    fresh = server.client()
    r = fresh.get("/api/auth/session", headers=cookie_header(**chunks))
    assert r.json()["user"]["id"] == user["id"]
    # Renewed in chunks, as Auth.js writes them; the joined chunks decode with Auth.js.
    lines = set_cookies(r)
    assert set(lines) == set(chunks)
    joined = "".join(cookie_value(lines[name]) for name in chunks)
    decoded = authjs_decode(joined)
    assert decoded["ok"] and decoded["payload"]["picture"] == big["picture"]
    # A chunk missing makes no token.
    broken = {name: value for name, value in chunks.items() if not name.endswith(".0")}
    assert fresh.get("/api/auth/session", headers=cookie_header(**broken)).json() is None
    # A session that no longer needs chunks clears the stale ones.
    small = v5_token({"sub": user["id"]})
    r = fresh.get("/api/auth/session", headers=cookie_header(**{V5: small, f"{V5}.1": "stale"}))
    lines = set_cookies(r)
    assert cookie_value(lines[f"{V5}.1"]) == '""' and "max-age=0" in lines[f"{V5}.1"].lower()
    assert authjs_decode(cookie_value(lines[V5]))["ok"]


def test_session_is_renewed_like_authjs(server: Server) -> None:
    client = server.client()
    user = server.sign_up(client, "renew@example.com")["user"]
    short = v5_token({"sub": user["id"], "custom": "kept"}, max_age=120)
    fresh = server.client()
    r = fresh.get("/api/auth/session", headers=cookie_header(**{V5: short}))
    assert r.headers["cache-control"] == "private, no-cache, no-store"
    renewed = cookie_value(set_cookies(r)[V5])
    payload = authjs_decode(renewed)["payload"]
    assert payload["custom"] == "kept" and payload["sub"] == user["id"]
    assert payload["exp"] > time.time() + 29 * 24 * 3600
    expires = r.json()["expires"]
    assert expires.endswith("Z") and expires.startswith(
        time.strftime("%Y-", time.gmtime(payload["exp"]))
    )


def test_tokens_for_unknown_users(server: Server) -> None:
    client = server.client()
    taken = server.sign_up(client, "taken@example.com")["user"]
    fresh = probe(server)
    # The front end's Auth.js knows a user D1 does not: the row is made, role "user".
    token = v5_token({"sub": "fe-user-1", "email": "New@Example.com", "name": "N", "role": "admin"})
    assert fresh.get("/t/me", headers=bearer(token)).json() == {
        "id": "fe-user-1",
        "name": "N",
        "email": "new@example.com",
        "image": None,
        "role": "user",
        "type": "regular",
    }
    # An email that another user has is not copied.
    clash = v5_token({"sub": "fe-user-2", "email": "TAKEN@example.com"})
    assert fresh.get("/t/me", headers=bearer(clash)).json()["email"] is None
    assert len(server.sql("SELECT id FROM users WHERE email = ?", "taken@example.com")) == 1
    # A token flarebase made for a user who was deleted does not bring them back.
    signed = server.sign_up(server.client(), "gone@example.com")
    server.sql("DELETE FROM users WHERE id = ?", signed["user"]["id"])
    assert_json_error(fresh.get("/t/me", headers=bearer(signed["token"])), 401)
    assert server.sql("SELECT id FROM users WHERE id = ?", signed["user"]["id"]) == []
    assert taken["id"] != "fe-user-2"
    # No subject: refused.
    assert_json_error(fresh.get("/t/me", headers=bearer(v5_token({"email": "x@y.z"}))), 401)


# -- flows -----------------------------------------------------------------------------


def test_sign_up_sign_in_session_sign_out(server: Server) -> None:
    client = probe(server)
    assert client.get("/api/auth/session").json() is None
    r = client.post(
        "/api/auth/signup",
        json={"email": " Alice@Example.COM ", "password": PASSWORD, "name": " Al "},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["user"] == {
        "id": body["user"]["id"],
        "name": "Al",
        "email": "alice@example.com",
        "image": None,
        "role": "user",
        "type": "regular",
    }
    line = set_cookies(r)[V5].lower()
    assert "httponly" in line and "samesite=lax" in line and "path=/" in line
    assert "secure" not in line
    session = client.get("/api/auth/session").json()
    assert session["user"] == body["user"] and set(session) == {"user", "expires"}
    assert client.get("/t/me").json() == body["user"]
    stored = server.sql(
        "SELECT password_hash, type, role FROM users WHERE id = ?", body["user"]["id"]
    )
    assert stored[0]["password_hash"].startswith("$2b$04$") and stored[0]["type"] == "regular"

    r = client.post("/api/auth/signout")
    assert r.status_code == 204 and 'authjs.session-token=""' in r.headers["set-cookie"]
    assert client.get("/api/auth/session").json() is None
    assert_json_error(client.get("/t/me"), 401, "unauthorized")
    # The token is refused even when presented again as Bearer.
    assert_json_error(client.get("/t/me", headers=bearer(body["token"])), 401)

    r = client.post("/api/auth/signin", json={"email": "ALICE@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["id"] == body["user"]["id"]
    assert r.json()["token"] != body["token"]
    assert client.get("/t/me").json()["email"] == "alice@example.com"


def test_bearer_token_from_the_body_works_on_another_client(server: Server) -> None:
    token = server.sign_up(server.client(), "api@example.com")["token"]
    other = probe(server)
    assert other.get("/t/me", headers=bearer(token)).json()["email"] == "api@example.com"
    # Auth.js percent-decodes Bearer tokens; so does flarebase.
    encoded = token.replace(".", "%2E")
    assert other.get("/t/me", headers=bearer(encoded)).json()["email"] == "api@example.com"
    assert other.get("/t/maybe").json() == {"user": None}


def test_duplicate_email_is_409_case_insensitively(server: Server) -> None:
    server.sign_up(server.client(), "dup@example.com")
    r = server.client().post(
        "/api/auth/signup", json={"email": "DUP@example.com", "password": PASSWORD}
    )
    assert_json_error(r, 409, "email_taken")
    assert len(server.sql("SELECT id FROM users")) == 1


def test_wrong_password_and_unknown_email_look_the_same(server: Server) -> None:
    server.sign_up(server.client(), "known@example.com")
    client = server.client()
    wrong = client.post(
        "/api/auth/signin", json={"email": "known@example.com", "password": "nope-nope"}
    )
    unknown = client.post(
        "/api/auth/signin", json={"email": "who@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "code": "invalid_credentials",
            "message": "wrong email or password",
        }
    )
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers


def test_guests(server: Server) -> None:
    client = probe(server)
    r = client.post("/api/auth/guest")
    assert r.status_code == 201
    guest = r.json()["user"]
    assert guest["type"] == "guest" and guest["email"] is None and guest["role"] == "user"
    assert client.get("/api/auth/session").json()["user"] == guest
    assert client.get("/t/me").json()["id"] == guest["id"]
    assert_json_error(client.post("/t/regular"), 403, "guest_not_allowed")
    # An empty JSON request is fine too.
    empty = server.client().post("/api/auth/guest", headers={"content-type": "application/json"})
    assert empty.status_code == 201 and empty.json()["user"]["id"] != guest["id"]
    # Asking again while signed in keeps the same user.
    again = client.post("/api/auth/guest")
    assert again.status_code == 200 and again.json()["user"]["id"] == guest["id"]
    assert len(server.sql("SELECT id FROM users WHERE type = 'guest'")) == 2
    # Guests have no password to sign in with.
    assert {r["password_hash"] for r in server.sql("SELECT password_hash FROM users")} == {None}
    # Signing up upgrades the guest: same id, now regular.
    up = client.post(
        "/api/auth/signup", json={"email": "was-guest@example.com", "password": PASSWORD}
    )
    assert up.status_code == 201
    assert up.json()["user"]["id"] == guest["id"] and up.json()["user"]["type"] == "regular"
    assert client.post("/t/regular").json()["email"] == "was-guest@example.com"
    assert len(server.sql("SELECT id FROM users")) == 2


def test_guests_and_sign_up_can_be_turned_off(server: Server) -> None:
    client = server.client(AUTH_GUESTS="false", AUTH_SIGNUP="false")
    assert_json_error(client.post("/api/auth/guest"), 403, "guests_disabled")
    r = client.post("/api/auth/signup", json={"email": "no@example.com", "password": PASSWORD})
    assert_json_error(r, 403, "signup_disabled")
    assert server.sql("SELECT id FROM users") == []
    page = client.get("/signin").text
    assert "/api/auth/guest" not in page and "/signup" not in page


@pytest.mark.parametrize(
    "make_hash",
    [
        # Supabase (Go) and vercel/chatbot (bcrypt-ts) write $2a$ hashes with cost 10.
        lambda pw: bcrypt.hashpw(pw, bcrypt.gensalt(10, prefix=b"2a")).decode(),
        lambda pw: bcrypt.hashpw(pw, bcrypt.gensalt(10, prefix=b"2b")).decode(),
        # PHP's $2y$ is the same algorithm.
        lambda pw: "$2y$" + bcrypt.hashpw(pw, bcrypt.gensalt(4, prefix=b"2b")).decode()[4:],
    ],
)
def test_bcrypt_hashes_from_other_systems_verify(server: Server, make_hash: Any) -> None:
    hashed = make_hash(PASSWORD.encode())
    server.sql(
        "INSERT INTO users (id, email, password_hash) VALUES ('migrated-1', 'old@example.com', ?)",
        hashed,
    )
    client = server.client()
    r = client.post("/api/auth/signin", json={"email": "old@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["id"] == "migrated-1"
    bad = client.post(
        "/api/auth/signin", json={"email": "old@example.com", "password": PASSWORD + "x"}
    )
    assert_json_error(bad, 401, "invalid_credentials")


def test_migrated_hash_of_a_long_password_verifies_on_72_bytes(server: Server) -> None:
    long_password = "é" * 50  # 100 bytes; JavaScript bcrypt hashed the first 72
    hashed = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4, prefix=b"2a")).decode()
    server.sql(
        "INSERT INTO users (id, email, password_hash) VALUES ('m2', 'long@example.com', ?)", hashed
    )
    r = server.client().post(
        "/api/auth/signin", json={"email": "long@example.com", "password": long_password}
    )
    assert r.status_code == 200


def test_unknown_hash_formats_fail_cleanly(server: Server) -> None:
    server.sql(
        "INSERT INTO users (id, email, password_hash) VALUES ('m3', 'argon@example.com', ?)",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    )
    r = server.client().post(
        "/api/auth/signin", json={"email": "argon@example.com", "password": PASSWORD}
    )
    assert_json_error(r, 401, "invalid_credentials")


# -- throttling ------------------------------------------------------------------------


def test_failed_sign_ins_are_throttled_per_account(server: Server) -> None:
    server.sign_up(server.client(), "target@example.com")
    server.sign_up(server.client(), "bystander@example.com")
    client = server.client(AUTH_MAX_FAILED_SIGNINS=3, CLIENT_IP_HEADER="X-Forwarded-For")
    wrong = {"email": "target@example.com", "password": "wrong-password"}
    for i in range(3):
        r = client.post("/api/auth/signin", json=wrong, headers={"X-Forwarded-For": f"10.0.0.{i}"})
        assert_json_error(r, 401, "invalid_credentials")
    # Now even the right password is refused, from any IP, with Retry-After.
    right = {"email": "TARGET@example.com", "password": PASSWORD}
    r = client.post("/api/auth/signin", json=right, headers={"X-Forwarded-For": "10.9.9.9"})
    body = assert_json_error(r, 429, "too_many_attempts")
    assert 1 <= int(r.headers["retry-after"]) <= 900 and body["retry_after"] == int(
        r.headers["retry-after"]
    )
    # Other accounts are not affected.
    other = {"email": "bystander@example.com", "password": PASSWORD}
    assert client.post("/api/auth/signin", json=other).status_code == 200
    # Once the window has passed, the right password works and clears the count.
    server.sql(
        "UPDATE auth_throttle SET reset_at = 0 WHERE key = 'signin:account:target@example.com'"
    )
    assert client.post("/api/auth/signin", json=right).status_code == 200
    assert server.sql("SELECT * FROM auth_throttle WHERE key LIKE 'signin:account:target%'") == []


def test_success_resets_the_account_count(server: Server) -> None:
    server.sign_up(server.client(), "typo@example.com")
    client = server.client(AUTH_MAX_FAILED_SIGNINS=3)
    wrong = {"email": "typo@example.com", "password": "wrong-password"}
    right = {"email": "typo@example.com", "password": PASSWORD}
    for _ in range(2):
        for _ in range(2):
            assert client.post("/api/auth/signin", json=wrong).status_code == 401
        assert client.post("/api/auth/signin", json=right).status_code == 200


def test_failed_sign_ins_are_throttled_per_ip(server: Server) -> None:
    client = server.client(AUTH_MAX_FAILED_SIGNINS_PER_IP=4, CLIENT_IP_HEADER="X-Forwarded-For")
    attacker = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    for i in range(4):
        r = client.post(
            "/api/auth/signin",
            json={"email": f"u{i}@example.com", "password": "x"},
            headers=attacker,
        )
        assert r.status_code == 401
    r = client.post(
        "/api/auth/signin", json={"email": "fresh@example.com", "password": "x"}, headers=attacker
    )
    assert_json_error(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) > 0
    other_ip = {"X-Forwarded-For": "198.51.100.1"}
    r = client.post(
        "/api/auth/signin", json={"email": "fresh@example.com", "password": "x"}, headers=other_ip
    )
    assert r.status_code == 401


def test_new_accounts_per_ip_are_limited(server: Server) -> None:
    client_factory = {"AUTH_NEW_ACCOUNTS_PER_IP": 2}
    for _ in range(2):
        assert server.client(**client_factory).post("/api/auth/guest").status_code == 201
    r = server.client(**client_factory).post("/api/auth/guest")
    assert_json_error(r, 429, "too_many_attempts")
    r = server.client(**client_factory).post(
        "/api/auth/signup", json={"email": "late@example.com", "password": PASSWORD}
    )
    assert_json_error(r, 429)
    assert len(server.sql("SELECT id FROM users")) == 2


# -- roles, redirects ------------------------------------------------------------------


def test_roles_gate_admin_routes(server: Server) -> None:
    admin_client = probe(server)
    admin = server.sign_up(admin_client, "root@example.com")["user"]
    user_client = probe(server)
    user = server.sign_up(user_client, "user@example.com")["user"]
    assert_json_error(user_client.get("/api/admin/users"), 403, "forbidden")
    assert_json_error(admin_client.get("/api/admin/users"), 403, "forbidden")
    assert_json_error(server.client().get("/api/admin/users"), 401, "unauthorized")

    server.make_admin(admin["id"])  # roles come from D1, so this takes effect at once
    page1 = admin_client.get("/api/admin/users", params={"limit": 1}).json()
    assert [u["id"] for u in page1["users"]] == [admin["id"]] and page1["users"][0][
        "role"
    ] == "admin"
    assert page1["users"][0]["created_at"].endswith("Z")
    page2 = admin_client.get(
        "/api/admin/users", params={"limit": 1, "cursor": page1["next_cursor"]}
    ).json()
    assert [u["id"] for u in page2["users"]] == [user["id"]] and page2["next_cursor"] is None

    assert_json_error(user_client.get("/t/staff"), 403)
    r = admin_client.patch(f"/api/admin/users/{user['id']}", json={"role": "staff"})
    assert r.status_code == 200 and r.json()["role"] == "staff"
    assert user_client.get("/t/staff").json() == {"ok": True}
    assert_json_error(user_client.get("/api/admin/users"), 403)
    assert_json_error(
        admin_client.patch("/api/admin/users/nobody", json={"role": "x"}), 404, "not_found"
    )
    r = admin_client.patch(f"/api/admin/users/{user['id']}", json={"role": "Robert'); DROP"})
    assert_json_error(r, 422, "invalid_request")
    assert_json_error(
        user_client.patch(f"/api/admin/users/{admin['id']}", json={"role": "user"}), 403
    )


def test_browser_is_redirected_api_gets_401(server: Server) -> None:
    client = probe(server)
    r = client.get(
        "/t/me?tab=1", headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False
    )
    assert r.status_code == 303
    location = urlsplit(r.headers["location"])
    assert location.path == "/signin" and parse_qs(location.query)["callbackUrl"] == ["/t/me?tab=1"]
    r = client.get("/t/me", headers={"Accept": "application/json"})
    body = assert_json_error(r, 401, "unauthorized")
    assert body["message"] == "sign in required" and r.headers["www-authenticate"] == "Bearer"
    assert_json_error(client.post("/t/regular", headers={"Accept": "text/html"}), 401)
    # The front end's own sign-in page, given an absolute URL back.
    other = probe(server, AUTH_SIGNIN_URL="https://app.example.com/login?x=1")
    r = other.get("/t/me", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.headers["location"].startswith("https://app.example.com/login?x=1&callbackUrl=http")
    # Signed in, the page is served.
    server.sign_up(client, "browser@example.com")
    assert (
        client.get("/t/me", headers={"Accept": "text/html"}).json()["email"]
        == "browser@example.com"
    )


# -- forms and pages -------------------------------------------------------------------


def test_html_forms_sign_up_in_and_out(server: Server) -> None:
    client = server.client()
    form = {"email": "form@example.com", "password": PASSWORD, "callbackUrl": "/chat/1?x=2"}
    r = client.post("/api/auth/signup", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/chat/1?x=2"
    assert V5 in set_cookies(r)
    assert client.get("/api/auth/session").json()["user"]["email"] == "form@example.com"

    form_type = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post("/api/auth/signout", content=b"", headers=form_type, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert client.get("/api/auth/session").json() is None

    bad = {"email": "form@example.com", "password": "wrong-one", "callbackUrl": "/x"}
    r = client.post("/api/auth/signin", data=bad, follow_redirects=False)
    assert r.status_code == 303
    assert parse_qs(urlsplit(r.headers["location"]).query) == {
        "error": ["CredentialsSignin"],
        "callbackUrl": ["/x"],
    }
    # Never an open redirect.
    for evil in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        good = {"email": "form@example.com", "password": PASSWORD, "callbackUrl": evil}
        r = client.post("/api/auth/signin", data=good, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", evil
    r = client.post(
        "/api/auth/signup", data={"email": "bad", "password": "x"}, follow_redirects=False
    )
    assert r.headers["location"].startswith("/signup?error=InvalidInput")
    r = client.post("/api/auth/signup", data=form, follow_redirects=False)
    assert r.headers["location"].startswith("/signup?error=EmailTaken")
    r = server.client().post("/api/auth/guest", data={"callbackUrl": "/c"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/c" and V5 in set_cookies(r)


def test_cross_site_form_posts_are_refused(server: Server) -> None:
    client = server.client()
    form = {"email": "csrf@example.com", "password": PASSWORD}
    r = client.post("/api/auth/signup", data=form, headers={"Origin": "https://evil.example"})
    assert_json_error(r, 403, "cross_site_form")
    r = client.post("/api/auth/signup", data=form, headers={"Origin": "null"})
    assert_json_error(r, 403, "cross_site_form")
    assert server.sql("SELECT id FROM users") == []
    r = client.post(
        "/api/auth/signup",
        data=form,
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_sign_in_and_sign_up_pages(server: Server) -> None:
    client = server.client()
    r = client.get(
        "/signin",
        params={"callbackUrl": '/x"><script>alert(1)</script>', "error": "CredentialsSignin"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert 'action="/api/auth/signin"' in page and 'name="password"' in page
    assert "<script>" not in page and "Wrong email or password." in page
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    r = client.get("/signin", params={"error": "<b>pwned</b>", "callbackUrl": "/chat"})
    assert "pwned" not in r.text and "Something went wrong" in r.text
    assert 'name="callbackUrl" value="/chat"' in r.text
    signup = client.get("/signup").text
    assert 'action="/api/auth/signup"' in signup and 'minlength="8"' in signup


def test_openapi_documents_the_auth_routes(server: Server) -> None:
    spec = server.client().get("/openapi.json").json()
    signin = spec["paths"]["/api/auth/signin"]["post"]
    assert set(signin["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert {"/api/auth/signup", "/api/auth/guest", "/api/auth/signout", "/api/auth/session"} <= set(
        spec["paths"]
    )
    assert "/signin" not in spec["paths"]


# -- bad input: always 4xx JSON --------------------------------------------------------


def test_validation_lists_the_fields(server: Server) -> None:
    client = server.client()
    r = client.post("/api/auth/signup", json={"email": "not-an-email", "password": "short"})
    body = assert_json_error(r, 422, "invalid_request")
    fields = {f["field"] for f in body["fields"]}
    assert fields == {"body.email", "body.password"}
    assert any("at least 8" in f["message"] for f in body["fields"])
    r = client.post("/api/auth/signup", json={})
    assert {f["field"] for f in assert_json_error(r, 422)["fields"]} == {
        "body.email",
        "body.password",
    }
    r = client.post(
        "/api/auth/signup", json={"email": "a@example.com", "password": "a@example.com"}
    )
    assert "email" in assert_json_error(r, 422)["message"]
    r = client.post("/api/auth/signup", json={"email": "a@example.com", "password": "p" * 73})
    assert "72 bytes" in assert_json_error(r, 422)["message"]


BAD_BODIES: list[tuple[str, dict[str, str], bytes, int]] = [
    ("json array", {"content-type": "application/json"}, b"[1, 2]", 422),
    ("json scalar", {"content-type": "application/json"}, b'"x"', 422),
    ("broken json", {"content-type": "application/json"}, b'{"email": ', 422),
    ("not utf-8 json", {"content-type": "application/json"}, b"\xff\xfe{}", 422),
    ("no body", {}, b"", 422),
    ("text/plain", {"content-type": "text/plain"}, b"email=a", 415),
    ("multipart", {"content-type": "multipart/form-data; boundary=x"}, b"--x--", 415),
    (
        "form not utf-8",
        {"content-type": "application/x-www-form-urlencoded"},
        b"email=%ff\xff",
        422,
    ),
    ("wrong types", {"content-type": "application/json"}, b'{"email": 1, "password": []}', 422),
    (
        "null fields",
        {"content-type": "application/json"},
        b'{"email": null, "password": null}',
        422,
    ),
    (
        "huge email",
        {"content-type": "application/json"},
        json.dumps({"email": "a" * 5000, "password": "p"}).encode(),
        422,
    ),
    (
        "nul in password",
        {"content-type": "application/json"},
        b'{"email": "a@b.co", "password": "pass\\u0000word1"}',
        422,
    ),
    (
        "lone surrogate",
        {"content-type": "application/json"},
        b'{"email": "a@b.co", "password": "\\ud800abcdefgh"}',
        422,
    ),
    (
        "unicode email",
        {"content-type": "application/json"},
        '{"email": "ü@exämple.com", "password": "p"}'.encode(),
        422,
    ),
    (
        "email no dot",
        {"content-type": "application/json"},
        b'{"email": "a@localhost", "password": "p"}',
        422,
    ),
    (
        "control in name",
        {"content-type": "application/json"},
        b'{"email": "n@b.co", "password": "long enough pw", "name": "a\\u0007b"}',
        422,
    ),
]


@pytest.mark.parametrize("path", ["/api/auth/signup", "/api/auth/signin"])
@pytest.mark.parametrize(
    ("label", "headers", "content", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_are_4xx_json(
    server: Server, path: str, label: str, headers: dict[str, str], content: bytes, status: int
) -> None:
    client = server.client(raise_server_exceptions=True)
    r = client.post(path, content=content, headers=headers)
    if label in ("nul in password", "control in name") and path.endswith("signin"):
        # Sign-in does not judge passwords or names: just wrong credentials.
        assert_json_error(r, 401, "invalid_credentials")
    else:
        assert_json_error(r, status)
    assert server.sql("SELECT id FROM users") == []


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c.d.e",
        "Bearer %E0%A4%A",
        "Bearer %ff%fe",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 70000,
        "Bearer "
        + base64.urlsafe_b64encode(b'{"alg":"dir","enc":"A256CBC-HS512","kid":"nope"}').decode()
        + ".a.b.c.d",
    ],
)
def test_bad_authorization_headers_are_401_not_500(server: Server, authorization: str) -> None:
    client = probe(server)
    r = client.get("/t/me", headers={"Authorization": authorization})
    assert_json_error(r, 401, "unauthorized")
    assert client.get("/api/auth/session", headers={"Authorization": authorization}).json() is None
    assert (
        client.post("/api/auth/signout", headers={"Authorization": authorization}).status_code
        == 204
    )


def test_bad_cookies_and_queries(server: Server) -> None:
    client = probe(server)
    for value in ("", "garbage", "a.b.c.d.e", "%ff"):
        r = client.get("/api/auth/session", headers=cookie_header(**{V5: value}))
        assert r.status_code == 200 and r.json() is None
    admin = probe(server)
    server.make_admin(server.sign_up(admin, "adm@example.com")["user"]["id"])
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "c" * 300}):
        assert_json_error(admin.get("/api/admin/users", params=params), 422)
    assert admin.get("/api/admin/users", params={"cursor": "no-such-user"}).json()["users"] == []
    assert_json_error(admin.patch("/api/admin/users/x", json={"role": "a", "extra": 1}), 422)
    assert_json_error(
        admin.patch(
            "/api/admin/users/x", content=b"{", headers={"content-type": "application/json"}
        ),
        422,
    )
    r = client.get("/signin", params={"callbackUrl": "x" * 3000})
    assert_json_error(r, 422)


# -- configuration ---------------------------------------------------------------------


def test_missing_auth_secret_fails_at_start(server: Server) -> None:
    app = create_app(server.env, Settings.from_env({}))
    with pytest.raises(ConfigError, match="AUTH_SECRET is not set"), TestClient(app):
        pass
    # Without a lifespan (a Worker), a request that needs a session says why.
    client = TestClient(app, raise_server_exceptions=False)
    client.portal = server.portal
    body = assert_json_error(client.get("/api/auth/session"), 500, "config_error")
    assert "AUTH_SECRET" in body["message"]
    with pytest.raises(ConfigError, match="AUTH_SECRET"):
        check_settings(Settings.from_env({}))
    check_settings(Settings.from_env({"AUTH_SECRET": SECRET}))


def test_auth_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="AUTH_SECRET"):
        Settings.from_env({"AUTH_SECRET": f"{SECRET},short"})
    with pytest.raises(ConfigError, match="AUTH_SECURE_COOKIES"):
        Settings.from_env({"AUTH_SECURE_COOKIES": "sometimes"})
    with pytest.raises(ConfigError, match="AUTH_COOKIE_NAME"):
        Settings.from_env({"AUTH_COOKIE_NAME": "bad name;"})
    settings = Settings.from_env(
        {"AUTH_SECRET": f" {SECRET} , {OTHER_SECRET}", "AUTH_SECURE_COOKIES": True}
    )
    assert (
        settings.auth_secrets == (SECRET, OTHER_SECRET) and settings.auth_secure_cookies == "true"
    )
    assert SECRET not in repr(settings)


def test_a_custom_cookie_name_is_also_the_salt(server: Server) -> None:
    client = server.client(AUTH_COOKIE_NAME="app.session")
    signed = server.sign_up(client, "custom@example.com")
    assert "app.session" in set_cookies(client.get("/api/auth/session"))
    assert authjs_decode(signed["token"], salt="app.session")["ok"]
    assert not authjs_decode(signed["token"], salt=V5)["ok"]
