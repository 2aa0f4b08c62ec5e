"""Property-based tests of the whole API from its OpenAPI document (schemathesis):
every operation, signed in as an admin user, never answers 5xx, and every error under
/api/ is JSON `{code, message}`.

Each operation gets a fresh env (the `server` fixture) and its examples are sent
through a TestClient running in that env's event loop; MAX_EXAMPLES per operation
keeps the whole run around a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, reject, settings

from flarebase.server import create_app
from flarebase.server.settings import Settings

from .conftest import TEST_VARS, Server

MAX_EXAMPLES = 25


class _NoBindings:
    """Enough of an env to build the app and read its OpenAPI document."""

    def __init__(self) -> None:
        self.vars: dict[str, Any] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(())


schema = schemathesis.openapi.from_dict(
    create_app(_NoBindings(), Settings.from_env(TEST_VARS)).openapi()
)


def _send(client: Any, case: Any) -> httpx.Response:
    """The case as a request through `client` (requests prepares the body exactly as
    schemathesis's own transport would)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    fields = ("method", "url", "headers", "params", "data", "json", "files", "cookies")
    prepared = requests.Request(**{k: kwargs[k] for k in fields if k in kwargs}).prepare()
    try:
        return client.request(  # type: ignore[no-any-return]
            prepared.method,
            prepared.url,
            headers=dict(prepared.headers),
            content=prepared.body,
            follow_redirects=False,
        )
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        reject()  # not sendable over HTTP at all: not a request a server can get
        raise  # unreachable


@pytest.fixture
def client(server: Server) -> Any:
    """A client signed in (Bearer) as an admin, once per operation: hypothesis runs all
    of an operation's examples within one test, so they share this fixture."""
    client = server.client(raise_server_exceptions=False)
    signed_in = server.sign_up(client, "schemathesis@example.com")
    server.make_admin(signed_in["user"]["id"])
    client.headers["Authorization"] = f"Bearer {signed_in['token']}"
    return client


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, client: Any) -> None:
    response = _send(client, case)

    where = f"{case.method} {case.formatted_path}\n{case.as_curl_command()}"
    assert response.status_code < 500, f"{response.status_code} {response.text}\n{where}"
    if response.status_code >= 400 and case.formatted_path.startswith("/api/"):
        body = json.loads(response.content)
        assert isinstance(body, dict) and isinstance(body.get("code"), str), where
        assert isinstance(body.get("message"), str), where
