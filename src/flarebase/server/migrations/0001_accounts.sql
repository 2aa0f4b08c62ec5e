-- Accounts and sign-in.
--
-- `users`, `accounts`, `sessions` and `verification_tokens` have the columns of
-- Auth.js's D1 adapter (@auth/d1-adapter), so a front end using that adapter can
-- share this database. flarebase adds to `users`: `role` (free text; "admin"
-- gates /api/admin), `type` ('regular' or 'guest'), `password_hash` (bcrypt,
-- $2a$/$2b$/$2y$) and `created_at`. Emails compare case-insensitively and are
-- unique; guests have none.
--
-- A database whose Auth.js tables already exist: instead of this file, run
--   ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'user';
--   ALTER TABLE users ADD COLUMN type text NOT NULL DEFAULT 'regular';
--   ALTER TABLE users ADD COLUMN password_hash text DEFAULT NULL;
--   ALTER TABLE users ADD COLUMN created_at text NOT NULL DEFAULT '1970-01-01T00:00:00.000Z';
-- plus the last two tables below, and record 0001_accounts.sql in d1_migrations.

CREATE TABLE "users" (
    "id" text NOT NULL DEFAULT '',
    "name" text DEFAULT NULL,
    "email" text COLLATE NOCASE DEFAULT NULL,
    "emailVerified" datetime DEFAULT NULL,
    "image" text DEFAULT NULL,
    "role" text NOT NULL DEFAULT 'user',
    "type" text NOT NULL DEFAULT 'regular' CHECK ("type" IN ('regular', 'guest')),
    "password_hash" text DEFAULT NULL,
    "created_at" text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX "users_email" ON "users" ("email");
CREATE INDEX "users_created" ON "users" ("created_at", "id");

CREATE TABLE "accounts" (
    "id" text NOT NULL,
    "userId" text NOT NULL DEFAULT NULL,
    "type" text NOT NULL DEFAULT NULL,
    "provider" text NOT NULL DEFAULT NULL,
    "providerAccountId" text NOT NULL DEFAULT NULL,
    "refresh_token" text DEFAULT NULL,
    "access_token" text DEFAULT NULL,
    "expires_at" number DEFAULT NULL,
    "token_type" text DEFAULT NULL,
    "scope" text DEFAULT NULL,
    "id_token" text DEFAULT NULL,
    "session_state" text DEFAULT NULL,
    "oauth_token_secret" text DEFAULT NULL,
    "oauth_token" text DEFAULT NULL,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX "accounts_provider" ON "accounts" ("provider", "providerAccountId");
CREATE INDEX "accounts_user" ON "accounts" ("userId");

CREATE TABLE "sessions" (
    "id" text NOT NULL,
    "sessionToken" text NOT NULL,
    "userId" text NOT NULL DEFAULT NULL,
    "expires" datetime NOT NULL DEFAULT NULL,
    PRIMARY KEY (sessionToken)
);
CREATE INDEX "sessions_user" ON "sessions" ("userId");

CREATE TABLE "verification_tokens" (
    "identifier" text NOT NULL,
    "token" text NOT NULL DEFAULT NULL,
    "expires" datetime NOT NULL DEFAULT NULL,
    PRIMARY KEY (token)
);

-- Signed-out sessions: a token's `jti`, or the `sid` that a session's renewed
-- tokens share; refused until any token carrying it would have expired anyway.
CREATE TABLE "auth_revoked_tokens" (
    "id" text NOT NULL PRIMARY KEY,
    "expires_at" integer NOT NULL
);
CREATE INDEX "auth_revoked_tokens_expiry" ON "auth_revoked_tokens" ("expires_at");

-- Fixed-window counters for sign-in throttling and new accounts per IP (no Redis):
-- `count` events since the window opened; the window closes at `reset_at` (epoch s).
CREATE TABLE "auth_throttle" (
    "key" text NOT NULL PRIMARY KEY,
    "count" integer NOT NULL,
    "reset_at" integer NOT NULL
);
CREATE INDEX "auth_throttle_reset" ON "auth_throttle" ("reset_at");
