"""Splitting a document's text into overlapping chunks at natural boundaries.

    chunks = split(text, size=1000, overlap=200, markdown=True)
    chunks[0].start, chunks[0].end, chunks[0].text, chunks[0].heading

Each chunk is `text[start:end]` (whitespace trimmed), at most `size` characters.
A chunk ends at the best boundary in the second half of its window, in this order
of preference: before a Markdown heading, at a paragraph break, at a line end,
after a sentence, after a word; only a word longer than the window is cut inside.
The next chunk starts at most `overlap` characters before the previous one ended
(at a sentence or word start), so a fact cut in two still appears whole in one
chunk; there is no overlap across a Markdown heading, where a new section starts.
For Markdown, `heading` is the path of headings the chunk sits under
("Setup > Install"), which `embedding_text` puts before the chunk's text when
embedding it (a chunk alone often lacks the words that say what it is about).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?;:][\"')\]]*\s+")
_WORD = re.compile(r"\s+")
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    start: int  # offsets in the document's text
    end: int
    text: str
    heading: str = ""  # "A > B": the Markdown headings above this chunk


def split(
    text: str, *, size: int = 1000, overlap: int = 200, markdown: bool = False
) -> list[Chunk]:
    if size < 100:
        raise ValueError("chunk size must be at least 100 characters")
    if not 0 <= overlap <= size // 2:
        raise ValueError("overlap must be between 0 and half the chunk size")
    headings = _headings(text) if markdown else []
    heading_starts = [h[0] for h in headings]
    cuts = {
        "heading": heading_starts,
        "paragraph": [m.end() for m in _PARAGRAPH.finditer(text)],
        "line": [m.end() for m in _LINE.finditer(text)],
        "sentence": [m.end() for m in _SENTENCE.finditer(text)],
        "word": [m.end() for m in _WORD.finditer(text)],
    }
    chunks: list[Chunk] = []
    start = _skip_space(text, 0)
    while start < len(text):
        end, kind = _cut(text, cuts, start, size)
        piece_start, piece_end = _trim(text, start, end)
        if piece_end > piece_start:
            chunks.append(
                Chunk(
                    index=len(chunks),
                    start=piece_start,
                    end=piece_end,
                    text=text[piece_start:piece_end],
                    heading=_path(headings, heading_starts, piece_start),
                )
            )
        if end >= len(text):
            break
        if kind == "heading" or overlap == 0:
            start = end
        else:
            start = _overlap_start(cuts, start, end, overlap)
        start = _skip_space(text, start)
    return chunks


def embedding_text(chunk: Chunk, title: str = "") -> str:
    """What is embedded for a chunk: its title and heading path, then its text."""
    context = " > ".join(part for part in (title, chunk.heading) if part)
    return f"{context}\n\n{chunk.text}" if context else chunk.text


def _cut(text: str, cuts: dict[str, list[int]], start: int, size: int) -> tuple[int, str]:
    limit = start + size
    if limit >= len(text):
        return len(text), "end"
    low = start + size // 2
    for kind, positions in cuts.items():
        i = bisect.bisect_right(positions, limit) - 1
        if i >= 0 and positions[i] > low:
            return positions[i], kind
    # No boundary in the second half: the last word break in the window, else a hard cut.
    words = cuts["word"]
    i = bisect.bisect_right(words, limit) - 1
    if i >= 0 and words[i] > start:
        return words[i], "word"
    return limit, "hard"


def _overlap_start(cuts: dict[str, list[int]], start: int, end: int, overlap: int) -> int:
    earliest = max(end - overlap, start + 1)
    for kind in ("sentence", "word"):
        positions = cuts[kind]
        i = bisect.bisect_left(positions, earliest)
        if i < len(positions) and positions[i] < end:
            return positions[i]
    return end  # no break in the overlap window: no overlap rather than a cut word


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of each Markdown heading outside code fences."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    out = []
    for m in _HEADING.finditer(text):
        inside_fence = bisect.bisect_left(fences, m.start()) % 2 == 1
        if not inside_fence:
            out.append((m.start(), len(m.group(1)), m.group(2).strip()))
    return out


def _path(headings: list[tuple[int, int, str]], starts: list[int], offset: int) -> str:
    stack: list[tuple[int, str]] = []
    for _, level, title in headings[: bisect.bisect_right(starts, offset)]:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
    return " > ".join(title for _, title in stack)
