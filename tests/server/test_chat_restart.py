"""Resume after the server process is killed mid-stream (SIGKILL) and restarted on the
same state: what was streamed comes back, the stream ends with an `error` chunk and
[DONE], and the chat is marked interrupted with the partial answer saved, not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ..helpers import dev_command, free_port, wait_for_health, wrangler_toml
from .conftest import PASSWORD, TEST_VARS
from .test_chat_helpers import ai_client, sse_events, user_message, words

WRANGLER = wrangler_toml(
    "flarebase-restart-test",
    {**TEST_VARS, "CHAT_ECHO_DELAY_MS": 60},
    database_id="local",
    index=None,
)


@contextmanager
def dev_server(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`flarebase dev` in its own process, on `folder`'s wrangler.toml and state."""
    env = {**os.environ, "NO_COLOR": "1"}
    log_path = folder / "dev.log"
    with log_path.open("ab") as log:
        command = dev_command(folder, port)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        wait_for_health(proc, f"http://127.0.0.1:{port}", log_path, timeout=30)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_resume_after_a_killed_server_returns_what_was_streamed(tmp_path: Path) -> None:
    (tmp_path / "wrangler.toml").write_text(WRANGLER, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    text = words(80)
    seen: list[tuple[int | None, str]] = []
    with dev_server(tmp_path, port) as first:
        signup = {"email": "alice@example.com", "password": PASSWORD}
        token = httpx.post(f"{base}/api/auth/signup", json=signup).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"id": "c1", "messages": [user_message(text)]}
        with httpx.stream("POST", f"{base}/api/chat", json=body, headers=headers) as r:
            buffer = ""
            for piece in r.iter_text():
                buffer += piece
                complete, _, buffer = buffer.rpartition("\n\n")
                seen += sse_events(complete)
                if sum('"text-delta"' in data for _, data in seen) >= 8:
                    first.send_signal(signal.SIGKILL)  # mid-stream, no chance to clean up
                    first.wait(10)
                    break
    streamed = "".join(json.loads(d)["delta"] for _, d in seen if '"text-delta"' in d)
    assert streamed and len(streamed) < len(text)

    with dev_server(tmp_path, port):
        r = httpx.get(f"{base}/api/chat/c1/stream", headers=headers, timeout=30)
        assert r.status_code == 200
        events = sse_events(r.text)
        assert events[-1] == (None, "[DONE]")
        replay = [(i, json.loads(d)) for i, d in events[:-1]]
        # everything the client saw before the kill, in the same positions
        assert [(i, json.loads(d)) for i, d in seen] == replay[: len(seen)]
        assert replay[-1][1]["type"] == "error" and "interrupted" in replay[-1][1]["errorText"]
        kept = "".join(c["delta"] for _, c in replay if c["type"] == "text-delta")
        assert kept.startswith(streamed) and len(kept) < len(text)

        messages = httpx.get(f"{base}/api/messages?chatId=c1", headers=headers).json()
        assert messages["chat"]["status"] == "interrupted"
        [user, answer] = messages["messages"]
        assert user["parts"][0]["text"] == text
        assert answer["id"] == replay[0][1]["messageId"]
        assert "".join(p["text"] for p in answer["parts"] if p["type"] == "text") == kept

        # the real client resumes the same: the partial answer, then the error
        out = ai_client(
            base=base, token=token, scenario="resume", chatId="c1", messages=[user_message(text)]
        )
        assert out["status"] == "error" and "interrupted" in out["error"]
        assert out["messages"][-1]["text"] == kept

        # and the chat goes on
        more = httpx.post(
            f"{base}/api/chat",
            json={"id": "c1", "messages": [user_message("still here?", "u2")]},
            headers=headers,
            timeout=30,
        )
        assert '"delta":"here?"' in more.text and more.text.endswith("data: [DONE]\n\n")
        status = httpx.get(f"{base}/api/chat/c1", headers=headers).json()["status"]
        assert status == "ready"
