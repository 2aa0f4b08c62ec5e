"""One user can never read, change or delete another's chats, messages, votes or
streams: every chat route, as another user and signed out, against a private chat
(404, as if it did not exist) and a public one (readable, never writable)."""

from __future__ import annotations

from typing import Any

import pytest

from flarebase.server.chat import store
from flarebase.server.chat.store import get_chat

from .conftest import Server
from .test_chat_helpers import chunks, message_text, send, user_message

READS = [
    ("GET", "/api/chat/{id}", None),
    ("GET", "/api/chat/{id}/stream", None),
    ("GET", "/api/messages?chatId={id}", None),
    ("GET", "/api/vote?chatId={id}", None),
]
WRITES = [
    ("POST", "/api/chat", {"id": "{id}", "messages": [user_message("mine now", "intruder")]}),
    (
        "POST",
        "/api/chat",
        {"id": "{id}", "messages": [user_message("hi", "a1")], "trigger": "regenerate-message"},
    ),
    ("POST", "/api/chat/{id}/stop", None),
    ("PATCH", "/api/chat/{id}", {"title": "pwned", "visibility": "public"}),
    ("DELETE", "/api/chat?id={id}", None),
    ("PATCH", "/api/vote", {"chatId": "{id}", "messageId": "{answer}", "type": "down"}),
]


def _fill(value: Any, chat_id: str, answer: str) -> Any:
    if isinstance(value, str):
        return value.replace("{id}", chat_id).replace("{answer}", answer)
    if isinstance(value, list):
        return [_fill(v, chat_id, answer) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, chat_id, answer) for k, v in value.items()}
    return value


def _call(client: Any, method: str, path: str, body: Any, chat_id: str, answer: str) -> Any:
    url = _fill(path, chat_id, answer)
    payload = _fill(body, chat_id, answer)
    return (
        client.request(method, url, json=payload)
        if payload is not None
        else client.request(method, url)
    )


@pytest.fixture
def world(server: Server) -> dict[str, Any]:
    alice = server.client()
    server.sign_up(alice, "alice@example.com")
    answers = {}
    for chat_id, visibility in (("private1", "private"), ("public1", "public")):
        r = send(alice, chat_id, "hi", id=f"a1-{chat_id}", selectedVisibilityType=visibility)
        answers[chat_id] = chunks(r.text)[0]["messageId"]
        alice.patch(
            "/api/vote", json={"chatId": chat_id, "messageId": answers[chat_id], "type": "up"}
        )
    bob = server.client()
    server.sign_up(bob, "bob@example.com")
    return {"alice": alice, "bob": bob, "anonymous": server.client(), "answers": answers}


def _alice_untouched(server: Server, world: dict[str, Any]) -> None:
    chats = server.sql(
        "SELECT id, title, visibility, status FROM chats "
        "WHERE id IN ('private1', 'public1') ORDER BY id"
    )
    assert chats == [
        {"id": "private1", "title": "hi", "visibility": "private", "status": "ready"},
        {"id": "public1", "title": "hi", "visibility": "public", "status": "ready"},
    ]
    for chat_id, answer in world["answers"].items():
        rows = world["alice"].get(f"/api/messages?chatId={chat_id}").json()["messages"]
        assert [(m["id"], message_text(m)) for m in rows] == [
            (f"a1-{chat_id}", "hi"),
            (answer, "hi"),
        ]
        votes = world["alice"].get(f"/api/vote?chatId={chat_id}").json()
        assert votes == [{"chatId": chat_id, "messageId": answer, "isUpvoted": True}]
        assert world["alice"].get(f"/api/chat/{chat_id}/stream").status_code == 200
    streams = server.sql("SELECT chat_id, status FROM streams WHERE chat_id LIKE 'p%' ORDER BY 1")
    assert streams == [
        {"chat_id": "private1", "status": "completed"},
        {"chat_id": "public1", "status": "completed"},
    ]


