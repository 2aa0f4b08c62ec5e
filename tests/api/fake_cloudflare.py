"""A recording stand-in for api.cloudflare.com, on loopback.

No Cloudflare account is reachable from the test machines, so the `api` provider's
requests go to this server instead (through the SDK's `base_url`). It records every
request as sent (method, raw path, query, headers, body) and answers what the test
told it to, in Cloudflare's envelope `{success, errors, messages, result}`. The
answers are written from Cloudflare's API reference, not observed: these tests
check the requests the provider makes and how it reads answers of that shape,
not Cloudflare itself.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/client/v4"


@dataclass
class Recorded:
    method: str
    path: str  # percent-encoded, as sent, without the /client/v4 prefix
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def auth(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # bytes are sent as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)


def ok(result: Any, **extra: Any) -> Reply:
    return Reply(200, {"success": True, "errors": [], "messages": [], "result": result, **extra})


def fail(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"success": False, "errors": [{"code": code, "message": message}], "messages": []}
    return Reply(status, {**body, "result": None}, headers or {})


class FakeCloudflare:
    """`answer(method, path_regex, *replies)`: replies are given in turn, the last one
    repeats. Unrouted requests get Cloudflare's 404 "could not route" (code 7003)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[tuple[str, re.Pattern[str], list[Reply]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PREFIX}"

    def start(self) -> FakeCloudflare:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._routes.clear()

    def answer(self, method: str, path: str, *replies: Reply) -> None:
        with self._lock:
            self._routes.insert(0, (method, re.compile(path + "$"), list(replies)))

    def _reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            for method, pattern, replies in self._routes:
                if method == request.method and pattern.match(request.path):
                    return replies.pop(0) if len(replies) > 1 else replies[0]
        return fail(404, 7003, f"Could not route to {request.path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                request = Recorded(
                    self.command,
                    parts.path.removeprefix(PREFIX),
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                reply = fake._reply(request)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body)
                payload = data.encode() if isinstance(data, str) else data
                self.send_response(reply.status)
                binary = isinstance(reply.body, bytes)
                kind = "application/octet-stream" if binary else "application/json"
                headers = {"content-type": kind, **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
