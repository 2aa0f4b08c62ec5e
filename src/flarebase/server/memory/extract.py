"""Text out of a document's bytes: plain text, Markdown or PDF.

    kind = detect_kind(data, filename="notes.md")          # "markdown"
    doc = extract(data, kind)                                # Extracted(text, pages)

The kind is told by the content first (`%PDF-` starts a PDF), then by the name or
the declared type (Markdown and text are both UTF-8 text). Text must be valid
UTF-8 (a BOM is dropped, line ends become `\\n`) without NUL bytes; PDFs are read
with pypdf, page by page (`pages` holds where each page starts in `text`), and a
PDF whose pages hold no text (a scan) is refused, since there is nothing to embed.
Every refusal is an `ExtractError` with a stable `code`, which the routes answer
with 415 or 422.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["text", "markdown", "pdf"]
KINDS: tuple[str, ...] = ("text", "markdown", "pdf")
EXTENSIONS: dict[str, str] = {"text": "txt", "markdown": "md", "pdf": "pdf"}
CONTENT_TYPES: dict[str, str] = {
    "text": "text/plain; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
}
_MARKDOWN_NAMES = re.compile(r"\.(md|markdown|mdown|mkd)$", re.IGNORECASE)
_BINARY = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PK\x03\x04", b"\x1f\x8b", b"RIFF")
MAX_PDF_PAGES = 2000

logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every odd PDF


class ExtractError(ValueError):
    """The document cannot be read. `code`: unsupported_document_type, invalid_text,
    invalid_pdf, encrypted_pdf, no_text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    # (offset in text, page number from 1) of each page's start; empty for text.
    pages: list[tuple[int, int]] = field(default_factory=list)

    def page_at(self, offset: int) -> int | None:
        """The page that holds character `offset` of `text` (None for text)."""
        page = None
        for start, number in self.pages:
            if start > offset:
                break
            page = number
        return page


def detect_kind(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> Kind:
    """pdf, markdown or text, from the content, then the name or declared type."""
    if data.lstrip()[:5] == b"%PDF-":
        return "pdf"
    if data.startswith(_BINARY) or b"\x00" in data[:8192]:
        raise ExtractError(
            "unsupported_document_type",
            "the document is not text, Markdown or PDF (it looks like binary data)",
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in ("text/markdown", "text/x-markdown") or (
        filename and _MARKDOWN_NAMES.search(filename)
    ):
        return "markdown"
    return "text"


def extract(data: bytes, kind: str) -> Extracted:
    if kind == "pdf":
        return _pdf(data)
    if kind in ("text", "markdown"):
        return Extracted(_text(data))
    raise ExtractError("unsupported_document_type", f"unknown kind {kind!r}; one of {KINDS}")


def _text(data: bytes) -> str:
    if b"\x00" in data:
        raise ExtractError("invalid_text", "the text contains NUL bytes (is it binary?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExtractError(
            "invalid_text", f"the text is not valid UTF-8 (byte {e.start}); convert it first"
        ) from None
    return normalize(text)


def normalize(text: str) -> str:
    """No BOM, `\\n` line ends, no trailing spaces before line ends."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def _pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractError("encrypted_pdf", "the PDF is encrypted with a password")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise ExtractError(
                "invalid_pdf", f"the PDF has {len(reader.pages)} pages; at most {MAX_PDF_PAGES}"
            )
        parts: list[str] = []
        pages: list[tuple[int, int]] = []
        offset = 0
        for number, page in enumerate(reader.pages, 1):
            text = normalize(page.extract_text() or "")
            if not text:
                continue
            if parts:
                offset += 2  # the "\n\n" between pages
            pages.append((offset, number))
            parts.append(text)
            offset += len(text)
    except ExtractError:
        raise
    except FileNotDecryptedError:
        raise ExtractError("encrypted_pdf", "the PDF is encrypted with a password") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise ExtractError("invalid_pdf", f"the PDF cannot be read: {e}") from None
    except Exception as e:  # pypdf raises many kinds on broken files
        raise ExtractError("invalid_pdf", f"the PDF cannot be read: {type(e).__name__}") from None
    if not parts:
        raise ExtractError(
            "no_text", "the PDF has no extractable text (a scanned PDF needs OCR first)"
        )
    return Extracted("\n\n".join(parts), pages)
