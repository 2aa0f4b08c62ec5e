"""Vector memory (RAG): documents in D1 + R2, their chunks' vectors in Vectorize.

Routes
------
POST   /api/memory/documents              add a document (regular users): multipart
                                          field `file` (text, Markdown or PDF; plus
                                          `title`, `kind`, `shared`), or JSON `{text}`
                                          or `{fileId}` (an upload of /api/files).
                                          201 with the document, `status: ready`.
GET    /api/memory/documents              the user's documents (`?shared=true` adds
                                          shared ones), newest first, `limit`/`cursor`.
GET    /api/memory/documents/{id}         one (its status and indexing progress).
DELETE /api/memory/documents/{id}         204; the document and every vector of it.
POST   /api/memory/documents/{id}/resume  continue an interrupted ingest.
POST   /api/memory/search                 `{query, topK (1-50, default 5), filter:
                                          {documentId, kind, shared}}` -> `{matches:
                                          [{id, score, text, documentId, chunk, title,
                                          kind, shared, start, end, page, heading,
                                          fileId}], model}`, best first.

A user sees their own documents and shared ones, never another user's (the
Vectorize query is filtered on `access IN (user:<id>, shared)`, and D1 checks it
again). Only admins may add `shared` documents. Bad input answers 4xx JSON
(`invalid_pdf`, `encrypted_pdf`, `no_text`, `invalid_text`, `empty_document`: 422;
`unsupported_document_type`: 415; `document_too_large`: 413).

Set-up
------
wrangler.toml needs a Vectorize binding (MEMORY_BINDING, default `MEMORY`):

    [[vectorize]]
    binding = "MEMORY"
    index_name = "flarebase-memory"

On the embedded provider the index is created when the server starts (or on the
first memory request), with the embedder's dimensions, cosine, and the metadata
indexes memory filters on; on Cloudflare create them with wrangler (index.py lists
the commands). The embedder is MEMORY_EMBEDDINGS: `hash` by default (lexical only,
see embeddings.py), `workers-ai`, `openai`, or `minilm` (a real model on this
machine, minilm.py). Embeddings are cached in the KV binding `KV` when there is one.
An index holds one model's vectors: switching models while documents of the old
one exist is refused (503 `memory_unavailable` naming both).

Library: `service.Memory` does all of it for any env; `embeddings` has the
providers; `flarebase.integrations.langchain` wraps an index as a LangChain
VectorStore.
"""

from __future__ import annotations

from .embeddings import (
    CachedEmbedder,
    Embedder,
    EmbeddingError,
    HashEmbedder,
    OpenAIEmbedder,
    WorkersAIEmbedder,
)
from .routes import router
from .service import IngestInterrupted, Match, Memory, NotFound

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingError",
    "HashEmbedder",
    "IngestInterrupted",
    "Match",
    "Memory",
    "NotFound",
    "OpenAIEmbedder",
    "WorkersAIEmbedder",
    "router",
]
