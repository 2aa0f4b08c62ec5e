"""The `workers` provider: the runtime's bindings, inside a Python Worker (Pyodide).

`wrap_env(self.env)` gives the Worker's bindings with exactly the Python API of
the `local` provider (same method names, same result types), so code moves
between providers unchanged. Thin and dependency-free: the standard library and
Pyodide's `js`/`pyodide.ffi` only, so it imports in a bare Pyodide. It also
imports (but does not run) in CPython, for type checking.

Every value crosses the FFI through `_ffi`; every JS error becomes flarebase's
typed error with Cloudflare's message (`errors`). Needs Pyodide 0.28 or later
(Python Workers with compatibility_date 2025-09-29 or later), where JS null
arrives as `jsnull` and can be sent back as null.
"""

from __future__ import annotations

from .d1 import WorkersD1, WorkersStatement
from .durable_objects import (
    WorkersDurableObjectId,
    WorkersDurableObjectNamespace,
    WorkersDurableObjectStub,
)
from .env import WorkersEnv, detect_kind, unwrap, wrap_binding, wrap_env
from .kv import WorkersKV
from .queues import WorkersQueue, dispatch_batch
from .r2 import WorkersR2
from .vectorize import WorkersVectorize

__all__ = [
    "WorkersD1",
    "WorkersDurableObjectId",
    "WorkersDurableObjectNamespace",
    "WorkersDurableObjectStub",
    "WorkersEnv",
    "WorkersKV",
    "WorkersQueue",
    "WorkersR2",
    "WorkersStatement",
    "WorkersVectorize",
    "detect_kind",
    "dispatch_batch",
    "unwrap",
    "wrap_binding",
    "wrap_env",
]
