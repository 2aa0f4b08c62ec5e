"""`WorkersEnv`: a Worker's `env`, its bindings wrapped in flarebase's Python API.

    env = WorkersEnv(self.env)            # in a WorkerEntrypoint or DurableObject
    await env.DB.prepare("SELECT 1").all()  # -> D1Result, as with the local provider

`self.env` may be the raw JS env or the Workers SDK's wrapper of it; both work.
Which product a binding is comes from `kinds` (what `flarebase deploy` writes into
the generated entry point, from wrangler.toml) or, for names not listed there,
from the methods the binding has. Strings and other JSON values are vars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import ConfigError
from ._ffi import JsProxy, is_null, require_runtime, to_py

KINDS = ("d1", "kv", "r2", "vectorize", "durable_object", "queue", "var", "raw")

# A method that only that product's binding has (checked in this order).
_SIGNATURES = (
    ("prepare", "d1"),
    ("getWithMetadata", "kv"),
    ("createMultipartUpload", "r2"),
    ("idFromName", "durable_object"),
    ("sendBatch", "queue"),
    ("getByIds", "vectorize"),
)


def unwrap(value: Any) -> Any:
    """The JS object behind the Workers SDK's wrappers (env, DO namespaces and stubs)."""
    for name in ("_env", "_binding"):
        inner = getattr(value, name, None) if not isinstance(value, JsProxy) else None
        if inner is not None:
            return unwrap(inner)
    return value


def detect_kind(binding: Any) -> str:
    """The product of a raw JS binding, from its methods; "var" for plain values."""
    if not isinstance(binding, JsProxy):
        return "var"
    for method, kind in _SIGNATURES:
        if hasattr(binding, method):
            return kind
    if getattr(binding, "typeof", "object") == "object" and _is_plain(binding):
        return "var"  # a JSON var ([vars] table values may be objects)
    return "raw"


def _is_plain(value: Any) -> bool:
    try:
        ctor = value.constructor
        return ctor is not None and str(ctor.name) in ("Object", "Array")
    except AttributeError:
        return False


def _wrapper(kind: str) -> Callable[[Any], Any]:
    if kind == "d1":
        from .d1 import WorkersD1

        return WorkersD1
    if kind == "kv":
        from .kv import WorkersKV

        return WorkersKV
    if kind == "r2":
        from .r2 import WorkersR2

        return WorkersR2
    if kind == "vectorize":
        from .vectorize import WorkersVectorize

        return WorkersVectorize
    if kind == "durable_object":
        from .durable_objects import WorkersDurableObjectNamespace

        return WorkersDurableObjectNamespace
    if kind == "queue":
        from .queues import WorkersQueue

        return WorkersQueue
    if kind == "var":
        return to_py
    if kind == "raw":
        return lambda binding: binding
    raise ConfigError(f"unknown binding kind {kind!r}; known: {', '.join(KINDS)}")


def wrap_binding(binding: Any, kind: str | None = None) -> Any:
    """One JS binding in flarebase's API (`kind` detected when not given)."""
    binding = unwrap(binding)
    return _wrapper(kind or detect_kind(binding))(binding)


class WorkersEnv:
    """The bindings and vars of a Worker: `env.DB`, `env["DB"]`, `env.vars`, `"DB" in env`.

    Shaped like `flarebase.platform.Env`, so the server takes either.
    """

    def __init__(self, env: Any, kinds: Mapping[str, str] | None = None) -> None:
        self.raw = unwrap(env)
        self._kinds = dict(kinds or {})
        self._cache: dict[str, Any] = {}
        names = [str(n) for n in require_runtime().Object.keys(self.raw)]
        self._names = names
        for name, kind in self._kinds.items():
            if kind not in KINDS:
                raise ConfigError(f"binding {name}: unknown kind {kind!r}; known: {KINDS}")
        self.vars: dict[str, Any] = {
            name: self._get(name) for name in names if self.kind(name) == "var"
        }

    def kind(self, name: str) -> str:
        if name not in self._kinds:
            self._kinds[name] = detect_kind(getattr(self.raw, name))
        return self._kinds[name]

    def _get(self, name: str) -> Any:
        if name not in self._cache:
            value = getattr(self.raw, name, None)
            if is_null(value):
                raise AttributeError(name)
            self._cache[name] = _wrapper(self.kind(name))(value)
        return self._cache[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(
                f"no binding or var {name!r} in this Worker's env; "
                f"bindings: {', '.join(self) or 'none'}"
            )
        return self._get(name)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._names if self.kind(name) != "var")

    def bindings(self) -> dict[str, Any]:
        return {name: self._get(name) for name in self}


def wrap_env(env: Any, kinds: Mapping[str, str] | None = None) -> WorkersEnv:
    """A Worker's `env` (raw or the SDK's wrapper) with every binding in flarebase's API."""
    return env if isinstance(env, WorkersEnv) else WorkersEnv(env, kinds)
