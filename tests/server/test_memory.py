"""Vector memory over HTTP: ingest PDF and Markdown, search scoped to the owner (and
shared documents), delete with every vector, resume an interrupted ingest, and 4xx
JSON for bad input. Runs on the `server` fixture's local env (MEMORY binding) with
the default hash embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flarebase.platform.local.vectorize import get_index, list_metadata_indexes
from flarebase.server.memory import HashEmbedder, IngestInterrupted, Memory
from flarebase.server.memory.service import object_key

from .conftest import Server

# Small chunks, so that every document has several and "the right chunk" means something.
SMALL = {"MEMORY_CHUNK_CHARS": 240, "MEMORY_CHUNK_OVERLAP": 40}

HANDBOOK = [
    [
        "Employee handbook.",
        "Vacation policy. Every full-time employee receives 25 paid vacation days",
        "per calendar year. Unused vacation days carry over until March 31 of the next",
        "year. Part-time employees receive vacation days in proportion to their hours.",
    ],
    [
        "Expense reports. Submit travel expense receipts within 30 days through the",
        "finance portal. Meals are reimbursed up to 60 euros per day while travelling.",
        "Hotel bookings above 150 euros per night need approval from your manager.",
    ],
    [
        "Security. Laptops must use full-disk encryption and a screen lock. Report a",
        "lost badge or a stolen laptop to the security desk immediately, day or night.",
        "Passwords are never shared, not even with the IT helpdesk.",
    ],
]

GUIDE = """# Deployment guide

This guide explains how the backend is deployed to Cloudflare.

## Install

Install the command line tool with pip. It needs Python 3.11 or newer and a
Cloudflare account with Workers enabled.

## Database migrations

Apply the D1 database migrations with wrangler before every deployment: run
`wrangler d1 migrations apply DB --remote`. Migrations are applied in file order
and recorded in the d1_migrations table.

## Rollback

