"""The `bridge` provider: the real bindings of a deployed bridge Worker, over HTTPS.

    async with open_env("wrangler.toml", provider="bridge",
                        url="https://flarebase-bridge.example.workers.dev",
                        secret=os.environ["BRIDGE_SECRET"]) as env:
        await env.DB.prepare("SELECT 1").all()

`url` and `secret` default to $FLAREBASE_BRIDGE_URL and $FLAREBASE_BRIDGE_SECRET.
The bindings are the ones the project's wrangler.toml names; the Worker (bridge/)
must have bindings of the same names. The same Worker runs locally on Miniflare
(`flarebase.platform.bridge.miniflare`), which is how the conformance suite
compares the local provider with Cloudflare's own implementations.

Options: `timeout` (seconds, or an httpx.Timeout), `retries` (for transient
failures; see client.py for which), `max_batch` (ops per request, default 50: each op
is a binding call of the Worker's invocation, and the Free plan allows 50 D1 queries
per invocation),
`idempotency=True` (give non-idempotent writes an idempotency key so that they may
be retried too; needs the Worker's BRIDGE_LEDGER Durable Object), `transport` (an
httpx transport, for tests). `state_dir` is accepted and unused, so that code
written for the local provider can switch by name: the state lives behind the
Worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from ..config import D1Spec, KVSpec, Project, R2Spec
from ..errors import ConfigError
from .client import BridgeAuthError, BridgeClient, BridgeError, BridgeUnavailable

__all__ = [
    "BridgeAuthError",
    "BridgeClient",
    "BridgeError",
    "BridgeProvider",
    "BridgeUnavailable",
]


class BridgeProvider:
    name = "bridge"

    def __init__(
        self,
        project: Project,
        url: str | None = None,
        secret: str | None = None,
        *,
        state_dir: str | Path | None = None,
        timeout: float | httpx.Timeout = 60.0,
        retries: int = 3,
        max_batch: int = 50,
        idempotency: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        for hosted in ("durable_objects", "queue_consumers"):
            if options.pop(hosted, None):
                raise ConfigError(
                    f"bridge provider: {hosted} written in Python run in the local provider; "
                    "on Cloudflare they are the Worker's own"
                )
        if options:
            raise ConfigError(f"bridge provider: unknown options {', '.join(sorted(options))}")
        url = url or os.environ.get("FLAREBASE_BRIDGE_URL")
        secret = secret or os.environ.get("FLAREBASE_BRIDGE_SECRET")
        if not url:
            raise ConfigError("bridge provider: give url= (or set FLAREBASE_BRIDGE_URL)")
        if not secret:
            raise ConfigError("bridge provider: give secret= (or set FLAREBASE_BRIDGE_SECRET)")
        self.project = project
        self.client = BridgeClient(
            url,
            secret,
            timeout=timeout,
            retries=retries,
            max_batch=max_batch,
            idempotency=idempotency,
            transport=transport,
        )

    def d1(self, spec: D1Spec) -> Any:
        from .d1 import BridgeD1

        return BridgeD1(self.client, spec.binding)

    def kv(self, spec: KVSpec) -> Any:
        from .kv import BridgeKV

        return BridgeKV(self.client, spec.binding)

    def r2(self, spec: R2Spec) -> Any:
        from .r2 import BridgeR2

        return BridgeR2(self.client, spec.binding)

    def vectorize(self, spec: Any) -> Any:
        from .vectorize import BridgeVectorize

        return BridgeVectorize(self.client, spec.binding)

    def durable_object(self, spec: Any) -> Any:
        from .durable_objects import BridgeDurableObjectNamespace

        return BridgeDurableObjectNamespace(spec.name, spec.class_name)

    def queue(self, spec: Any) -> Any:
        from .queues import BridgeQueue

        return BridgeQueue(self.client, spec.binding, spec.queue)

    async def start(self, env: Any) -> None:
        pass

    async def aclose(self) -> None:
        await self.client.aclose()
