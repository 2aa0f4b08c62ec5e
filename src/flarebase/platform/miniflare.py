"""The `miniflare` provider: Cloudflare's own D1, KV, R2 and Queues, offline.

    async with open_env("wrangler.toml", provider="miniflare",
                        durable_objects=flarebase.server.durable_objects()) as env:
        await env.DB.prepare("SELECT 1").all()      # D1 on Miniflare

It starts the bridge Worker on Miniflare (`bridge.miniflare.MiniflareBridge`, node and
bridge/node_modules needed) with the project's bindings, and opens the `bridge`
provider against it. What Miniflare cannot stand behind stays on the `local` provider:

    D1, KV, R2           Miniflare, through the bridge
    queue producers      Miniflare, except for a queue with a [[queues.consumers]] entry:
                         its consumer is a Python function, which only the local queues
                         deliver to (Miniflare would keep its messages from it)
    Vectorize            local: Miniflare has no Vectorize
    Durable Objects      local: the classes are Python, run in this process (their storage
                         is SQLite under state_dir/do); their `env` is this mixed env, so
                         a ChatStream writes D1 and R2 on Miniflare

State: Miniflare persists D1, KV, R2 and its queues under `state_dir/miniflare/`, apart
from the local provider's files (`state_dir/d1/`, ...), so `--provider local` and
`--provider miniflare` never see each other's data; `persist=False` keeps Miniflare's
state in memory (gone at close). Starting Miniflare takes a few seconds and blocks
while the env opens, once. Options other than `persist` go to the local provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Project
from .env import Env


class MiniflareProvider:
    name = "miniflare"

    def __init__(
        self,
        project: Project,
        state_dir: str | Path | None = None,
        *,
        persist: bool = True,
        **local_options: Any,
    ) -> None:
        from .bridge import BridgeProvider
        from .bridge.miniflare import MiniflareBridge
        from .local import LocalProvider

        self.local = LocalProvider(project, state_dir, **local_options)
        self.consumed = {spec.queue for spec in project.queue_consumers}
        persisted = self.local.state_dir / "miniflare" if persist else None
        # Producers of consumed queues stay local, so Miniflare does not bind them.
        served = project.model_copy(
            update={
                "queue_producers": [
                    s for s in project.queue_producers if s.queue not in self.consumed
                ]
            }
        )
        self.miniflare = MiniflareBridge(served, persist=persisted)
        self.miniflare.start()
        try:
            self.bridge = BridgeProvider(project, self.miniflare.url, self.miniflare.secret)
        except BaseException:
            self.miniflare.stop()
            raise

    @property
    def url(self) -> str:
        """Where the bridge Worker listens (loopback)."""
        return self.miniflare.url

    def d1(self, spec: Any) -> Any:
        return self.bridge.d1(spec)

    def kv(self, spec: Any) -> Any:
        return self.bridge.kv(spec)

    def r2(self, spec: Any) -> Any:
        return self.bridge.r2(spec)

    def vectorize(self, spec: Any) -> Any:
        return self.local.vectorize(spec)

    def durable_object(self, spec: Any) -> Any:
        return self.local.durable_object(spec)

    def queue(self, spec: Any) -> Any:
        return (self.local if spec.queue in self.consumed else self.bridge).queue(spec)

    async def start(self, env: Env) -> None:
        await self.local.start(env)  # Durable Object alarms, queue consumers

    async def aclose(self) -> None:
        # Objects and consumers first: they may still write through the bridge.
        try:
            await self.local.aclose()
            await self.bridge.aclose()
        finally:
            self.miniflare.stop()
