"""Signed file links: `?exp=<epoch seconds>&sig=<HMAC>` that open one file, without
a session, until `exp`.

The signature is HMAC-SHA256 over `<file id>.<exp>` with a key derived (HKDF-SHA256)
from AUTH_SECRET for this one purpose, so a link never reveals anything usable as a
session secret. Every secret AUTH_SECRET lists verifies (rotation); the first signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"flarebase signed file links"
_INFO = b"flarebase.files.link.v1"
MAX_SIGNATURE_CHARS = 64


@lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
        secret.encode("utf-8")
    )


def _mac(secret: str, file_id: str, exp: int) -> bytes:
    message = f"{file_id}.{exp}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).digest()


def sign(secret: str, file_id: str, exp: int) -> str:
    """The `sig` of a link to `file_id` valid until `exp` (base64url, no padding)."""
    return base64.urlsafe_b64encode(_mac(secret, file_id, exp)).rstrip(b"=").decode("ascii")


def verify(secrets: Sequence[str], file_id: str, exp: int, sig: str) -> bool:
    """Whether `sig` was made by `sign` with one of `secrets` (expiry not checked)."""
    if not sig or len(sig) > MAX_SIGNATURE_CHARS:
        return False
    try:
        given = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except ValueError:
        return False
    ok = False
    for secret in secrets:  # no early exit: the time taken says nothing about which
        ok |= hmac.compare_digest(given, _mac(secret, file_id, exp))
    return ok