@pytest.mark.parametrize(("method", "path", "body"), READS + WRITES)
def test_another_users_private_chat_is_not_found(
    server: Server, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    answer = world["answers"]["private1"]
    r = _call(world["bob"], method, path, body, "private1", answer)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    anonymous = _call(world["anonymous"], method, path, body, "private1", answer)
    assert anonymous.status_code == (404 if method == "GET" else 401)
    if path != "/api/chat":  # (POST /api/chat to an unknown id creates a chat)
        missing = _call(world["bob"], method, path, body, "no-such-chat", answer)
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    _alice_untouched(server, world)


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_public_chats_are_readable_by_other_users_and_signed_out_clients(
    server: Server, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    answer = world["answers"]["public1"]
    for viewer in ("bob", "anonymous"):
        r = _call(world[viewer], method, path, body, "public1", answer)
        assert r.status_code == 200, r.text
        private = _call(world[viewer], method, path, body, "private1", answer)
        assert private.status_code == 404
    _alice_untouched(server, world)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_public_chats_are_never_writable_by_others(
    server: Server, world: dict[str, Any], method: str, path: str, body: Any
) -> None:
    answer = world["answers"]["public1"]
    r = _call(world["bob"], method, path, body, "public1", answer)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    anonymous = _call(world["anonymous"], method, path, body, "public1", answer)
    assert anonymous.status_code == 401
    _alice_untouched(server, world)


def test_history_is_per_user(server: Server, world: dict[str, Any]) -> None:
    bob = world["bob"]
    assert bob.get("/api/history").json() == {"chats": [], "hasMore": False}
    for cursor in ("starting_after", "ending_before"):
        assert bob.get(f"/api/history?{cursor}=private1").status_code == 404
    send(bob, "bob1", "bob's own")
    assert [c["id"] for c in bob.get("/api/history").json()["chats"]] == ["bob1"]
    assert bob.delete("/api/history").json() == {"deletedCount": 1}
    assert world["anonymous"].get("/api/history").status_code == 401
    assert world["anonymous"].delete("/api/history").status_code == 401
    _alice_untouched(server, world)


def test_another_chats_message_id_cannot_be_reused(server: Server, world: dict[str, Any]) -> None:
    r = send(world["bob"], "bob1", "overwrite?", id="a1-private1")
    assert r.status_code == 409
    answer = world["answers"]["private1"]
    r = world["bob"].post(
        "/api/chat",
        json={
            "id": "bob2",
            "messages": [user_message("x", "b2")],
            "trigger": "regenerate-message",
            "messageId": answer,
        },
    )
    assert r.status_code == 200  # bob's own chat; alice's message is not touched
    assert (
        world["bob"]
        .patch("/api/vote", json={"chatId": "bob2", "messageId": answer, "type": "up"})
        .status_code
        == 404
    )
    _alice_untouched(server, world)


def test_another_user_cannot_stop_a_running_answer(server: Server) -> None:
    alice = server.client(CHAT_ECHO_DELAY_MS=20)
    server.sign_up(alice, "alice@example.com")
    bob = server.client()
    server.sign_up(bob, "bob@example.com")
    text = " ".join(f"w{i}" for i in range(30))
    body = {"id": "c1", "messages": [user_message(text, "a1")]}
    with alice.stream("POST", "/api/chat", json=body) as r:
        lines = r.iter_lines()
        next(line for line in lines if "text-delta" in line)
        refused = bob.post("/api/chat/c1/stop")
        rest = "\n".join(lines)
    assert refused.status_code == 404
    assert '"type":"finish"' in rest and '"type":"abort"' not in rest
    assert alice.get("/api/chat/c1").json()["status"] == "ready"


def test_a_chat_created_by_another_user_meanwhile_is_not_written(
    server: Server, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's first message names a chat id that alice's chat took after bob's request
    looked it up (a race): the insert finds the id taken, and bob gets a 404."""
    looked_up: list[str] = []

    async def not_there_yet(db: Any, chat_id: str) -> dict[str, Any] | None:
        if not looked_up:
            looked_up.append(chat_id)
            return None
        return await get_chat(db, chat_id)

    monkeypatch.setattr(store, "get_chat", not_there_yet)
    r = world["bob"].post(
        "/api/chat", json={"id": "private1", "messages": [user_message("mine", "b1")]}
    )
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert looked_up == ["private1"]
    assert server.sql("SELECT id FROM messages WHERE id = 'b1'") == []
    _alice_untouched(server, world)
