"""Auth.js session tokens: encrypted JWTs (compact JWE, `alg: dir`), as Auth.js v5
(`@auth/core/jwt`) and NextAuth v4 (`next-auth/jwt`) make them.

v5: `enc: A256CBC-HS512`, key = HKDF-SHA256(secret, salt = cookie name,
    info = "Auth.js Generated Encryption Key (<salt>)", 64 bytes), header `kid` =
    RFC 7638 thumbprint of that key (SHA-512). `A256GCM` (32-byte key) also decodes.
v4: `enc: A256GCM`, no kid, key = HKDF-SHA256(secret, salt = "",
    info = "NextAuth.js Generated Encryption Key", 32 bytes).

`decode` tries every secret (rotation) and every candidate salt; a v5 `kid` picks
the key. Claims: `exp` is required and enforced, `nbf` too when present, both with
15 s of clock skew, as `jose`'s `jwtDecrypt` does for Auth.js. Pure functions: no
FastAPI, no bindings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.jwk import OctKey

ALG = "dir"
V5_ENC = "A256CBC-HS512"
GCM_ENC = "A256GCM"
CLOCK_SKEW = 15  # seconds, as Auth.js allows
DEFAULT_MAX_AGE = 30 * 24 * 60 * 60  # Auth.js's default session age: 30 days
MAX_TOKEN_CHARS = 64 * 1024  # anything longer is not a session token
_KEY_BYTES = {V5_ENC: 64, GCM_ENC: 32}
_ALGORITHMS = [ALG, V5_ENC, GCM_ENC]


class TokenError(Exception):
    """The token is malformed, was made with another secret or salt, was tampered
    with, or has expired. The message says which, for logs; never show it to clients."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf(secret: str, salt: str, info: str, length: int) -> bytes:
    kdf = HKDF(algorithm=SHA256(), length=length, salt=salt.encode(), info=info.encode())
    return kdf.derive(secret.encode())


@lru_cache(maxsize=256)
def derive_key(secret: str, salt: str, enc: str = V5_ENC) -> bytes:
    """Auth.js v5's encryption key for `enc` (A256CBC-HS512: 64 bytes, A256GCM: 32)."""
    if enc not in _KEY_BYTES:
        raise TokenError(f"unsupported content encryption {enc!r}")
    return _hkdf(secret, salt, f"Auth.js Generated Encryption Key ({salt})", _KEY_BYTES[enc])


@lru_cache(maxsize=64)
def derive_v4_key(secret: str) -> bytes:
    """NextAuth v4's encryption key (A256GCM, 32 bytes, empty salt)."""
    return _hkdf(secret, "", "NextAuth.js Generated Encryption Key", 32)


@lru_cache(maxsize=256)
def thumbprint(key: bytes) -> str:
    """RFC 7638 thumbprint of a symmetric JWK, hashed as Auth.js does (`sha<bits>`)."""
    canonical = json.dumps({"k": b64url(key), "kty": "oct"}, separators=(",", ":"))
    digest = hashlib.new(f"sha{len(key) * 8}", canonical.encode()).digest()
    return b64url(digest)


def encode(
    claims: Mapping[str, Any],
    secret: str,
    salt: str,
    *,
    max_age: int = DEFAULT_MAX_AGE,
    now: float | None = None,
) -> str:
    """A v5 token, as `@auth/core/jwt` `encode({token, secret, salt, maxAge})` makes it:
    the claims plus `iat`, `exp` and a fresh `jti`."""
    key = derive_key(secret, salt, V5_ENC)
    header = {"alg": ALG, "enc": V5_ENC, "kid": thumbprint(key)}
    return _encrypt(header, _stamped(claims, max_age, now), key)


def encode_v4(
    claims: Mapping[str, Any],
    secret: str,
    *,
    max_age: int = DEFAULT_MAX_AGE,
    now: float | None = None,
) -> str:
    """A NextAuth v4 token, as `next-auth/jwt` `encode({token, secret})` makes it."""
    header = {"alg": ALG, "enc": GCM_ENC}
    return _encrypt(header, _stamped(claims, max_age, now), derive_v4_key(secret))


def _stamped(claims: Mapping[str, Any], max_age: int, now: float | None) -> dict[str, Any]:
    issued = int(time.time() if now is None else now)
    return {**claims, "iat": issued, "exp": issued + max_age, "jti": str(uuid.uuid4())}


def _encrypt(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    plaintext = json.dumps(payload, separators=(",", ":"))
    return jwe.encrypt_compact(header, plaintext, OctKey.import_key(key), algorithms=_ALGORITHMS)


def decode(
    token: str,
    secrets: Iterable[str],
    salts: Iterable[str],
    *,
    now: float | None = None,
    leeway: int = CLOCK_SKEW,
) -> dict[str, Any]:
    """The claims of a v5 or v4 token made with any of `secrets`; v5 tokens must have
    been made with one of `salts` (the cookie name). Raises TokenError otherwise."""
    claims = dict(_opened(token, tuple(secrets), tuple(salts)))
    _check_times(claims, time.time() if now is None else now, leeway)
    return claims


# A client sends its token with every request: decrypting it once saves ~55 us per
# request. Only tokens that decrypted are kept; their times are checked at each use.
@lru_cache(maxsize=1024)
def _opened(token: str, secrets: tuple[str, ...], salts: tuple[str, ...]) -> dict[str, Any]:
    header = _header(token)
    enc = header.get("enc")
    if enc == V5_ENC:
        keys = [derive_key(s, salt, V5_ENC) for s in secrets for salt in salts]
    elif enc == GCM_ENC:
        keys = [derive_key(s, salt, GCM_ENC) for s in secrets for salt in salts]
        if "kid" not in header:
            keys += [derive_v4_key(s) for s in secrets]
    else:
        raise TokenError(f"unsupported content encryption {enc!r}")
    kid = header.get("kid")
    if kid is not None:
        keys = [k for k in keys if thumbprint(k) == kid]
        if not keys:
            raise TokenError("no secret matches the token's kid")
    return _decrypt(token, keys)


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("not a token")
    parts = token.split(".")
    if len(parts) != 5:
        raise TokenError("not a compact JWE")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("unreadable header") from None
    if not isinstance(header, dict):
        raise TokenError("unreadable header")
    if header.get("alg") != ALG:
        raise TokenError(f"unsupported key management {header.get('alg')!r}")
    if "zip" in header or "crit" in header:
        raise TokenError("compressed or critical-extension tokens are not accepted")
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("kid must be a string")
    return header


def _decrypt(token: str, keys: list[bytes]) -> dict[str, Any]:
    for key in keys:
        try:
            plaintext = jwe.decrypt_compact(token, OctKey.import_key(key), algorithms=_ALGORITHMS)
        except Exception:  # wrong key, tampered, malformed: try the next secret
            continue
        try:
            claims = json.loads(plaintext.plaintext or b"")
        except (ValueError, UnicodeDecodeError):
            raise TokenError("the payload is not JSON") from None
        if not isinstance(claims, dict):
            raise TokenError("the payload is not a JSON object")
        return claims
    raise TokenError("no secret and salt decrypt the token")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_times(claims: dict[str, Any], now: float, leeway: int) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("the token has no valid exp")
    if now - leeway >= exp:
        raise TokenError("the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not _number(nbf) or nbf > now + leeway):
        raise TokenError("the token is not yet valid")
    iat = claims.get("iat")
    if iat is not None and not _number(iat):
        raise TokenError("iat must be a number")
