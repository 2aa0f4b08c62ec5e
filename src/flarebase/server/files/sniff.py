"""What a file is, from its first bytes (magic numbers), never from its name or the
client's Content-Type."""

from __future__ import annotations

from dataclasses import dataclass

# How many leading bytes `sniff` needs.
HEAD_BYTES = 16


@dataclass(frozen=True, slots=True)
class Kind:
    content_type: str
    extension: str


# Every type UPLOAD_ALLOWED_TYPES may name: those recognisable from their first bytes.
KNOWN: dict[str, Kind] = {
    k.content_type: k
    for k in (
        Kind("image/jpeg", "jpg"),
        Kind("image/png", "png"),
        Kind("image/gif", "gif"),
        Kind("image/webp", "webp"),
        Kind("image/avif", "avif"),
        Kind("image/heic", "heic"),
        Kind("image/tiff", "tiff"),
        Kind("application/pdf", "pdf"),
    )
}

_ISO_BRANDS = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic"}
_ISO_BRANDS |= {b"heix": "image/heic", b"heim": "image/heic", b"heis": "image/heic"}


def sniff(head: bytes) -> Kind | None:
    """The kind of a file starting with `head` (at least HEAD_BYTES of it, when the
    file is that long), or None when it is none of KNOWN."""
    if head.startswith(b"\xff\xd8\xff"):
        return KNOWN["image/jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return KNOWN["image/png"]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return KNOWN["image/gif"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return KNOWN["image/webp"]
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return KNOWN[_ISO_BRANDS[head[8:12]]]
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return KNOWN["image/tiff"]
    if head.startswith(b"%PDF-"):
        return KNOWN["application/pdf"]
    return None
