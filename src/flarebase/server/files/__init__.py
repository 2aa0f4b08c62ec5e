"""Uploads to R2.

Routes
------
POST   /api/files/upload        multipart, field `file`; signed-in regular users (guests
                                get 403 `guest_not_allowed`, as in vercel/chatbot).
                                201 `{id, url, downloadUrl, pathname, contentType,
                                contentDisposition, size, name, createdAt}`.
GET    /api/files/{id}          the file, streamed, to its owner; or to anyone with
                                `?exp=&sig=` from /share until it expires. `Range`
                                (206 / 416), `If-Range`, `ETag` + `If-None-Match` (304),
                                `?download=1` for an attachment.
POST   /api/files/{id}/share    `{expiresIn?}` -> `{url, expiresAt, expiresIn}`.
DELETE /api/files/{id}          204.

Another user's file is 404 on every route, exactly as a missing one.

Rules
-----
- Size: UPLOAD_MAX_BYTES (default 5 MB), counted as the body streams in; past it the
  request is refused at once with 413 `file_too_large`.
- Type: detected from the first bytes (sniff.py), never from the client's name or
  Content-Type, and must be one of UPLOAD_ALLOWED_TYPES (default JPEG, PNG, GIF,
  WebP); otherwise 415 `unsupported_file_type`. The detected type is the one stored
  and served (with `X-Content-Type-Options: nosniff`).
- Key: `users/<user id>/uploads/<uuid>.<ext>`, `ext` from the detected type. The
  client's file name is kept, sanitized, only as a display name (`name`).
- Metadata: one row in D1 `files` (0003_files.sql); the object is stored first and
  removed again if the row cannot be written, so no acknowledged upload is lost and
  no object is left that nobody can reach.
- Signed links: HMAC-SHA256 over `<id>.<exp>` with a key derived from AUTH_SECRET
  (links.py); FILE_URL_TTL by default, at most FILE_URL_MAX_TTL.

For other features (e.g. chat attachments read server-side): `store.get_owned(db,
file_id, user_id)` gives the row, whose `key` is the object in `env.BUCKET`.
"""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
