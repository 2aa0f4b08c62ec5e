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

    def __init__(self, project: Project, state_dir: str | Path | None = None, **options: Any):
        if options:
            raise ConfigError(f"local provider: unknown options {', '.join(sorted(options))}")
        self.project = project
        self.state_dir = Path(state_dir) if state_dir else project.root / ".flarebase" / "state"
        self._closables: list[Any] = []

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
        raise ConfigError("local provider: Vectorize is not available yet")

    def durable_object(self, spec: Any) -> Any:
        raise ConfigError("local provider: Durable Objects are not available yet")

    def queue(self, spec: Any) -> Any:
        raise ConfigError("local provider: Queues are not available yet")

    async def start(self, env: Any) -> None:
        for binding in self._closables:
            start = getattr(binding, "start", None)
            if start is not None:
                await start()

    async def aclose(self) -> None:
        for binding in reversed(self._closables):
            await binding.aclose()
