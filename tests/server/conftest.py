"""Shared fixtures for server features: a real local env and clients of the app.

    def test_something(server: Server) -> None:
        client = server.client()                      # TestClient of create_app(env)
        alice = server.sign_up(client, "alice@example.com")   # signed-in client + user
        other = server.client(AUTH_SIGNUP="false")   # settings overridden per client
        rows = server.run(server.env.DB.prepare("SELECT ...").all)   # env calls

The env (bindings DB, KV, BUCKET on the local provider, fresh per test, server
migrations applied) lives in one event loop on a background thread; every client
runs its requests in that same loop, so bindings never cross event loops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi.testclient import TestClient

from flarebase.platform import Env, open_env
from flarebase.platform.migrations import apply_migrations
from flarebase.server import create_app
from flarebase.server import durable_objects as server_durable_objects
from flarebase.server.settings import Settings

from ..helpers import SERVER_MIGRATIONS, wrangler_toml

SECRET = "test-secret-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery"
# Fast bcrypt for tests; every other setting is the default unless a test says so.
TEST_VARS: dict[str, Any] = {"AUTH_SECRET": SECRET, "AUTH_BCRYPT_ROUNDS": 4}

WRANGLER = wrangler_toml("flarebase-server-tests", TEST_VARS, migrations_dir=None)

T = TypeVar("T")


@dataclass
class Server:
    env: Env
    portal: BlockingPortal

    def settings(self, **overrides: Any) -> Settings:
        return Settings.from_env({**TEST_VARS, **overrides})

    def client(self, *, raise_server_exceptions: bool = True, **overrides: Any) -> TestClient:
        """A client of `create_app(env)` with TEST_VARS plus `overrides` as settings."""
        app = create_app(self.env, self.settings(**overrides))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.portal = self.portal  # run the app in the env's event loop
        return client

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await `fn(*args)` in the env's event loop (for direct binding calls)."""
        return self.portal.call(fn, *args)

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return self.run(self.env.DB.prepare(query).bind(*params).all).results

    def sign_up(
        self, client: TestClient, email: str, password: str = PASSWORD, **extra: Any
    ) -> dict[str, Any]:
        """Sign `client` up (its cookie holds the session); the JSON answer."""
        r = client.post("/api/auth/signup", json={"email": email, "password": password, **extra})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def make_admin(self, user_id: str) -> None:
        self.sql("UPDATE users SET role = 'admin' WHERE id = ?", user_id)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = tmp_path / "wrangler.toml"
    config.write_text(WRANGLER, encoding="utf-8")
    with start_blocking_portal() as portal:
        opened = open_env(
            config, state_dir=tmp_path / "state", durable_objects=server_durable_objects()
        )
        with portal.wrap_async_context_manager(opened) as env:
            portal.call(apply_migrations, env.DB, SERVER_MIGRATIONS)
            yield Server(env, portal)
