-- Uploads (server/files): one row per file stored in R2.
--
-- `key` is the R2 object, `users/<user id>/uploads/<id>.<ext>`; `content_type` was
-- detected from the content; `name` is the client's file name, sanitized, for
-- display only; `etag` is R2's (MD5 hex); `created_at` is ISO-8601 UTC text with
-- milliseconds. Deleting a user deletes these rows, not the objects: remove
-- `users/<user id>/` from the bucket too.

CREATE TABLE "files" (
    "id" text NOT NULL PRIMARY KEY,
    "user_id" text NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    "key" text NOT NULL UNIQUE,
    "content_type" text NOT NULL,
    "size" integer NOT NULL CHECK ("size" >= 0),
    "name" text NOT NULL,
    "etag" text NOT NULL,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX "files_user" ON "files" ("user_id", "created_at");
