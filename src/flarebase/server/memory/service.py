"""The memory (RAG) service: documents in, relevant chunks out. The library API under
the HTTP routes, usable alone with any env:

    memory = Memory(db=env.DB, index=env.MEMORY, bucket=env.BUCKET, embedder=HashEmbedder())
    await memory.prepare()                                   # index exists, model matches
    doc = await memory.ingest(user_id, pdf_bytes, title="Handbook", filename="hb.pdf")
    doc = await memory.ingest_object(user_id, "some/key.md") # an object already in R2
    doc = await memory.ingest_file(user_id, file_id)          # an upload (server/files)
    hits = await memory.search(user_id, "how many vacation days?", top_k=5)
    await memory.delete(user_id, doc.id)                      # and every vector

Ingest: the bytes are read first (kind, text, chunks: bad input fails before anything
is stored), the original is put in R2 (`users/<user id>/memory/<id>.<ext>`) unless
it is there already, then a D1 row ('pending'), every chunk row ('indexing'), and
then the chunks are embedded and upserted `batch` at a time (at most 1,000, Vectorize's
limit), recording after each step how many chunks have vectors (`indexed`). If
anything fails on the way (the embedding API is down, the process dies), the
document keeps its progress and `resume(id)` continues from there; upserts are
idempotent, so a step repeated after a crash writes the same vectors again.
`IngestInterrupted` tells the caller which document to resume.

Each vector's id is `<document id>:<chunk index>` and its metadata links back:
`{access, owner, doc, chunk, kind, model, r2Key}`, where `access` is
`user:<owner id>` or `shared`. A search embeds the query with the same model and
asks Vectorize for `access IN (user:<me>, shared) AND model = <model>` plus the
caller's filters, then reads the chunks' text from D1, keeping only documents the
user may see that are ready. Deleting removes the vectors by the ids D1 tracks
(100 per call), the original if memory stored it, then the rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...platform.vectorize import MAX_BATCH, MAX_DELETE_IDS, MAX_TOP_K
from . import store
from .chunking import Chunk, embedding_text, split
from .embeddings import Embedder
from .extract import CONTENT_TYPES, EXTENSIONS, Extracted, ExtractError, detect_kind, extract
from .index import prepare_index
from .store import DocumentRow

log = logging.getLogger("flarebase.server.memory")

MAX_CHUNKS = 20_000
MAX_TITLE_CHARS = 200
UNTITLED = "untitled"  # shown when a document has no title; never embedded
_D1_IDS = 90  # vector ids per D1 lookup (100 bound values at most)


class IngestInterrupted(Exception):
    """An ingest stopped part way; `document` has the progress, `resume()` continues."""

    def __init__(self, document: DocumentRow, cause: BaseException) -> None:
        super().__init__(f"ingest of {document.id} interrupted: {cause}")
        self.document = document
        self.cause = cause


class NotFound(Exception):
    """No such document for this user (or no such object/file)."""


@dataclass(frozen=True, slots=True)
class Match:
    """One chunk found by `search`, best first."""

    id: str  # the vector id, <document id>:<chunk index>
    score: float  # cosine similarity, 1 for identical directions
    text: str
    document_id: str
    chunk: int
    title: str
    kind: str
    shared: bool
    start: int
    end: int
    page: int | None
    heading: str
    file_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "text": self.text,
            "documentId": self.document_id,
            "chunk": self.chunk,
            "title": self.title,
            "kind": self.kind,
            "shared": self.shared,
            "start": self.start,
            "end": self.end,
            "page": self.page,
            "heading": self.heading,
            "fileId": self.file_id,
        }


def object_key(user_id: str, document_id: str, kind: str) -> str:
    """Where memory stores an original it was given as bytes."""
    return f"users/{user_id}/memory/{document_id}.{EXTENSIONS[kind]}"


class Memory:
    def __init__(
        self,
        *,
        db: Any,
        index: Any,
        bucket: Any,
        embedder: Embedder,
        binding_name: str = "MEMORY",
        chunk_chars: int = 1000,
        chunk_overlap: int = 200,
        batch: int = 100,
    ) -> None:
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be between 1 and {MAX_BATCH} (Vectorize's limit)")
        self.db = db
        self.index = index
        self.bucket = bucket
        self.embedder = embedder
        self.binding_name = binding_name
        self.chunk_chars = chunk_chars
        self.chunk_overlap = chunk_overlap
        self.batch = batch

    async def prepare(self) -> str:
        """The start-up step: the index exists (created locally if missing) with the
        embedder's dimensions, and holds no other model's vectors (see index.py)."""
        return await prepare_index(self.index, self.binding_name, self.db, self.embedder)

    # -- ingest

    async def ingest(
        self,
        user_id: str,
        data: bytes,
        *,
        title: str | None = None,
        kind: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        shared: bool = False,
    ) -> DocumentRow:
        """Store `data` in R2 and index it. Raises ExtractError for bad input (nothing
        stored) and IngestInterrupted when indexing stopped part way."""
        kind = kind or detect_kind(data, filename=filename, content_type=content_type)
        extracted, chunks = self._read(data, kind)
        document_id = str(uuid.uuid4())
        key = object_key(user_id, document_id, kind)
        await self.bucket.put(
            key,
            data,
            http_metadata={"content_type": CONTENT_TYPES[kind]},
            custom_metadata={"userId": user_id, "memoryDocumentId": document_id},
        )
        try:
            row = await self._create(
                document_id, user_id, title or filename or UNTITLED, kind, key, None, shared, data
            )
        except BaseException:
            await self.bucket.delete(key)
            raise
        return await self._index_new(row, extracted, chunks)

    async def ingest_object(
        self,
        user_id: str,
        key: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        shared: bool = False,
        file_id: str | None = None,
    ) -> DocumentRow:
        """Index an object already in the bucket (memory never deletes it). Callers
        decide whether `user_id` may read `key`; the HTTP routes only pass uploads."""
        obj = await self.bucket.get(key)
        if obj is None:
            raise NotFound(f"no object {key!r} in the bucket")
        data = await obj.bytes()
        content_type = getattr(getattr(obj, "http_metadata", None), "content_type", None)
        name = key.rsplit("/", 1)[-1]
        kind = kind or detect_kind(data, filename=name, content_type=content_type)
        extracted, chunks = self._read(data, kind)
        row = await self._create(
            str(uuid.uuid4()), user_id, title or name, kind, key, file_id, shared, data
        )
        return await self._index_new(row, extracted, chunks)

    async def ingest_file(
        self,
        user_id: str,
        file_id: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        shared: bool = False,
    ) -> DocumentRow:
        """Index a file the user uploaded (POST /api/files/upload), by its id."""
        from ..files import store as files_store  # the files feature's public query

        row = await files_store.get_owned(self.db, file_id, user_id)
        if row is None:
            raise NotFound("file not found")
        return await self.ingest_object(
            user_id, row.key, title=title or row.name, kind=kind, shared=shared, file_id=row.id
        )

    async def resume(self, document_id: str) -> DocumentRow:
        """Continue an interrupted ingest (or delete) from its recorded progress."""
        row = await store.get_document(self.db, document_id)
        if row is None:
            raise NotFound("document not found")
        if row.status == "deleting":
            await self._delete(row)
            raise NotFound("document deleted")
        if row.status == "ready":
            return row
        if row.model != self.embedder.model_id:
            from ...platform.errors import ConfigError

            raise ConfigError(
                f"document {row.id} was being embedded with {row.model}, not "
                f"{self.embedder.model_id}: delete it and ingest it again"
            )
        if row.status == "pending":
            obj = await self.bucket.get(row.r2_key)
            if obj is None:
                raise NotFound(f"the original of document {row.id} ({row.r2_key}) is gone")
            extracted, chunks = self._read(await obj.bytes(), row.kind)
            return await self._index_new(row, extracted, chunks)
        return await self._index(row)

    async def resume_unfinished(self) -> list[DocumentRow]:
        """Resume every unfinished ingest and delete (e.g. at start-up); returns the
        documents now ready. One that fails again is logged and left for later."""
        done = []
        for row in await store.unfinished(self.db):
            try:
                done.append(await self.resume(row.id))
            except NotFound:
                continue
            except IngestInterrupted as e:
                log.warning("memory: %s", e)
        return done

    def _read(self, data: bytes, kind: str) -> tuple[Extracted, list[Chunk]]:
        extracted = extract(data, kind)
        chunks = split(
            extracted.text,
            size=self.chunk_chars,
            overlap=self.chunk_overlap,
            markdown=kind == "markdown",
        )
        if not chunks:
            raise ExtractError("empty_document", "the document has no text")
        if len(chunks) > MAX_CHUNKS:
            raise ExtractError(
                "document_too_large",
                f"the document makes {len(chunks)} chunks; at most {MAX_CHUNKS}",
            )
        return extracted, chunks

    async def _create(
        self,
        document_id: str,
        user_id: str,
        title: str,
        kind: str,
        key: str,
        file_id: str | None,
        shared: bool,
        data: bytes,
    ) -> DocumentRow:
        now = store.now_iso()
        row = DocumentRow(
            id=document_id,
            user_id=user_id,
            title=" ".join(title.split())[:MAX_TITLE_CHARS] or UNTITLED,
            kind=kind,
            r2_key=key,
            file_id=file_id,
            shared=shared,
            model=self.embedder.model_id,
            status="pending",
            size=len(data),
            chars=0,
            chunks=0,
            indexed=0,
            error=None,
            created_at=now,
            updated_at=now,
        )
        await store.insert_document(self.db, row)
        return row

    async def _index_new(
        self, row: DocumentRow, extracted: Extracted, chunks: list[Chunk]
    ) -> DocumentRow:
        try:
            pages = [extracted.page_at(c.start) for c in chunks]
            await store.clear_chunks(self.db, row.id)  # a crashed earlier attempt's rows
            await store.set_chars(self.db, row.id, len(extracted.text))
            await store.save_chunks(self.db, row.id, chunks, pages)
        except Exception as e:
            await self._note_error(row, e)
            raise IngestInterrupted(await self._reload(row), e) from e
        return await self._index(await self._reload(row))

    async def _index(self, row: DocumentRow) -> DocumentRow:
        """Embed and upsert chunks [indexed, chunks), one batch at a time."""
        position = row.indexed
        try:
            while position < row.chunks:
                stop = min(position + self.batch, row.chunks)
                chunks = await store.chunk_rows(self.db, row.id, position, stop)
                if len(chunks) != stop - position:
                    raise RuntimeError(f"document {row.id} is missing chunk rows")
                title = "" if row.title == UNTITLED else row.title
                texts = [embedding_text(_chunk(c), title) for c in chunks]
                vectors = await self.embedder.embed(texts)
                await self.index.upsert(
                    [
                        {
                            "id": c["vector_id"],
                            "values": values,
                            "metadata": self._metadata(row, c["idx"]),
                        }
                        for c, values in zip(chunks, vectors, strict=True)
                    ]
                )
                position = stop
                await store.set_progress(self.db, row.id, position, done=position >= row.chunks)
                current = await store.get_document(self.db, row.id)
                if current is None or current.status == "deleting":
                    # Deleted while we indexed: take back what this step wrote.
                    await self._delete_vectors([c["vector_id"] for c in chunks])
                    raise NotFound("document deleted during ingest")
        except NotFound:
            raise
        except Exception as e:
            await self._note_error(row, e)
            raise IngestInterrupted(await self._reload(row), e) from e
        return await self._reload(row)

    def _metadata(self, row: DocumentRow, chunk: int) -> dict[str, Any]:
        return {
            "access": "shared" if row.shared else f"user:{row.user_id}",
            "owner": row.user_id,
            "doc": row.id,
            "chunk": chunk,
            "kind": row.kind,
            "model": self.embedder.model_id,
            "r2Key": row.r2_key,
        }

    async def _note_error(self, row: DocumentRow, error: BaseException) -> None:
        log.warning("memory: ingest of %s stopped: %s", row.id, error)
        try:
            await store.set_error(self.db, row.id, f"{type(error).__name__}: {error}")
        except Exception:  # the original error matters more
            log.exception("memory: could not record the error of %s", row.id)

    async def _reload(self, row: DocumentRow) -> DocumentRow:
        return await store.get_document(self.db, row.id) or row

    # -- search

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        top_k: int = 5,
        document_ids: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        shared: bool | None = None,
    ) -> list[Match]:
        """The `top_k` chunks nearest to `query` among the documents `user_id` owns and
        the shared ones (`shared=True`: only shared ones; False: only their own),
        optionally only in `document_ids` and of `kinds`. Best first."""
        if not 1 <= top_k <= 50:
            raise ValueError("top_k must be between 1 and 50")
        access: Any = {"$in": [f"user:{user_id}", "shared"]}
        if shared is True:
            access = "shared"
        elif shared is False:
            access = f"user:{user_id}"
        where: dict[str, Any] = {"access": access, "model": self.embedder.model_id}
        if document_ids:
            where["doc"] = {"$in": list(dict.fromkeys(document_ids))}
        if kinds:
            where["kind"] = {"$in": list(dict.fromkeys(kinds))}
        (vector,) = await self.embedder.embed([query])
        # Ask for more than top_k: vectors of documents still indexing are skipped.
        found = await self.index.query(
            vector, top_k=min(MAX_TOP_K, top_k * 2), filter=where, return_metadata="none"
        )
        ids = [m.id for m in found.matches]
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _D1_IDS):
            rows |= await store.search_rows(self.db, ids[start : start + _D1_IDS], user_id)
        out = []
        for m in found.matches:
            r = rows.get(m.id)
            if r is None:
                continue
            out.append(
                Match(
                    id=m.id,
                    score=m.score,
                    text=r["text"],
                    document_id=r["document_id"],
                    chunk=r["idx"],
                    title=r["title"],
                    kind=r["kind"],
                    shared=bool(r["shared"]),
                    start=r["char_start"],
                    end=r["char_end"],
                    page=r["page"],
                    heading=r["heading"],
                    file_id=r["file_id"],
                )
            )
            if len(out) == top_k:
                break
        return out

    # -- documents

    async def get(self, user_id: str, document_id: str) -> DocumentRow:
        row = await store.get_visible(self.db, document_id, user_id)
        if row is None:
            raise NotFound("document not found")
        return row

    async def list(
        self,
        user_id: str,
        *,
        include_shared: bool = False,
        limit: int = 50,
        before: str | None = None,
    ) -> list[DocumentRow]:
        return await store.list_documents(
            self.db, user_id, include_shared=include_shared, limit=limit, before=before
        )

    async def delete(self, user_id: str, document_id: str) -> None:
        """Delete the user's document: every vector, the original if memory stored it,
        and the rows. Resumable: a document left 'deleting' is finished by the next
        delete (or `resume`)."""
        row = await store.get_document(self.db, document_id)
        if row is None or row.user_id != user_id:
            raise NotFound("document not found")
        await self._delete(row)

    async def _delete(self, row: DocumentRow) -> None:
        if row.status != "deleting":
            await store.mark_deleting(self.db, row.id)
        ids = await store.vector_ids(self.db, row.id)
        await self._delete_vectors(ids)
        if row.r2_key == object_key(row.user_id, row.id, row.kind):
            await self.bucket.delete(row.r2_key)
        await store.delete_document(self.db, row.id)

    async def _delete_vectors(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), MAX_DELETE_IDS):
            await self.index.delete_by_ids(list(ids[start : start + MAX_DELETE_IDS]))


def _chunk(row: dict[str, Any]) -> Chunk:
    return Chunk(index=row["idx"], start=0, end=0, text=row["text"], heading=row["heading"])
