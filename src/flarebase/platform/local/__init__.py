"""The embedded provider: every product on SQLite files and a folder, no server.

State lives under `state_dir` (default `.flarebase/state` beside the config):
  d1/<database_name>.sqlite3   kv/<namespace id>.sqlite3   r2/<bucket>/...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import D1Spec, KVSpec, Project, R2Spec
from ..errors import ConfigError


class LocalProvider:
    name = "local"

    def __init__(
        self,
        project: Project,
        state_dir: str | Path | None = None,
        *,
        durable_objects: dict[str, Any] | None = None,
        queue_consumers: dict[str, Any] | None = None,
        do_idle_timeout: float = 70.0,
        do_alarm_retry_base: float = 2.0,
        queue_poll_interval: float = 1.0,
        **options: Any,
    ):
        if options:
            raise ConfigError(f"local provider: unknown options {', '.join(sorted(options))}")
        self.project = project
        self.state_dir = Path(state_dir) if state_dir else project.root / ".flarebase" / "state"
        self._closables: list[Any] = []
        # Durable Object classes by class_name and queue consumer functions by queue name
        # (wrangler.toml names neither the Python class nor the function).
        from .durable_objects import LocalDurableObjects
        from .queues import LocalQueues

        self._durable_objects = LocalDurableObjects(
            project,
            self.state_dir / "do",
            durable_objects,
            idle_timeout=do_idle_timeout,
            alarm_retry_base=do_alarm_retry_base,
        )
        self._queues = LocalQueues(
            project, self.state_dir / "queues", queue_consumers, poll_interval=queue_poll_interval
        )

    def _keep(self, binding: Any) -> Any:
        self._closables.append(binding)
        return binding

    def d1(self, spec: D1Spec) -> Any:
        from .d1 import LocalD1

        return self._keep(LocalD1(self.state_dir / "d1" / f"{spec.name}.sqlite3"))

    def kv(self, spec: KVSpec) -> Any:
        from .kv import LocalKV

        return self._keep(LocalKV(self.state_dir / "kv" / f"{spec.name}.sqlite3"))

    def r2(self, spec: R2Spec) -> Any:
        from .r2 import LocalR2

        return self._keep(LocalR2(self.state_dir / "r2" / spec.name))

    def vectorize(self, spec: Any) -> Any:
        from .vectorize import LocalVectorize

        # Opened on first use: `flarebase vectorize create` may run after the env opens.
        folder = self.state_dir / "vectorize" / spec.index_name
        return self._keep(LocalVectorize(folder, spec.index_name))

    def durable_object(self, spec: Any) -> Any:
        return self._durable_objects.namespace(spec)

    def queue(self, spec: Any) -> Any:
        return self._queues.binding(spec)

    async def start(self, env: Any) -> None:
        for binding in self._closables:
            start = getattr(binding, "start", None)
            if start is not None:
                await start()
        await self._durable_objects.start(env)  # alarms, eviction of idle objects
        await self._queues.start(env)  # push consumers

    async def aclose(self) -> None:
        await self._queues.aclose()
        await self._durable_objects.aclose()
        for binding in reversed(self._closables):
            await binding.aclose()
