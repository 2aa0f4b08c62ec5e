"""The app's shared behaviour: JSON errors, bounded bodies, per-request limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flarebase.platform import ConfigError
from flarebase.platform.invocation import count
from flarebase.server import create_app
from flarebase.server.errors import ApiError
from flarebase.server.settings import Settings


class FakeEnv:
    """Stands in for bindings: these tests exercise only the app's own plumbing."""

    def __init__(self, **vars: Any) -> None:
        self.vars = vars

    def __iter__(self) -> Iterator[str]:
        return iter(["DB"])


@pytest.fixture
def client() -> TestClient:
    app = create_app(FakeEnv(MAX_BODY_BYTES="2000"))

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/teapot")
    async def teapot() -> None:
        raise ApiError(418, "teapot", "short and stout", spout=True)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret detail")

    @app.get("/many-calls")
    async def many_calls() -> None:
        for _ in range(1001):
            count("kv")

    return TestClient(app, raise_server_exceptions=False)


def test_health_lists_bindings(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"ok": True, "bindings": ["DB"]}


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_api_error_carries_code_message_and_extra(client: TestClient) -> None:
    r = client.get("/teapot")
    assert r.status_code == 418
    assert r.json() == {"code": "teapot", "message": "short and stout", "spout": True}


def test_crash_is_500_json_without_details(client: TestClient) -> None:
    r = client.get("/crash")
    assert r.status_code == 500
    assert r.json() == {"code": "internal_error", "message": "internal server error"}


def test_validation_errors_list_fields(client: TestClient) -> None:
    r = client.post("/echo", content=b"[1]", headers={"content-type": "application/json"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_request" and body["fields"][0]["field"] == "body"


def test_declared_body_over_limit_is_413(client: TestClient) -> None:
    r = client.post("/echo", json={"a": "x" * 3000})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_streamed_body_over_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": "'
        yield b"x" * 3000
        yield b'"}'

    r = client.post("/echo", content=chunks())
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert client.post("/echo", json={"a": 1}).json() == {"a": 1}


def test_binding_calls_per_request_are_limited(client: TestClient) -> None:
    r = client.get("/many-calls")
    assert r.status_code == 429 and r.json()["code"] == "too_many_operations"


def test_bad_settings_fail_at_start() -> None:
    with pytest.raises(ConfigError, match="MAX_BODY_BYTES"):
        Settings.from_env({"MAX_BODY_BYTES": "lots"})
