"""Documents with versions and suggestions (vercel/chatbot's /api/document and
/api/suggestions), and that another user can never read, change or delete them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from flarebase.server.documents import store
from flarebase.server.documents.store import Suggestion

from .conftest import Server

DOC = "3f2c6a1e-0000-4000-8000-000000000001"


@pytest.fixture
def alice(server: Server) -> tuple[TestClient, str]:
    client = server.client()
    return client, server.sign_up(client, "alice@example.com")["user"]["id"]


@pytest.fixture
def bob(server: Server) -> tuple[TestClient, str]:
    client = server.client()
    return client, server.sign_up(client, "bob@example.com")["user"]["id"]


def save(client: TestClient, title: str = "Essay", content: str = "v", kind: str = "text") -> Any:
    r = client.post(
        "/api/document", params={"id": DOC}, json={"title": title, "content": content, "kind": kind}
    )
    assert r.status_code == 201, r.text
    return r.json()


def suggest(server: Server, version: dict[str, Any], user_id: str, text: str) -> Suggestion:
    item = Suggestion(
        documentId=version["id"],
        documentCreatedAt=version["createdAt"],
        originalText=text,
        suggestedText=text.upper(),
        description="louder",
        userId=user_id,
    )
    server.run(store.save_suggestions, server.env.DB, [item])
    return item


def test_versions_share_an_id_and_come_back_oldest_first(alice: Any) -> None:
    client, user_id = alice
    first = save(client, content="one", kind="code")
    assert first["id"] == DOC and first["userId"] == user_id
    assert first["kind"] == "code" and first["content"] == "one" and first["title"] == "Essay"
    assert first["createdAt"].endswith("Z") and len(first["createdAt"]) == 24
    later = [save(client, content=str(n)) for n in range(5)]  # faster than the clock
    r = client.get("/api/document", params={"id": DOC})
    assert r.status_code == 200
    versions = r.json()
    assert [v["content"] for v in versions] == ["one", "0", "1", "2", "3", "4"]
    stamps = [v["createdAt"] for v in versions]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert versions[-1] == later[-1]


def test_delete_after_timestamp_reverts_and_takes_the_suggestions(
    server: Server, alice: Any
) -> None:
    client, user_id = alice
    v1, v2, v3 = save(client, content="a"), save(client, content="b"), save(client, content="c")
    suggest(server, v1, user_id, "keep")
    suggest(server, v3, user_id, "drop")
    r = client.delete("/api/document", params={"id": DOC, "timestamp": v1["createdAt"]})
    assert r.status_code == 200
    assert [d["content"] for d in r.json()] == ["b", "c"]
    assert client.get("/api/document", params={"id": DOC}).json() == [v1]
    left = client.get("/api/suggestions", params={"documentId": DOC}).json()
    assert [s["originalText"] for s in left] == ["keep"]
    # Nothing after the latest version: nothing deleted, and that is not an error.
    r = client.delete("/api/document", params={"id": DOC, "timestamp": v1["createdAt"]})
    assert r.status_code == 200 and r.json() == []
    assert v2["createdAt"] < v3["createdAt"]


def test_delete_accepts_any_iso_time_and_without_one_deletes_everything(
    server: Server, alice: Any
) -> None:
    client, user_id = alice
    v1 = save(client, content="a")
    save(client, content="b")
    suggest(server, v1, user_id, "x")
    # An offset time is compared in UTC: an hour before, in +01:00, keeps nothing.
    r = client.delete("/api/document", params={"id": DOC, "timestamp": "1999-12-31T23:00:00+01:00"})
    assert [d["content"] for d in r.json()] == ["a", "b"]
    assert client.get("/api/document", params={"id": DOC}).status_code == 404
    save(client, content="again")
    r = client.delete("/api/document", params={"id": DOC})
    assert r.status_code == 200 and [d["content"] for d in r.json()] == ["again"]
    assert (
        server.sql("SELECT * FROM documents") == []
        and server.sql("SELECT * FROM suggestions") == []
    )
    r = client.delete("/api/document", params={"id": DOC})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_suggestions_in_vercel_shape(server: Server, alice: Any) -> None:
    client, user_id = alice
    version = save(client)
    assert client.get("/api/suggestions", params={"documentId": DOC}).json() == []
    item = suggest(server, version, user_id, "teh")
    r = client.get("/api/suggestions", params={"documentId": DOC})
    assert r.status_code == 200
    assert r.json() == [
        {
            "id": item.id,
            "documentId": DOC,
            "documentCreatedAt": version["createdAt"],
            "originalText": "teh",
            "suggestedText": "TEH",
            "description": "louder",
            "isResolved": False,
            "userId": user_id,
            "createdAt": item.createdAt,
        }
    ]


def test_save_suggestions_refuses_versions_the_user_does_not_own(
    server: Server, alice: Any, bob: Any
) -> None:
    version = save(alice[0])
    mine = Suggestion(
        documentId=DOC,
        documentCreatedAt=version["createdAt"],
        originalText="a",
        suggestedText="b",
        userId=alice[1],
    )
    theirs = Suggestion(
        documentId=DOC,
        documentCreatedAt=version["createdAt"],
        originalText="a",
        suggestedText="b",
        userId=bob[1],
    )
    with pytest.raises(PermissionError):
        server.run(store.save_suggestions, server.env.DB, [mine, theirs])
    assert server.sql("SELECT * FROM suggestions") == []  # all or nothing


def test_unknown_documents_are_404(alice: Any) -> None:
    client, _ = alice
    for r in (
        client.get("/api/document", params={"id": "nope"}),
        client.get("/api/suggestions", params={"documentId": "nope"}),
        client.delete("/api/document", params={"id": "nope", "timestamp": "2020-01-01T00:00:00Z"}),
    ):
        assert r.status_code == 404
        assert r.json() == {"code": "not_found", "message": "document not found"}


def test_invalid_input_lists_the_fields(alice: Any) -> None:
    client, _ = alice
    r = client.post("/api/document", params={"id": DOC}, json={"content": "x", "kind": "pdf"})
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["fields"]} == {"body.title", "body.kind"}
    r = client.post("/api/document", json={"title": "t"})
    assert r.status_code == 422 and [f["field"] for f in r.json()["fields"]] == ["query.id"]
    too_big = "é" * 1_000_000  # 2,000,000 bytes: over D1's row limit
    r = client.post("/api/document", params={"id": DOC}, json={"title": "t", "content": too_big})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "body.content"
    r = client.delete("/api/document", params={"id": DOC, "timestamp": "yesterday"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.timestamp"
    r = client.get("/api/suggestions")
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.documentId"


def test_guests_have_documents_and_signed_out_users_none(server: Server) -> None:
    guest = server.client()
    assert guest.post("/api/auth/guest").status_code == 201
    save(guest)
    assert len(guest.get("/api/document", params={"id": DOC}).json()) == 1
    anonymous = server.client()
    for r in (
        anonymous.get("/api/document", params={"id": DOC}),
        anonymous.post("/api/document", params={"id": DOC}, json={"title": "t"}),
        anonymous.delete("/api/document", params={"id": DOC}),
        anonymous.get("/api/suggestions", params={"documentId": DOC}),
    ):
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_another_user_can_never_read_change_or_delete_your_documents(
    server: Server, alice: Any, bob: Any
) -> None:
    client, user_id = alice
    v1 = save(client, content="mine")
    suggest(server, v1, user_id, "private")
    other, _ = bob
    missing = other.get("/api/document", params={"id": "missing"}).json()
    for r in (
        other.get("/api/document", params={"id": DOC}),
        other.post("/api/document", params={"id": DOC}, json={"title": "hijack", "content": "x"}),
        other.delete("/api/document", params={"id": DOC}),
        other.delete("/api/document", params={"id": DOC, "timestamp": "2000-01-01T00:00:00Z"}),
        other.get("/api/suggestions", params={"documentId": DOC}),
    ):
        assert r.status_code == 404, r.text
        assert r.json() == missing  # exactly as a document that does not exist
    # Untouched: one version, alice's, and her suggestion.
    assert client.get("/api/document", params={"id": DOC}).json() == [v1]
    assert len(client.get("/api/suggestions", params={"documentId": DOC}).json()) == 1
    assert server.sql("SELECT DISTINCT user_id FROM documents") == [{"user_id": user_id}]
