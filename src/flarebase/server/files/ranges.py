"""HTTP conditional and range requests (RFC 9110 sections 13 and 14), for one file."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """A valid range that lies outside the file: 416 with `Content-Range: bytes */size`."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions (inclusive) `Range` asks for, or None to send
    the whole file: no header, another unit, a malformed or multi-range header (all of
    which a server may ignore). Raises Unsatisfiable when no byte of it exists."""
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # the last N bytes
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid: ignored
    if first >= size:
        raise Unsatisfiable
    return first, (min(int(last_s), size - 1) if last_s else size - 1)


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """If-None-Match holds for `etag` (quoted): the client's copy is current (304).
    Weak comparison, as RFC 9110 asks for If-None-Match."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in _etags(header)


def if_range_holds(header: str | None, etag: str, last_modified: str) -> bool:
    """Whether a Range may be honoured given If-Range (absent: yes). An etag must match
    strongly; a date must be exactly the file's Last-Modified."""
    if header is None:
        return True
    value = header.strip()
    if value.startswith('"'):
        return value == etag
    return value == last_modified
