"""`open_env`: the bindings named in wrangler.toml, backed by one provider.

Shaped like wrangler's `getPlatformProxy()`: the caller names a config file and
a provider once, then uses `env.<BINDING>` exactly as a Worker would.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from .config import Project, load_project
from .errors import ConfigError


class Provider(Protocol):
    """Makes bindings from specs. Each method may raise ConfigError if unsupported."""

    name: str

    def d1(self, spec: Any) -> Any: ...
    def kv(self, spec: Any) -> Any: ...
    def r2(self, spec: Any) -> Any: ...
    def vectorize(self, spec: Any) -> Any: ...
    def durable_object(self, spec: Any) -> Any: ...
    def queue(self, spec: Any) -> Any: ...
    async def start(self, env: Env) -> None: ...
    async def aclose(self) -> None: ...


ProviderFactory = Callable[..., Provider]
_PROVIDERS: dict[str, Callable[[], ProviderFactory]] = {}


def register_provider(name: str, load: Callable[[], ProviderFactory]) -> None:
    """`load` is called lazily so that unused providers are never imported."""
    _PROVIDERS[name] = load


def _local() -> ProviderFactory:
    from .local import LocalProvider

    return LocalProvider


register_provider("local", _local)


def _bridge() -> ProviderFactory:
    from .bridge import BridgeProvider

    return BridgeProvider


register_provider("bridge", _bridge)


def _api() -> ProviderFactory:
    from .api import ApiProvider

    return ApiProvider


register_provider("api", _api)


def _miniflare() -> ProviderFactory:
    from .miniflare import MiniflareProvider

    return MiniflareProvider


register_provider("miniflare", _miniflare)


class Env:
    """The bindings and vars of one project: `env.DB`, `env["DB"]`, `env.vars`."""

    def __init__(self, project: Project, bindings: dict[str, Any], vars: dict[str, Any]) -> None:
        self.project = project
        self.vars = vars
        self._bindings = bindings

    def __getattr__(self, name: str) -> Any:
        try:
            return self._bindings[name] if name in self._bindings else self.vars[name]
        except KeyError:
            raise AttributeError(
                f"no binding or var {name!r} in {self.project.path}; "
                f"bindings: {', '.join(self._bindings) or 'none'}"
            ) from None

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in self._bindings or name in self.vars

    def __iter__(self) -> Iterator[str]:
        return iter(self._bindings)

    def bindings(self) -> dict[str, Any]:
        return dict(self._bindings)


def make_provider(name: str, project: Project, **options: Any) -> Provider:
    if name not in _PROVIDERS:
        raise ConfigError(f"unknown provider {name!r}; known: {', '.join(sorted(_PROVIDERS))}")
    return _PROVIDERS[name]()(project, **options)


def build_bindings(project: Project, provider: Provider) -> dict[str, Any]:
    bindings: dict[str, Any] = {}
    bindings |= {s.binding: provider.d1(s) for s in project.d1_databases}
    bindings |= {s.binding: provider.kv(s) for s in project.kv_namespaces}
    bindings |= {s.binding: provider.r2(s) for s in project.r2_buckets}
    bindings |= {s.binding: provider.vectorize(s) for s in project.vectorize}
    bindings |= {s.name: provider.durable_object(s) for s in project.durable_objects}
    bindings |= {s.binding: provider.queue(s) for s in project.queue_producers}
    return bindings


def read_vars(project: Project) -> dict[str, Any]:
    """[vars], then `.dev.vars` beside the config (as wrangler dev does), then the
    process environment for names already declared (secrets override vars)."""
    values = dict(project.vars)
    dev_vars = project.root / ".dev.vars"
    if dev_vars.exists():
        values.update(parse_dotenv(dev_vars))
    for name in values:
        if name in os.environ:
            values[name] = os.environ[name]
    return values


def parse_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{n}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@asynccontextmanager
async def open_env(
    config: str | Path | Project = "wrangler.toml",
    *,
    provider: str = "local",
    environment: str | None = None,
    **options: Any,
) -> AsyncIterator[Env]:
    """Open the bindings of `config` on `provider`; close them on exit.

    Options go to the provider (local: `state_dir`; bridge: `url`, `secret`; miniflare:
    `state_dir`, `persist`).
    """
    project = config if isinstance(config, Project) else load_project(config, environment)
    backend = make_provider(provider, project, **options)
    try:
        env = Env(project, build_bindings(project, backend), read_vars(project))
        await backend.start(env)
        yield env
    finally:
        await backend.aclose()
