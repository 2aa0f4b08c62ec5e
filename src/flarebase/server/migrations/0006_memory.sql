-- Vector memory (server/memory): documents, their chunks, and which model an index holds.
--
-- A document's original is in R2 (`r2_key`: users/<user id>/memory/<id>.<ext>, or the
-- object of an uploaded file, `file_id`). Its text is cut into chunks, one row each
-- with the Vectorize id of its vector (`<document id>:<index>`), so the vectors can be
-- deleted with the document (the binding has no delete by filter). `status`:
--   'pending'   the row exists; no chunk yet (the text is extracted from r2_key again);
--   'indexing'  every chunk row exists; chunks [0, indexed) have their vectors;
--   'ready'     every chunk has its vector;
--   'deleting'  vectors are being deleted (the row goes when they are gone).
-- An interrupted ingest resumes from `indexed` (vector upserts are idempotent).
-- `shared` documents are searchable by every user. Times are ISO-8601 UTC text with
-- milliseconds. Deleting a user deletes these rows, not the vectors or objects.

CREATE TABLE "memory_documents" (
    "id" text NOT NULL PRIMARY KEY,
    "user_id" text NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    "title" text NOT NULL,
    "kind" text NOT NULL CHECK ("kind" IN ('text', 'markdown', 'pdf')),
    "r2_key" text NOT NULL,
    "file_id" text DEFAULT NULL,
    "shared" integer NOT NULL DEFAULT 0 CHECK ("shared" IN (0, 1)),
    "model" text NOT NULL,
    "status" text NOT NULL DEFAULT 'pending'
        CHECK ("status" IN ('pending', 'indexing', 'ready', 'deleting')),
    "size" integer NOT NULL CHECK ("size" >= 0),
    "chars" integer NOT NULL DEFAULT 0,
    "chunks" integer NOT NULL DEFAULT 0,
    "indexed" integer NOT NULL DEFAULT 0,
    "error" text DEFAULT NULL,
    "created_at" text NOT NULL,
    "updated_at" text NOT NULL
);
CREATE INDEX "memory_documents_user" ON "memory_documents" ("user_id", "created_at");
CREATE INDEX "memory_documents_status" ON "memory_documents" ("status");

CREATE TABLE "memory_chunks" (
    "document_id" text NOT NULL REFERENCES "memory_documents" ("id") ON DELETE CASCADE,
    "idx" integer NOT NULL,
    "vector_id" text NOT NULL UNIQUE,
    "char_start" integer NOT NULL,
    "char_end" integer NOT NULL,
    "page" integer DEFAULT NULL,
    "heading" text NOT NULL DEFAULT '',
    "text" text NOT NULL,
    PRIMARY KEY ("document_id", "idx")
);

-- One row per Vectorize binding used for memory: the embedding model its vectors come
-- from. flarebase refuses to write or search with another model while any document
-- of this one exists (vectors of different models are not comparable).
CREATE TABLE "memory_indexes" (
    "binding" text NOT NULL PRIMARY KEY,
    "model" text NOT NULL,
    "dimensions" integer NOT NULL,
    "updated_at" text NOT NULL
);
