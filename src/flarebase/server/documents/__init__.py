"""Documents with versions, and suggestions on them (vercel/chatbot's artifacts).

Routes (signed-in users, regular or guest; JSON in vercel/chatbot's shapes)
------
GET    /api/document?id=                  every version, oldest first
POST   /api/document?id=  {title, content, kind}   a new version (201); the first
                                          creates the document
DELETE /api/document?id=&timestamp=       the versions created after `timestamp`
                                          (and their suggestions) -> the deleted
                                          versions; without `timestamp`, all of them
GET    /api/suggestions?documentId=       the document's suggestions

`kind` is text | code | image | sheet. A document (all its versions) belongs to the
user who created it: for anyone else every route answers 404, as for a missing one.
Versions are stamped with millisecond ISO times, strictly increasing per document.

For other features (e.g. a chat tool that writes documents or suggestions):
`store.save_version`, `store.versions`, `store.save_suggestions` (tables in
0005_documents.sql: vercel/chatbot's Document and Suggestion in snake_case).
"""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