To roll back a failed release, redeploy the previous version from the dashboard
and restore the database from its Time Travel bookmark.
"""


def make_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A minimal, valid PDF written by hand: one page per list of lines (Helvetica)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        stream = "\n".join([*ops, "ET"]).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def add_file(client: TestClient, data: bytes, name: str, **fields: Any) -> Any:
    return client.post(
        "/api/memory/documents",
        files={"file": (name, data, "application/octet-stream")},
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in fields.items()},
    )


def added(client: TestClient, data: bytes, name: str, **fields: Any) -> dict[str, Any]:
    r = add_file(client, data, name, **fields)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def search(client: TestClient, query: str, **body: Any) -> list[dict[str, Any]]:
    r = client.post("/api/memory/search", json={"query": query, **body})
    assert r.status_code == 200, r.text
    return r.json()["matches"]  # type: ignore[no-any-return]


def vector_ids(server: Server, document_id: str) -> list[str]:
    rows = server.sql(
        "SELECT vector_id FROM memory_chunks WHERE document_id = ? ORDER BY idx", document_id
    )
    return [r["vector_id"] for r in rows]


def stored_vectors(server: Server, ids: Sequence[str]) -> list[Any]:
    found = []
    for start in range(0, len(ids), 20):  # get_by_ids takes 20 ids at most
        found += server.run(server.env.MEMORY.get_by_ids, list(ids[start : start + 20]))
    return found


def vector_count(server: Server) -> int:
    return server.run(server.env.MEMORY.describe).vector_count  # type: ignore[no-any-return]


def user_client(server: Server, email: str, **settings: Any) -> tuple[TestClient, str]:
    client = server.client(**SMALL, **settings)
    return client, server.sign_up(client, email)["user"]["id"]


@pytest.fixture
def alice(server: Server) -> tuple[TestClient, str]:
    return user_client(server, "alice@example.com")


@pytest.fixture
def bob(server: Server) -> tuple[TestClient, str]:
    return user_client(server, "bob@example.com")


# -- ingest and search -----------------------------------------------------------------


def test_pdf_and_markdown_are_ingested_and_the_right_chunk_is_found(
    server: Server, alice: Any
) -> None:
    client, alice_id = alice
    pdf = added(client, make_pdf(HANDBOOK), "handbook.pdf", title="Employee handbook")
    guide = added(client, GUIDE.encode(), "deploy.md")

    assert pdf["kind"] == "pdf" and guide["kind"] == "markdown"
    for doc in (pdf, guide):
        assert doc["status"] == "ready" and doc["userId"] == alice_id
        assert doc["chunks"] >= 3 and doc["indexed"] == doc["chunks"]
        assert doc["model"] == "flarebase-hash-v1-384"
    assert guide["title"] == "deploy.md" and pdf["title"] == "Employee handbook"

    top = search(client, "How many paid vacation days does an employee get per year?")[0]
    assert top["documentId"] == pdf["id"] and top["page"] == 1
    assert "25 paid vacation days" in top["text"]

    top = search(client, "What is the daily limit for meal reimbursement while travelling?")[0]
    assert top["documentId"] == pdf["id"] and top["page"] == 2
    assert "60 euros per day" in top["text"]

    top = search(client, "how do I apply the D1 database migrations with wrangler")[0]
    assert top["documentId"] == guide["id"] and top["kind"] == "markdown"
    assert top["heading"] == "Deployment guide > Database migrations"
    assert "wrangler d1 migrations apply" in top["text"]
    # The chunk's offsets point into the document's text.
    assert top["end"] - top["start"] == len(top["text"])

    # Filters: only the guide, only PDFs.
    only_guide = search(client, "vacation days", filter={"documentId": guide["id"]}, topK=10)
    assert only_guide and {m["documentId"] for m in only_guide} == {guide["id"]}
    only_pdf = search(client, "migrations", filter={"kind": ["pdf"]}, topK=10)
    assert only_pdf and {m["kind"] for m in only_pdf} == {"pdf"}

    listed = client.get("/api/memory/documents").json()["documents"]
    assert [d["id"] for d in listed] == [guide["id"], pdf["id"]]  # newest first
    # The original is in R2, linked from the row and from every vector's metadata.
    key = object_key(alice_id, pdf["id"], "pdf")
    assert server.run(server.env.BUCKET.head, key) is not None
    vectors = stored_vectors(server, vector_ids(server, pdf["id"]))
    assert len(vectors) == pdf["chunks"]
    assert {v.metadata["r2Key"] for v in vectors} == {key}
    assert {v.metadata["doc"] for v in vectors} == {pdf["id"]}
    assert sorted(v.metadata["chunk"] for v in vectors) == list(range(pdf["chunks"]))
    assert {v.metadata["owner"] for v in vectors} == {alice_id}
    assert {v.metadata["model"] for v in vectors} == {"flarebase-hash-v1-384"}


def test_inline_text_and_uploaded_files_can_be_ingested(server: Server) -> None:
    client, _alice_id = user_client(
        server, "alice@example.com", UPLOAD_ALLOWED_TYPES="application/pdf"
    )
    r = client.post(
        "/api/memory/documents",
        json={"text": GUIDE, "kind": "markdown", "title": "Guide"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "markdown" and r.json()["title"] == "Guide"

    uploaded = client.post(
        "/api/files/upload", files={"file": ("hb.pdf", make_pdf(HANDBOOK), "application/pdf")}
    ).json()
    r = client.post("/api/memory/documents", json={"fileId": uploaded["id"]})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["fileId"] == uploaded["id"] and doc["kind"] == "pdf" and doc["title"] == "hb.pdf"
    top = search(client, "lost badge security desk")[0]
    assert top["documentId"] == doc["id"] and top["fileId"] == uploaded["id"]
    # The vectors point at the upload's own object; deleting the memory document
    # leaves the upload alone.
    vectors = stored_vectors(server, vector_ids(server, doc["id"]))
    assert {v.metadata["r2Key"] for v in vectors} == {uploaded["pathname"]}
    assert client.delete(f"/api/memory/documents/{doc['id']}").status_code == 204
    assert server.run(server.env.BUCKET.head, uploaded["pathname"]) is not None
    assert client.get(f"/api/files/{uploaded['id']}").status_code == 200


# -- scoping ------------------------------------------------------------------------------


def test_another_users_search_never_returns_your_chunks(
    server: Server, alice: Any, bob: Any
) -> None:
    alice_client, alice_id = alice
    bob_client, bob_id = bob
    pdf = added(alice_client, make_pdf(HANDBOOK), "handbook.pdf")
    guide = added(alice_client, GUIDE.encode(), "deploy.md")
    mine = added(bob_client, b"Bob's notes: the vacation cabin is booked for July.", "bob.txt")
    alice_ids = set(vector_ids(server, pdf["id"]) + vector_ids(server, guide["id"]))

    queries = [
        "How many paid vacation days does an employee get per year?",
        "wrangler d1 migrations apply",
        HANDBOOK[1][1],  # word for word a line of Alice's PDF
    ]
    for query in queries:
        found = search(bob_client, query, topK=50)
        assert not alice_ids & {m["id"] for m in found}
        assert {m["documentId"] for m in found} <= {mine["id"]}
        # Not even by naming Alice's document.
        assert search(bob_client, query, filter={"documentId": [pdf["id"], guide["id"]]}) == []
        assert search(bob_client, query, filter={"shared": True}) == []
    # Bob's own document is found by him, never by Alice.
    assert search(bob_client, "vacation cabin July")[0]["documentId"] == mine["id"]
    assert mine["id"] not in {m["documentId"] for m in search(alice_client, "cabin", topK=50)}

    for path in (f"/api/memory/documents/{pdf['id']}", f"/api/memory/documents/{guide['id']}"):
        assert bob_client.get(path).status_code == 404
        r = bob_client.delete(path)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert bob_client.post(path + "/resume").status_code == 404
    assert [d["id"] for d in bob_client.get("/api/memory/documents").json()["documents"]] == [
        mine["id"]
    ]
    # Bob's requests changed nothing of Alice's; her vectors are scoped to her.
    kept = stored_vectors(server, sorted(alice_ids))
    assert len(kept) == len(alice_ids)
    assert {v.metadata["access"] for v in kept} == {f"user:{alice_id}"}

    # Both layers hold on their own: Vectorize itself, asked with Bob's scope, has
    # none of Alice's vectors (D1 checks the same again before any text is returned).
    vector = HashEmbedder().vector(HANDBOOK[1][1]).tolist()
    scoped = server.run(
        lambda: server.env.MEMORY.query(
            vector, top_k=100, filter={"access": {"$in": [f"user:{bob_id}", "shared"]}}
        )
    )
    assert scoped.matches and not alice_ids & {m.id for m in scoped.matches}
    unscoped = server.run(lambda: server.env.MEMORY.query(vector, top_k=100))
    assert alice_ids <= {m.id for m in unscoped.matches}


def test_the_vectorize_query_itself_is_scoped(server: Server, alice: Any, bob: Any) -> None:
    """Not only D1's check: what Vectorize answers to Bob's search holds none of
    Alice's vectors, whatever the filter asked for."""
    alice_client, _ = alice
    _, bob_id = bob
    pdf = added(alice_client, make_pdf(HANDBOOK), "handbook.pdf")
    alice_ids = set(vector_ids(server, pdf["id"]))
    answered: list[str] = []
    index = server.env.MEMORY

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        async def query(self, *args: Any, **kwargs: Any) -> Any:
            found = await index.query(*args, **kwargs)
            answered.extend(m.id for m in found.matches)
            return found

    memory = memory_for(server, HashEmbedder(), batch=10)
    memory.index = Recording()
    for options in ({}, {"document_ids": [pdf["id"]]}, {"kinds": ["pdf"]}, {"shared": True}):
        assert server.run(lambda o=options: memory.search(bob_id, HANDBOOK[0][1], **o)) == []
    assert not alice_ids & set(answered)


