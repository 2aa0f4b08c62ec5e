"""The bridge Worker on Miniflare, for tests of the bridge's own behaviour: signing,
replay protection, batching, retries, streaming and the Vectorize path (on a mock)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flarebase.platform import Env, load_project, open_env

CONFIG = Path(__file__).with_name("wrangler.toml")


def miniflare_bridge(**options: Any) -> Any:
    from flarebase.platform.bridge.miniflare import MiniflareBridge, bridge_dir

    if shutil.which("node") is None or not (bridge_dir() / "node_modules" / "miniflare").exists():
        pytest.skip("needs Node and bridge/node_modules (scripts/bootstrap --node)")
    return MiniflareBridge(load_project(CONFIG), **options)


@pytest.fixture(scope="session")
def bridge() -> Iterator[Any]:
    with miniflare_bridge(allow_reset=True, consume_queues=True, vectorize_mocks=["INDEX"]) as b:
        yield b


@pytest.fixture
async def env(bridge: Any) -> AsyncIterator[Env]:
    bridge.reset()
    async with open_env(CONFIG, provider="bridge", url=bridge.url, secret=bridge.secret) as env:
        yield env
