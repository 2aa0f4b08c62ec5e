"""Chunking and text extraction, directly: sizes, overlap, boundaries, Markdown
headings, PDF pages, and the refusals."""

from __future__ import annotations

import itertools

import pytest

from flarebase.server.memory.chunking import embedding_text, split
from flarebase.server.memory.extract import ExtractError, detect_kind, extract

from .test_memory import GUIDE, HANDBOOK, make_pdf

PROSE = " ".join(f"Sentence number {i} says something about subject {i % 7}." for i in range(200))


def test_chunks_are_bounded_cover_the_text_and_overlap() -> None:
    chunks = split(PROSE, size=300, overlap=60)
    assert len(chunks) > 20
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.text == PROSE[c.start : c.end] for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0 and chunks[-1].end == len(PROSE)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # overlapping
        assert before.end - after.start <= 60
        assert after.start > before.start  # always moving on
    # Cuts fall after sentences, not inside words.
    assert all(c.text.endswith(".") for c in chunks[:-1])
    # Every sentence is whole in at least one chunk.
    for sentence in PROSE.split(". ")[:50]:
        assert any(sentence in c.text for c in chunks)


def test_without_overlap_chunks_tile_the_text() -> None:
    chunks = split(PROSE, size=300, overlap=0)
    joined = " ".join(c.text for c in chunks)
    assert joined == PROSE


def test_a_word_longer_than_a_chunk_is_cut() -> None:
    text = "short words " + "x" * 1000 + " more words"
    chunks = split(text, size=200, overlap=20)
    assert all(len(c.text) <= 200 for c in chunks)
    assert "".join(c.text for c in chunks).count("x") >= 1000


def test_markdown_chunks_know_their_headings_and_start_at_them() -> None:
    chunks = split(GUIDE, size=240, overlap=40, markdown=True)
    headings = [c.heading for c in chunks]
    assert headings == [
        "Deployment guide",
        "Deployment guide > Database migrations",
        "Deployment guide > Rollback",
    ]
    assert chunks[1].text.startswith("## Database migrations")  # cut before the heading
    assert embedding_text(chunks[2], "deploy.md").startswith(
        "deploy.md > Deployment guide > Rollback\n\n## Rollback"
    )
    fenced = "# Real\n\n```sh\n# not a heading\necho hi\n```\n\nText after the fence."
    assert {c.heading for c in split(fenced, size=200, overlap=0, markdown=True)} == {"Real"}


def test_chunking_options_are_checked() -> None:
    with pytest.raises(ValueError, match="half"):
        split(PROSE, size=200, overlap=150)
    with pytest.raises(ValueError, match="at least 100"):
        split(PROSE, size=50, overlap=0)
    assert split("", size=200, overlap=0) == []


def test_pdf_text_keeps_its_pages() -> None:
    doc = extract(make_pdf(HANDBOOK), "pdf")
    assert [number for _, number in doc.pages] == [1, 2, 3]
    assert doc.page_at(0) == 1
    assert doc.page_at(doc.text.index("Meals are reimbursed")) == 2
    assert doc.page_at(len(doc.text) - 1) == 3


def test_kinds_are_told_by_content_then_name() -> None:
    assert detect_kind(b"%PDF-1.4 ...", filename="notes.txt") == "pdf"
    assert detect_kind(b"# Title", filename="notes.md") == "markdown"
    assert detect_kind(b"# Title", content_type="text/markdown; charset=utf-8") == "markdown"
    assert detect_kind(b"plain words", filename="notes") == "text"
    for binary in (b"\x89PNG\r\n\x1a\n....", b"PK\x03\x04zip", b"abc\x00def"):
        with pytest.raises(ExtractError) as e:
            detect_kind(binary)
        assert e.value.code == "unsupported_document_type"


def test_text_is_normalized_and_must_be_utf8() -> None:
    assert extract(b"\xef\xbb\xbfline one  \r\nline two\r", "text").text == "line one\nline two"
    with pytest.raises(ExtractError) as e:
        extract("caf\xe9".encode("latin-1"), "text")
    assert e.value.code == "invalid_text"


def test_broken_and_encrypted_pdfs_are_refused() -> None:
    with pytest.raises(ExtractError) as e:
        extract(b"%PDF-1.7\nnot really a pdf", "pdf")
    assert e.value.code == "invalid_pdf"
    truncated = make_pdf(HANDBOOK)[:300]
    with pytest.raises(ExtractError) as e:
        extract(truncated, "pdf")
    assert e.value.code in ("invalid_pdf", "no_text")