def test_shared_documents_are_searchable_by_everyone_but_only_admins_share(
    server: Server, alice: Any, bob: Any
) -> None:
    alice_client, alice_id = alice
    bob_client, _ = bob
    r = add_file(alice_client, GUIDE.encode(), "deploy.md", shared=True)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    server.make_admin(alice_id)
    shared = added(alice_client, GUIDE.encode(), "deploy.md", shared=True)
    assert shared["shared"] is True

    top = search(bob_client, "database migrations wrangler")[0]
    assert top["documentId"] == shared["id"] and top["shared"] is True
    assert search(bob_client, "database migrations", filter={"shared": False}) == []
    assert bob_client.get(f"/api/memory/documents/{shared['id']}").status_code == 200
    listed = bob_client.get("/api/memory/documents", params={"shared": "true"}).json()
    assert [d["id"] for d in listed["documents"]] == [shared["id"]]
    assert bob_client.get("/api/memory/documents").json()["documents"] == []
    # Bob may read it, not delete it.
    assert bob_client.delete(f"/api/memory/documents/{shared['id']}").status_code == 404
    assert search(bob_client, "database migrations wrangler")[0]["documentId"] == shared["id"]


# -- delete ------------------------------------------------------------------------------


def test_deleting_a_document_removes_every_vector(server: Server, alice: Any) -> None:
    client, alice_id = alice
    pdf = added(client, make_pdf(HANDBOOK), "handbook.pdf")
    guide = added(client, GUIDE.encode(), "deploy.md")
    ids = vector_ids(server, pdf["id"])
    assert len(ids) == pdf["chunks"] and len(stored_vectors(server, ids)) == len(ids)
    assert vector_count(server) == pdf["chunks"] + guide["chunks"]

    r = client.delete(f"/api/memory/documents/{pdf['id']}")
    assert r.status_code == 204
    assert stored_vectors(server, ids) == []
    assert vector_count(server) == guide["chunks"]
    assert server.sql("SELECT * FROM memory_chunks WHERE document_id = ?", pdf["id"]) == []
    assert server.sql("SELECT * FROM memory_documents WHERE id = ?", pdf["id"]) == []
    key = object_key(alice_id, pdf["id"], "pdf")
    assert server.run(server.env.BUCKET.head, key) is None
    assert all(m["documentId"] == guide["id"] for m in search(client, "vacation days", topK=20))
    assert client.get(f"/api/memory/documents/{pdf['id']}").status_code == 404
    assert client.delete(f"/api/memory/documents/{pdf['id']}").status_code == 404


