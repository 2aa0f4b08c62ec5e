"""Chats over HTTP on a real local env: the stream protocol, history, messages, edits,
regenerate, votes, visibility, titles, deletion, large messages, expiry, models."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from flarebase.platform import ConfigError
from flarebase.server.chat.titles import title_from
from flarebase.server.models.config import parse_models, resolve
from flarebase.server.settings import Settings

from .conftest import Server
from .test_chat_helpers import (
    chunks,
    message_text,
    send,
    sse_events,
    text_of,
    user_message,
    words,
)

SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}


def signed_in(server: Server, email: str = "alice@example.com", **settings: Any) -> Any:
    client = server.client(**settings)
    server.sign_up(client, email)
    return client


def messages_of(client: Any, chat_id: str) -> list[dict[str, Any]]:
    r = client.get("/api/messages", params={"chatId": chat_id})
    assert r.status_code == 200, r.text
    return r.json()["messages"]  # type: ignore[no-any-return]


# -- sending -------------------------------------------------------------------------------
def test_first_message_creates_the_chat_and_streams_the_protocol(server: Server) -> None:
    client = signed_in(server)
    r = send(client, "c1", "Hello there, world")
    assert r.status_code == 200
    for name, value in SSE_HEADERS.items():
        assert r.headers[name] == value
    events = [line for line in r.text.split("\n") if line.startswith("id: ")]
    assert [int(e[4:]) for e in events] == list(range(1, len(events) + 1))
    got = chunks(r.text)
    assert [c["type"] for c in got[:3]] == ["start", "start-step", "text-start"]
    assert [c["type"] for c in got[-3:]] == ["text-end", "finish-step", "finish"]
    assert got[-1]["finishReason"] == "stop"
    assert text_of(got) == "Hello there, world"

    chat = client.get("/api/chat/c1").json()
    assert chat["title"] == "Hello there, world" and chat["visibility"] == "private"
    assert chat["status"] == "ready" and chat["model"] == "echo"
    saved = messages_of(client, "c1")
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["id"] == got[0]["messageId"]
    assert message_text(saved[1]) == "Hello there, world"
    assert saved[0]["metadata"]["createdAt"] < saved[1]["metadata"]["createdAt"]


def test_the_server_owns_history_a_client_may_send_only_the_last_message(server: Server) -> None:
    client = signed_in(server)
    send(client, "c1", "first", id="u1")
    r = client.post(
        "/api/chat",
        json={"id": "c1", "message": user_message("second", "u2"), "trigger": "submit-message"},
    )
    assert text_of(chunks(r.text)) == "second"
    saved = messages_of(client, "c1")
    assert [message_text(m) for m in saved] == ["first", "first", "second", "second"]


def test_titles_come_from_the_first_user_text_and_can_be_changed(server: Server) -> None:
    long = "Plan   a trip\nto Lisbon " + words(30)
    assert title_from(user_message(long)).startswith("Plan a trip to Lisbon word0")
    assert len(title_from(user_message(long))) <= 80 and title_from(user_message(long)).endswith(
        "…"
    )
    assert (
        title_from({"parts": [{"type": "file", "url": "x", "mediaType": "image/png"}]})
        == "New chat"
    )
    client = signed_in(server)
    send(client, "c1", long)
    assert client.get("/api/chat/c1").json()["title"] == title_from(user_message(long))
    r = client.patch("/api/chat/c1", json={"title": "Lisbon"})
    assert r.status_code == 200 and r.json()["title"] == "Lisbon"
    assert client.patch("/api/chat/c1", json={"title": ""}).status_code == 422


def test_guests_may_chat_and_signed_out_clients_may_not(server: Server) -> None:
    guest = server.client()
    assert guest.post("/api/auth/guest").status_code == 201
    assert text_of(chunks(send(guest, "g1", "hi guest").text)) == "hi guest"
    anonymous = server.client()
    r = send(anonymous, "g2", "hi")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert server.sql("SELECT id FROM chats WHERE id = 'g2'") == []


def test_bad_requests_are_json_errors_listing_the_fields(server: Server) -> None:
    client = signed_in(server)
    r = client.post("/api/chat", json={"id": "c1", "messages": [{"id": "m", "role": "user"}]})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert any(f["field"].endswith("parts") for f in r.json()["fields"])
    r = client.post("/api/chat", json={"id": "../etc", "messages": [user_message("x")]})
    assert r.status_code == 422
    r = client.post("/api/chat", json={"id": "c1", "messages": []})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = client.post(
        "/api/chat",
        json={"id": "c1", "messages": [{"id": "a", "role": "assistant", "parts": []}]},
    )
    assert r.status_code == 400
    r = send(client, "c1", "x", selectedChatModel="gpt-9")
    assert r.status_code == 400 and r.json()["code"] == "unknown_model"
    assert server.sql("SELECT id FROM chats") == []


def test_generation_continues_when_the_client_goes_away(server: Server) -> None:
    client = signed_in(server, CHAT_ECHO_DELAY_MS=20)
    text = words(25)
    body = {"id": "c1", "messages": [user_message(text)], "trigger": "submit-message"}
    with client.stream("POST", "/api/chat", json=body) as r:
        seen = []
        for line in r.iter_lines():
            seen.append(line)
            if sum("text-delta" in s for s in seen) == 2:
                break  # the client goes away after two words

    def finished() -> bool:
        saved = messages_of(client, "c1")
        return len(saved) == 2 and message_text(saved[1]) == text

    deadline = time.monotonic() + 10
    while not finished():
        assert time.monotonic() < deadline, "the answer was not saved"
        time.sleep(0.05)
    assert client.get("/api/chat/c1").json()["status"] == "ready"


# -- resume --------------------------------------------------------------------------------
def test_resume_replays_from_the_first_chunk_or_after_a_position(server: Server) -> None:
    client = signed_in(server)
    original = chunks(send(client, "c1", words(6)).text)
    r = client.get("/api/chat/c1/stream")
    assert r.status_code == 200 and r.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert chunks(r.text) == original
    tail = client.get("/api/chat/c1/stream", headers={"Last-Event-ID": "5"})
    assert chunks(tail.text) == original[5:]
    assert sse_events(tail.text)[0][0] == 6  # ids go on from the position
    assert chunks(client.get("/api/chat/c1/stream?position=7").text) == original[7:]
    assert chunks(client.get(f"/api/chat/c1/stream?position={len(original)}").text) == []
    bad = client.get("/api/chat/c1/stream", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"
    assert client.get("/api/chat/c1/stream?position=-1").status_code == 422


def test_resume_of_an_unknown_chat_is_404(server: Server) -> None:
    client = signed_in(server)
    assert client.get("/api/chat/nope/stream").status_code == 404


def test_finished_buffers_expire_by_alarm_and_resume_answers_204(server: Server) -> None:
    client = signed_in(server, CHAT_STREAM_TTL=0.3)
    got = chunks(send(client, "c1", "short lived").text)
    assert client.get("/api/chat/c1/stream").status_code == 200
    [row] = server.sql("SELECT id FROM streams WHERE chat_id = 'c1'")
    namespace = server.env.CHAT_STREAMS
    stub = namespace.get(namespace.id_from_name("c1"))
    page = server.run(stub.read, row["id"], 0, 0.0)
    assert [json.loads(d) for _, d in page["chunks"]] == got
    deadline = time.monotonic() + 5
    while server.run(stub.read, row["id"], 0, 0.0) is not None:  # deleted by the alarm
        assert time.monotonic() < deadline, "the buffer did not expire"
        time.sleep(0.05)
    r = client.get("/api/chat/c1/stream")
    assert r.status_code == 204 and r.content == b""
    assert message_text(messages_of(client, "c1")[1]) == "short lived"  # D1 keeps the message


def test_after_an_answer_its_alarm_is_the_buffer_expiry_not_the_heartbeat(
    server: Server,
) -> None:
    """While an answer runs, the chat's object keeps a heartbeat alarm (seconds away, for
    recovery after a crash); once it ends, the alarm moves to when the buffer expires,
    so a finished chat is not woken for nothing."""
    client = signed_in(server)
    for _ in range(2):  # a new chat, then an existing one
        send(client, "c1", "hello")
    namespace = server.env.CHAT_STREAMS
    storage = namespace._actors[namespace.id_from_name("c1")._hex].storage()

    async def alarm_and_expiry() -> tuple[int | None, int]:  # (read on the server's loop)
        rows = storage.sql.exec("SELECT min(expires_ms) AS due FROM streams").one()
        return storage.alarm_ms(), rows["due"]

    deadline = time.monotonic() + 5
    while (found := server.run(alarm_and_expiry))[0] != found[1]:
        assert time.monotonic() < deadline, found
        time.sleep(0.02)


def test_stop_ends_the_stream_with_abort_and_saves_the_partial_answer(server: Server) -> None:
    client = signed_in(server, CHAT_ECHO_DELAY_MS=30)
    text = words(60)
    body = {"id": "c1", "messages": [user_message(text)], "trigger": "submit-message"}
    with client.stream("POST", "/api/chat", json=body) as r:
        lines = r.iter_lines()
        for line in lines:
            if "text-delta" in line:
                break
        stopper = server.client()
        stopper.cookies = client.cookies
        stop = stopper.post("/api/chat/c1/stop")
        rest = "\n".join(lines)
    assert stop.status_code == 200 and stop.json() == {"stopped": True}
    assert '"type":"abort"' in rest and rest.rstrip().endswith("data: [DONE]")
    replay = chunks(client.get("/api/chat/c1/stream").text)
    assert replay[-1]["type"] == "abort" and "finish" not in [c["type"] for c in replay]
    partial = text_of(replay)
    assert partial and len(partial) < len(text) and text.startswith(partial)
    saved = messages_of(client, "c1")
    assert message_text(saved[1]) == partial
    assert client.get("/api/chat/c1").json()["status"] == "stopped"
    assert server.sql("SELECT status FROM streams") == [{"status": "stopped"}]
    assert client.post("/api/chat/c1/stop").json() == {"stopped": False}


# -- edits, regenerate ---------------------------------------------------------------------
def test_regenerate_replaces_the_last_answer(server: Server) -> None:
    client = signed_in(server)
    first = chunks(send(client, "c1", "again", id="u1").text)[0]["messageId"]
    r = client.post(
        "/api/chat",
        json={
            "id": "c1",
            "messages": [user_message("again")],
            "trigger": "regenerate-message",
            "messageId": first,
        },
    )
    second = chunks(r.text)[0]["messageId"]
    assert second != first
    saved = messages_of(client, "c1")
    assert [m["id"] for m in saved] == ["u1", second]
    # without messageId: the answer to the last user message is redone
    r = client.post(
        "/api/chat",
        json={"id": "c1", "messages": [user_message("again")], "trigger": "regenerate-message"},
    )
    third = chunks(r.text)[0]["messageId"]
    assert [m["id"] for m in messages_of(client, "c1")] == ["u1", third]


def test_editing_a_message_drops_what_followed_it(server: Server) -> None:
    client = signed_in(server)
    send(client, "c1", "one", id="u1")
    send(client, "c1", "two", id="u2")
    assert len(messages_of(client, "c1")) == 4
    send(client, "c1", "one, edited", id="u1")
    saved = messages_of(client, "c1")
    assert [message_text(m) for m in saved] == ["one, edited", "one, edited"]
    assert saved[0]["id"] == "u1"


# -- history -------------------------------------------------------------------------------
def test_history_pages_with_vercel_chatbot_cursors(server: Server) -> None:
    client = signed_in(server)
    for i in range(5):
        send(client, f"c{i}", f"chat {i}")
    page = client.get("/api/history?limit=2").json()
    assert [c["id"] for c in page["chats"]] == ["c4", "c3"] and page["hasMore"] is True
    page = client.get("/api/history?limit=2&ending_before=c3").json()
    assert [c["id"] for c in page["chats"]] == ["c2", "c1"] and page["hasMore"] is True
    page = client.get("/api/history?limit=2&ending_before=c1").json()
    assert [c["id"] for c in page["chats"]] == ["c0"] and page["hasMore"] is False
    page = client.get("/api/history?limit=10&starting_after=c2").json()
    assert [c["id"] for c in page["chats"]] == ["c4", "c3"] and page["hasMore"] is False
    assert client.get("/api/history").json()["chats"][0]["title"] == "chat 4"
    both = client.get("/api/history?starting_after=c1&ending_before=c2")
    assert both.status_code == 400 and "Only one of" in both.json()["message"]
    assert client.get("/api/history?ending_before=nope").status_code == 404
    assert client.get("/api/history?limit=0").status_code == 422


def test_delete_history_deletes_every_chat_and_its_buffers(server: Server) -> None:
    client = signed_in(server)
    for i in range(3):
        send(client, f"c{i}", "bye")
    assert client.delete("/api/history").json() == {"deletedCount": 3}
    assert client.get("/api/history").json() == {"chats": [], "hasMore": False}
    assert server.sql("SELECT count(*) AS n FROM messages")[0]["n"] == 0
    assert client.get("/api/chat/c0/stream").status_code == 404


def test_delete_chat(server: Server) -> None:
    client = signed_in(server)
    send(client, "c1", "delete me", id="u1")
    taken = send(client, "c2", "keep me", id="u1")  # u1 is a message of c1
    assert taken.status_code == 409 and taken.json()["code"] == "conflict"
    assert server.sql("SELECT id FROM chats") == [{"id": "c1"}]
    send(client, "c2", "keep me", id="u2")
    r = client.delete("/api/chat?id=c1")
    assert r.status_code == 200 and r.json()["id"] == "c1"
    assert client.get("/api/messages?chatId=c1").status_code == 404
    assert client.get("/api/chat/c1/stream").status_code == 404
    assert server.sql("SELECT chat_id FROM messages GROUP BY chat_id") == [{"chat_id": "c2"}]
    assert server.sql("SELECT chat_id FROM streams") == [{"chat_id": "c2"}]
    assert client.delete("/api/chat?id=c1").status_code == 404
    # the id can be used again, for a new chat
    assert text_of(chunks(send(client, "c1", "new life").text)) == "new life"


# -- votes and visibility ------------------------------------------------------------------
def test_votes(server: Server) -> None:
    client = signed_in(server)
    answer = chunks(send(client, "c1", "vote on me").text)[0]["messageId"]
    assert client.get("/api/vote?chatId=c1").json() == []
    r = client.patch("/api/vote", json={"chatId": "c1", "messageId": answer, "type": "up"})
    assert r.status_code == 200 and r.json()["isUpvoted"] is True
    client.patch("/api/vote", json={"chatId": "c1", "messageId": answer, "type": "down"})
    assert client.get("/api/vote?chatId=c1").json() == [
        {"chatId": "c1", "messageId": answer, "isUpvoted": False}
    ]
    r = client.patch("/api/vote", json={"chatId": "c1", "messageId": "nope", "type": "up"})
    assert r.status_code == 404
    r = client.patch("/api/vote", json={"chatId": "c1", "messageId": answer, "type": "meh"})
    assert r.status_code == 422


def test_public_chats_are_readable_by_anyone_and_writable_by_none(server: Server) -> None:
    alice = signed_in(server, "alice@example.com")
    send(alice, "c1", "look at this", selectedVisibilityType="public")
    assert alice.get("/api/chat/c1").json()["visibility"] == "public"
    anonymous = server.client()
    r = anonymous.get("/api/messages?chatId=c1")
    assert r.status_code == 200 and r.json()["isReadonly"] is True
    assert message_text(r.json()["messages"][1]) == "look at this"
    assert anonymous.get("/api/chat/c1/stream").status_code == 200
    assert anonymous.get("/api/vote?chatId=c1").status_code == 200
    assert anonymous.patch("/api/chat/c1", json={"title": "x"}).status_code == 401
    r = alice.patch("/api/chat/c1", json={"visibility": "private"})
    assert r.status_code == 200 and r.json()["visibility"] == "private"
    assert anonymous.get("/api/messages?chatId=c1").status_code == 404
    assert alice.patch("/api/chat/c1", json={"visibility": "everyone"}).status_code == 422


# -- large messages ------------------------------------------------------------------------
def test_messages_over_the_d1_row_limit_keep_their_large_parts_in_r2(server: Server) -> None:
    client = signed_in(server, MAX_BODY_BYTES=8_000_000)
    big = "x" * 2_500_000
    parts = [{"type": "text", "text": "small part"}, {"type": "text", "text": big}]
    body = {"id": "c1", "messages": [{"id": "u1", "role": "user", "parts": parts}]}
    r = client.post("/api/chat", json=body)
    assert r.status_code == 200 and len(text_of(chunks(r.text))) == len("small part") + len(big)
    rows = server.sql("SELECT id, role, length(parts) AS n, parts_in_r2, parts FROM messages")
    assert {row["role"] for row in rows if row["parts_in_r2"]} == {"user", "assistant"}
    assert all(row["n"] < 100_000 for row in rows)
    user_row = next(row for row in rows if row["role"] == "user")
    assert json.loads(user_row["parts"])[0] == {"type": "text", "text": "small part"}
    listing = server.run(server.env.BUCKET.list, None, "chats/c1/")
    assert listing.objects and all(o.key.startswith("chats/c1/messages/") for o in listing.objects)
    saved = messages_of(client, "c1")
    assert saved[0]["parts"] == parts
    assert message_text(saved[1]) == "small part" + big
    client.delete("/api/chat?id=c1")
    assert server.run(server.env.BUCKET.list, None, "chats/c1/").objects == []


# -- models --------------------------------------------------------------------------------
def test_models_come_from_settings(server: Server) -> None:
    client = server.client()
    assert client.get("/api/models").json() == {
        "models": [
            {
                "id": "echo",
                "name": "Echo (test model)",
                "description": client.get("/api/models").json()["models"][0]["description"],
                "provider": "echo",
                "tools": [],
            }
        ],
        "defaultModel": "echo",
    }
    models = json.dumps(
        [{"id": "gpt", "provider": "openai", "api_key_var": "K", "tools": ["get_current_time"]}]
    )
    client = server.client(CHAT_MODELS=models, CHAT_DEFAULT_MODEL="gpt", CHAT_ECHO_MODEL="false")
    listed = client.get("/api/models").json()
    assert [m["id"] for m in listed["models"]] == ["gpt"] and listed["defaultModel"] == "gpt"
    assert listed["models"][0]["tools"] == ["get_current_time"]
    assert "api_key" not in json.dumps(listed)


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("[{", "not valid JSON"),
        ('[{"id": "a"}]', "provider: Field required"),
        ('[{"id": "a", "provider": "openai", "api_key": "sk-1"}]', "Extra inputs"),
        ('[{"id": "a", "provider": "x"}]', "provider"),
        ('[{"id": "a", "provider": "echo"}, {"id": "a", "provider": "echo"}]', "duplicate"),
    ],
)
def test_bad_model_settings_are_refused_at_start(models: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"CHAT_MODELS": models})


def test_workers_ai_is_its_openai_compatible_endpoint() -> None:
    [model] = parse_models('[{"id": "llama", "provider": "workers-ai", "model": "@cf/meta/x"}]')
    resolved = resolve(model, {"CLOUDFLARE_ACCOUNT_ID": "abc123", "CLOUDFLARE_API_TOKEN": "tok"})
    assert resolved["base_url"] == "https://api.cloudflare.com/client/v4/accounts/abc123/ai/v1"
    assert resolved["api_key"] == "tok" and resolved["model"] == "@cf/meta/x"
    with pytest.raises(ValueError, match="CLOUDFLARE_ACCOUNT_ID"):
        resolve(model, {"CLOUDFLARE_API_TOKEN": "tok"})
    [openai] = parse_models('[{"id": "gpt", "provider": "openai"}]')
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        resolve(openai, {})


def test_a_model_without_its_key_answers_503(server: Server) -> None:
    models = json.dumps([{"id": "gpt", "provider": "openai", "api_key_var": "MISSING_KEY_VAR"}])
    client = signed_in(server, CHAT_MODELS=models)
    r = send(client, "c1", "hi", selectedChatModel="gpt")
    assert r.status_code == 503 and "MISSING_KEY_VAR" in r.json()["message"]
    assert server.sql("SELECT id FROM chats") == []
