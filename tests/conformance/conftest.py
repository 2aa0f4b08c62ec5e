"""Every test here runs once per provider in FLAREBASE_TEST_PROVIDERS (default: local)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flarebase.platform import Env, open_env

CONFIG = Path(
    os.environ.get("FLAREBASE_CONFORMANCE_CONFIG") or Path(__file__).with_name("wrangler.toml")
)
PROVIDERS = [p.strip() for p in os.environ.get("FLAREBASE_TEST_PROVIDERS", "local").split(",")]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def env(provider: str, tmp_path: Path) -> AsyncIterator[Env]:
    """A fresh env on the conformance bindings (fresh state for each test)."""
    async with open_env(CONFIG, provider=provider, state_dir=tmp_path / "state") as env:
        yield env