def test_a_document_of_more_than_100_chunks_is_deleted_in_batches(
    server: Server, alice: Any
) -> None:
    client, _ = alice
    text = "\n\n".join(f"Paragraph {i} talks about topic number {i} at length." for i in range(600))
    doc = client.post("/api/memory/documents", json={"text": text}).json()
    assert doc["chunks"] > 100  # delete_by_ids takes 100 ids per call
    assert vector_count(server) == doc["chunks"]
    assert client.delete(f"/api/memory/documents/{doc['id']}").status_code == 204
    assert vector_count(server) == 0


# -- resume ------------------------------------------------------------------------------


class FlakyEmbedder:
    """The hash embedder, failing once `fail_after` calls have succeeded (as an
    embedding API that goes down mid-ingest would); records every text embedded."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.inner = HashEmbedder()
        self.fail_after = fail_after
        self.calls = 0
        self.texts: list[str] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            from flarebase.server.memory import EmbeddingError

            raise EmbeddingError("503 from the provider, 5 times", status=503, retryable=True)
        self.calls += 1
        self.texts += list(texts)
        return await self.inner.embed(texts)


def memory_for(server: Server, embedder: Any, batch: int) -> Memory:
    env = server.env
    return Memory(
        db=env.DB,
        index=env.MEMORY,
        bucket=env.BUCKET,
        embedder=embedder,
        chunk_chars=240,
        chunk_overlap=40,
        batch=batch,
    )


def test_an_interrupted_ingest_resumes_where_it_stopped(server: Server, alice: Any) -> None:
    client, alice_id = alice
    server.run(memory_for(server, HashEmbedder(), 4).prepare)
    flaky = FlakyEmbedder(fail_after=2)  # two batches of 4 chunks, then the API is down
    memory = memory_for(server, flaky, batch=4)
    data = make_pdf(HANDBOOK * 2)

    with pytest.raises(IngestInterrupted) as stopped:
        server.run(lambda: memory.ingest(alice_id, data, filename="handbook.pdf"))
    doc = stopped.value.document
    assert doc.status == "indexing" and doc.indexed == 8 and doc.chunks > 8
    assert "503 from the provider" in (doc.error or "")
    ids = vector_ids(server, doc.id)
    assert len(stored_vectors(server, ids[:8])) == 8 and stored_vectors(server, ids[8:]) == []
    # Not searchable until it is ready; listed with its progress.
    assert search(client, "vacation days") == []
    listed = client.get("/api/memory/documents").json()["documents"]
    assert [(d["id"], d["status"], d["indexed"]) for d in listed] == [(doc.id, "indexing", 8)]

    # The API is back: the resume embeds only the chunks that had no vector yet.
    working = FlakyEmbedder()
    done = server.run(memory_for(server, working, batch=4).resume, doc.id)
    assert done.status == "ready" and done.indexed == done.chunks and done.error is None
    assert len(working.texts) == doc.chunks - 8
    assert len(stored_vectors(server, ids)) == doc.chunks == vector_count(server)
    assert search(client, "How many paid vacation days per year?")[0]["documentId"] == doc.id


def test_resume_over_http_and_after_a_crash_between_upsert_and_progress(
    server: Server, alice: Any
) -> None:
    client, alice_id = alice
    memory = memory_for(server, FlakyEmbedder(fail_after=1), batch=1)
    server.run(memory.prepare)
    with pytest.raises(IngestInterrupted) as stopped:
        server.run(lambda: memory.ingest(alice_id, GUIDE.encode(), kind="markdown"))
    doc = stopped.value.document
    assert doc.indexed == 1 and doc.chunks == 3
    # A crash after the next upserts but before their progress was recorded: vectors
    # of chunks 1.. exist, `indexed` still says 1. Resuming writes them again (same
    # ids), so nothing is duplicated.
    ids = vector_ids(server, doc.id)
    first = stored_vectors(server, ids[:1])[0]
    server.run(
        server.env.MEMORY.upsert,
        [{"id": i, "values": first.values, "metadata": first.metadata} for i in ids[1:]],
    )
    assert vector_count(server) == len(ids)
    r = client.post(f"/api/memory/documents/{doc.id}/resume")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready" and r.json()["indexed"] == len(ids)
    assert vector_count(server) == len(ids)
    # The rewritten vectors are the real ones again, not the stand-ins.
    for vector in stored_vectors(server, ids[1:]):
        assert vector.metadata["chunk"] == int(vector.id.rsplit(":", 1)[1])
    assert client.post(f"/api/memory/documents/{doc.id}/resume").json()["status"] == "ready"


def test_an_ingest_that_fails_over_http_answers_with_the_resumable_document(
    server: Server, alice: Any
) -> None:
    client, _ = alice
    app_client = server.client(**SMALL)
    app_client.cookies = client.cookies
    # Swap the app's embedder for one that fails at once.
    from flarebase.server.memory.routes import _state

    _state(app_client.app).embedder = FlakyEmbedder(fail_after=0)  # type: ignore[attr-defined]
    r = app_client.post("/api/memory/documents", json={"text": GUIDE, "kind": "markdown"})
    assert r.status_code == 503 and r.json()["code"] == "ingest_interrupted"
    document = r.json()["document"]
    assert document["status"] == "indexing" and document["indexed"] == 0
    assert "/resume" in r.json()["message"]
    r = client.post(f"/api/memory/documents/{document['id']}/resume")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_unfinished_ingests_and_deletes_are_finished_later(server: Server, alice: Any) -> None:
    client, alice_id = alice
    memory = memory_for(server, FlakyEmbedder(fail_after=0), batch=2)
    server.run(memory.prepare)
    stopped = []
    for text in (GUIDE, "A short note about vacation days."):
        with pytest.raises(IngestInterrupted) as e:
            server.run(lambda t=text: memory.ingest(alice_id, t.encode(), kind="markdown"))
        stopped.append(e.value.document.id)
    done = server.run(memory_for(server, HashEmbedder(), batch=2).resume_unfinished)
    assert sorted(d.id for d in done) == sorted(stopped)
    assert all(d.status == "ready" for d in done)

    # A delete that died after some vectors went: the document stays hidden
    # ('deleting') and the next DELETE finishes the job.
    doc_id = stopped[0]
    ids = vector_ids(server, doc_id)
    server.sql("UPDATE memory_documents SET status = 'deleting' WHERE id = ?", doc_id)
    server.run(server.env.MEMORY.delete_by_ids, ids[:1])
    assert doc_id not in {d["id"] for d in client.get("/api/memory/documents").json()["documents"]}
    assert client.get(f"/api/memory/documents/{doc_id}").status_code == 404
    assert client.delete(f"/api/memory/documents/{doc_id}").status_code == 204
    assert stored_vectors(server, ids) == []
    assert server.sql("SELECT id FROM memory_documents WHERE id = ?", doc_id) == []


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_gets_4xx_json(server: Server, alice: Any) -> None:
    client, _ = alice

    def refused(r: Any, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.json()["code"] == code and isinstance(r.json()["message"], str)

    refused(add_file(client, b"%PDF-1.7\n garbage", "x.pdf"), 422, "invalid_pdf")
    refused(add_file(client, make_pdf([[]]), "blank.pdf"), 422, "no_text")
    refused(
        add_file(client, b"\x89PNG\r\n\x1a\n" + bytes(100), "x.png"),
        415,
        "unsupported_document_type",
    )
    refused(add_file(client, "caf\xe9".encode("latin-1"), "x.txt"), 422, "invalid_text")
    refused(add_file(client, b"   \n\n  ", "empty.txt"), 422, "empty_document")
    refused(add_file(client, b"text", "x.txt", kind="spreadsheet"), 422, "invalid_request")
    refused(add_file(client, b"text", "x.txt", shared="maybe"), 422, "invalid_request")
    r = client.post("/api/memory/documents", files={"other": ("x", b"y")})
    refused(r, 422, "invalid_request")
    assert r.json()["fields"][0]["field"] == "body.file"
    refused(client.post("/api/memory/documents", json={}), 422, "invalid_request")
    refused(
        client.post("/api/memory/documents", json={"text": "a", "fileId": "b"}),
        422,
        "invalid_request",
    )
    refused(
        client.post("/api/memory/documents", json={"text": "a", "kind": "pdf"}),
        422,
        "invalid_request",
    )
    refused(
        client.post("/api/memory/documents", json={"text": "a", "extra": 1}), 422, "invalid_request"
    )
    refused(
        client.post(
            "/api/memory/documents",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        422,
        "invalid_request",
    )
    refused(client.post("/api/memory/documents", json={"fileId": "nope"}), 404, "not_found")
    refused(
        client.post(
            "/api/memory/documents", content=b"text", headers={"content-type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    refused(client.post("/api/memory/search", json={"query": ""}), 422, "invalid_request")
    refused(
        client.post("/api/memory/search", json={"query": "x", "topK": 51}), 422, "invalid_request"
    )
    refused(
        client.post("/api/memory/search", json={"query": "x", "filter": {"owner": "someone"}}),
        422,
        "invalid_request",
    )
    refused(
        client.post("/api/memory/search", json={"query": "x", "filter": {"documentId": "a b"}}),
        422,
        "invalid_request",
    )
    too_many = [f"id{i}" for i in range(21)]
    refused(
        client.post("/api/memory/search", json={"query": "x", "filter": {"documentId": too_many}}),
        422,
        "invalid_request",
    )
    refused(client.get("/api/memory/documents/unknown"), 404, "not_found")
    refused(client.get("/api/memory/documents", params={"limit": 0}), 422, "invalid_request")

    small = server.client(MEMORY_MAX_BYTES=100)
    small.cookies = client.cookies
    refused(add_file(small, b"x" * 101, "big.txt"), 413, "document_too_large")
    refused(
        small.post("/api/memory/documents", json={"text": "y" * 101}), 413, "document_too_large"
    )

    guest = server.client()
    assert guest.post("/api/auth/guest").status_code == 201
    refused(add_file(guest, b"hello", "x.txt"), 403, "guest_not_allowed")
    assert guest.post("/api/memory/search", json={"query": "x"}).status_code == 200
    anonymous = server.client()
    refused(anonymous.post("/api/memory/search", json={"query": "x"}), 401, "unauthorized")
    refused(anonymous.get("/api/memory/documents"), 401, "unauthorized")
    # Nothing was stored by any refused request.
    assert server.sql("SELECT id FROM memory_documents") == []
    assert vector_count(server) == 0


# -- the index -----------------------------------------------------------------------------


def test_the_local_index_is_created_with_the_embedders_dimensions(
    server: Server, alice: Any, tmp_path: Any
) -> None:
    client, _ = alice
    assert client.get("/api/memory/documents").status_code == 200
    state = tmp_path / "state"
    info = get_index(state, "memory")
    assert (info.config.dimensions, info.config.metric) == (384, "cosine")
    indexes = {m.property_name: m.index_type for m in list_metadata_indexes(state, "memory")}
    assert indexes == {"access": "string", "doc": "string", "kind": "string", "model": "string"}
    assert server.sql("SELECT binding, model, dimensions FROM memory_indexes") == [
        {"binding": "MEMORY", "model": "flarebase-hash-v1-384", "dimensions": 384}
    ]


def test_the_server_prepares_the_index_at_start(server: Server, tmp_path: Any) -> None:
    """The start-up step (the app's lifespan, as `flarebase dev` runs it) creates the
    local index; a configuration that does not fit it stops the start."""
    from flarebase.platform.errors import ConfigError, VectorizeError
    from flarebase.server import create_app

    state = tmp_path / "state"
    with pytest.raises(VectorizeError):
        get_index(state, "memory")

    async def start(app: Any) -> None:
        async with app.router.lifespan_context(app):
            pass

    server.run(start, create_app(server.env, server.settings()))
    assert get_index(state, "memory").config.dimensions == 384
    assert len(list_metadata_indexes(state, "memory")) == 4
    wrong = create_app(server.env, server.settings(MEMORY_EMBEDDING_DIMENSIONS=768))
    with pytest.raises(ConfigError, match="768"):
        server.run(start, wrong)


def test_an_index_of_other_dimensions_or_another_models_documents_is_refused(
    server: Server, alice: Any
) -> None:
    client, _ = alice
    doc = added(client, GUIDE.encode(), "deploy.md")
    other = server.client(MEMORY_EMBEDDING_DIMENSIONS=256)
    other.cookies = client.cookies
    r = other.post("/api/memory/search", json={"query": "x"})
    assert r.status_code == 503 and r.json()["code"] == "memory_unavailable"
    assert "384 dimensions" in r.json()["message"] and "256" in r.json()["message"]

    class SameSizeOtherModel(FlakyEmbedder):
        @property
        def model_id(self) -> str:
            return "another-model-384"

    from flarebase.platform.errors import ConfigError

    other_model = memory_for(server, SameSizeOtherModel(), batch=10)
    with pytest.raises(ConfigError, match="not comparable"):
        server.run(other_model.prepare)
    # With the old model's documents gone, the index may change model.
    assert client.delete(f"/api/memory/documents/{doc['id']}").status_code == 204
    server.run(other_model.prepare)
    assert server.sql("SELECT model FROM memory_indexes") == [{"model": "another-model-384"}]


def test_embeddings_are_cached_in_kv(server: Server, alice: Any) -> None:
    _client, alice_id = alice
    from flarebase.server.memory import CachedEmbedder

    counting = FlakyEmbedder()
    memory = memory_for(server, CachedEmbedder(counting, server.env.KV), batch=50)
    server.run(memory.prepare)
    first = server.run(lambda: memory.ingest(alice_id, GUIDE.encode(), kind="markdown"))
    embedded = len(counting.texts)
    assert embedded == first.chunks
    second = server.run(lambda: memory.ingest(alice_id, GUIDE.encode(), kind="markdown"))
    assert len(counting.texts) == embedded  # every chunk came from the cache
    keys = server.run(server.env.KV.list, "embeddings:").keys
    assert len(keys) == first.chunks
    v1 = stored_vectors(server, vector_ids(server, first.id)[:1])[0].values
    v2 = stored_vectors(server, vector_ids(server, second.id)[:1])[0].values
    assert v1 == v2


def test_listing_pages_with_a_cursor(server: Server, alice: Any) -> None:
    client, _ = alice
    ids = [
        client.post("/api/memory/documents", json={"text": f"note number {i}"}).json()["id"]
        for i in range(5)
    ]
    page = client.get("/api/memory/documents", params={"limit": 2}).json()
    seen = [d["id"] for d in page["documents"]]
    while page["nextCursor"]:
        page = client.get(
            "/api/memory/documents", params={"limit": 2, "cursor": page["nextCursor"]}
        ).json()
        seen += [d["id"] for d in page["documents"]]
    assert seen == ids[::-1]


def test_large_ingests_write_within_vectorizes_batch_limit(server: Server, alice: Any) -> None:
    _client, alice_id = alice
    batches: list[int] = []
    index = server.env.MEMORY

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(index, name)

        async def upsert(self, vectors: Any) -> Any:
            batches.append(len(vectors))
            return await index.upsert(vectors)

    memory = memory_for(server, HashEmbedder(), batch=1000)
    server.run(memory.prepare)
    memory.index = Spy()
    text = "\n\n".join(f"Section {i}: a sentence about item {i}." for i in range(6000))
    doc = server.run(lambda: memory.ingest(alice_id, text.encode()))
    assert doc.chunks > 1000 and max(batches) == 1000 and sum(batches) == doc.chunks
    assert vector_count(server) == doc.chunks
