-- Chats, messages, votes and streams.
--
-- vercel/chatbot's Chat, Message, Vote and Stream tables in snake_case. Times are
-- ISO-8601 UTC text with milliseconds ('2025-01-31T12:00:00.000Z'), which sort as
-- they compare. Deleting a chat deletes its messages, votes and stream records.
--
-- chats.status is the outcome of the chat's latest response: 'ready' (none yet, or it
-- completed), 'streaming', 'stopped' (POST /api/chat/{id}/stop), 'error' (the model
-- provider failed; streams.error says why) or 'interrupted' (the server stopped while
-- it was streaming; what was streamed is kept).
--
-- messages.parts is the UI message's parts as JSON. A message whose parts would pass
-- D1's 2,000,000-byte row limit keeps its largest parts in R2 (under
-- chats/<chat id>/messages/<message id>/) and, in their place, small stubs
-- {"type": ..., "flarebase_r2": {"key": ..., "bytes": ...}}; parts_in_r2 is then 1.
-- The API reads them back transparently.

CREATE TABLE "chats" (
    "id" text NOT NULL PRIMARY KEY,
    "user_id" text NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    "title" text NOT NULL,
    "visibility" text NOT NULL DEFAULT 'private' CHECK ("visibility" IN ('public', 'private')),
    "model" text DEFAULT NULL,
    "status" text NOT NULL DEFAULT 'ready'
        CHECK ("status" IN ('ready', 'streaming', 'stopped', 'error', 'interrupted')),
    "created_at" text NOT NULL,
    "updated_at" text NOT NULL
);
-- History: a user's chats, newest first, with (created_at, id) cursors.
CREATE INDEX "chats_user_created" ON "chats" ("user_id", "created_at", "id");

CREATE TABLE "messages" (
    "id" text NOT NULL PRIMARY KEY,
    "chat_id" text NOT NULL REFERENCES "chats" ("id") ON DELETE CASCADE,
    "role" text NOT NULL CHECK ("role" IN ('user', 'assistant', 'system')),
    "parts" text NOT NULL,
    "attachments" text NOT NULL DEFAULT '[]',
    "metadata" text DEFAULT NULL,
    "parts_in_r2" integer NOT NULL DEFAULT 0,
    "created_at" text NOT NULL
);
CREATE INDEX "messages_chat_created" ON "messages" ("chat_id", "created_at", "id");

CREATE TABLE "votes" (
    "chat_id" text NOT NULL REFERENCES "chats" ("id") ON DELETE CASCADE,
    "message_id" text NOT NULL REFERENCES "messages" ("id") ON DELETE CASCADE,
    "is_upvoted" integer NOT NULL CHECK ("is_upvoted" IN (0, 1)),
    PRIMARY KEY ("chat_id", "message_id")
);
CREATE INDEX "votes_message" ON "votes" ("message_id");

-- One row per response stream; the chunks themselves live in the chat's Durable Object
-- (ChatStream) until they expire.
CREATE TABLE "streams" (
    "id" text NOT NULL PRIMARY KEY,
    "chat_id" text NOT NULL REFERENCES "chats" ("id") ON DELETE CASCADE,
    "message_id" text NOT NULL,
    "status" text NOT NULL DEFAULT 'streaming'
        CHECK ("status" IN ('streaming', 'completed', 'stopped', 'error', 'interrupted')),
    "error" text DEFAULT NULL,
    "created_at" text NOT NULL,
    "finished_at" text DEFAULT NULL
);
CREATE INDEX "streams_chat_created" ON "streams" ("chat_id", "created_at");
