-- Documents with versions, and suggestions on them (server/documents).
--
-- vercel/chatbot's Document and Suggestion tables in snake_case (the API answers in
-- its camelCase JSON). Every version of a document is a row sharing `id`, told apart
-- by `created_at` (ISO-8601 UTC text with milliseconds, '2025-01-31T12:00:00.000Z',
-- which sort as they compare). A suggestion belongs to one version (`document_id`,
-- `document_created_at`) and is deleted with it. Deleting a user deletes theirs.

CREATE TABLE "documents" (
    "id" text NOT NULL,
    "created_at" text NOT NULL,
    "title" text NOT NULL,
    "content" text DEFAULT NULL,
    "kind" text NOT NULL DEFAULT 'text' CHECK ("kind" IN ('text', 'code', 'image', 'sheet')),
    "user_id" text NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    PRIMARY KEY ("id", "created_at")
);
CREATE INDEX "documents_user_created" ON "documents" ("user_id", "created_at");

CREATE TABLE "suggestions" (
    "id" text NOT NULL PRIMARY KEY,
    "document_id" text NOT NULL,
    "document_created_at" text NOT NULL,
    "original_text" text NOT NULL,
    "suggested_text" text NOT NULL,
    "description" text DEFAULT NULL,
    "is_resolved" integer NOT NULL DEFAULT 0 CHECK ("is_resolved" IN (0, 1)),
    "user_id" text NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    "created_at" text NOT NULL,
    FOREIGN KEY ("document_id", "document_created_at")
        REFERENCES "documents" ("id", "created_at") ON DELETE CASCADE
);
CREATE INDEX "suggestions_document" ON "suggestions" ("document_id", "document_created_at");
