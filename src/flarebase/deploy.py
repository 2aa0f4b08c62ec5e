"""`flarebase deploy --target python-worker`: flarebase as a Cloudflare Python Worker.

`plan_python_worker(config)` reads the project's wrangler.toml and gives the files of
a Worker that `pywrangler` deploys, in an output folder (default
`.flarebase/python-worker/` beside the config):

    wrangler.toml    the project's config, plus `main = "src/entry.py"`,
                     `compatibility_flags = ["python_workers"]` and a compatibility
                     date of at least 2025-09-29 (Pyodide 0.28.2); every binding,
                     Durable Object migration and queue consumer kept as it is
    pyproject.toml   the server's dependencies, for pywrangler (uv)
    src/entry.py     the generated entry point (see ENTRY below)
    src/flarebase/   flarebase itself, vendored (it is not on PyPI)

`deploy_python_worker(plan, dry_run=...)` writes them and runs (or, dry, prints)
`uv run pywrangler deploy` in that folder.

The Worker's dependencies (WORKER_DEPENDENCIES) are the server's: each is either
shipped by Pyodide 0.28.2 or a pure-Python wheel that pywrangler installs. The
rest of flarebase's dependencies are not needed there (NOT_IN_WORKER).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .platform.config import Project, load_project, strip_jsonc
from .platform.errors import ConfigError

MIN_COMPATIBILITY_DATE = "2025-09-29"  # Python Workers on Pyodide 0.28.2
DEFAULT_APP = "flarebase.server.app:create_app"
COMMAND = ["uv", "run", "pywrangler", "deploy"]

# (requirement, where a Python Worker gets it)
WORKER_DEPENDENCIES: list[tuple[str, str]] = [
    ("fastapi>=0.115", "pure-Python wheel from PyPI, installed by pywrangler"),
    ("starlette", "pure-Python wheel from PyPI (FastAPI's)"),
    ("python-multipart", "pure-Python wheel from PyPI (uploads)"),
    ("joserfc", "pure-Python wheel from PyPI (sign-in tokens)"),
    ("pydantic>=2.7", "shipped by Pyodide 0.28.2 (2.10.6, with pydantic-core)"),
    ("httpx", "shipped by Pyodide 0.28.2 (0.28.1); only async requests work"),
    ("anyio", "shipped by Pyodide 0.28.2 (4.9.0)"),
    ("cryptography", "shipped by Pyodide 0.28.2 (45.0.5)"),
    ("bcrypt", "shipped by Pyodide 0.28.2 (4.3.0)"),
]
# (package, why a Worker does without it)
NOT_IN_WORKER: list[tuple[str, str]] = [
    ("typer, rich", "the CLI only"),
    ("uvicorn", "the local server only: a Worker serves through the runtime's ASGI adapter"),
    ("psycopg[binary]", "migrations from Postgres only; a compiled extension Pyodide lacks"),
    ("numpy", "the local Vectorize only (Pyodide ships it; a Worker uses the real Vectorize)"),
    ("sqlite3", "the local provider only (a Worker uses the real D1, KV, R2, DOs, Queues)"),
]

_KINDS = (
    ("d1_databases", "binding", "d1"),
    ("kv_namespaces", "binding", "kv"),
    ("r2_buckets", "binding", "r2"),
    ("vectorize", "binding", "vectorize"),
)


@dataclass
class PythonWorkerPlan:
    """What `deploy_python_worker` writes (`files`, relative to `out_dir`) and runs."""

    project: Project
    out_dir: Path
    files: dict[str, str]
    command: list[str] = field(default_factory=lambda: list(COMMAND))

    def describe(self) -> str:
        lines = [f"{self.out_dir}/{name}" for name in sorted(self.files)]
        lines.append(f"{self.out_dir}/src/flarebase/ (vendored)")
        return "\n".join(lines)


# -- wrangler.toml ------------------------------------------------------------------------------


def _raw_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    data: dict[str, Any] = json.loads(strip_jsonc(text))
    return data


def worker_config(project: Project, out_dir: Path) -> dict[str, Any]:
    """The project's config as the Python Worker's: entry point, flag, date, paths."""
    raw = _raw_config(project.path)
    raw.pop("$schema", None)
    config: dict[str, Any] = {"name": raw.pop("name", None) or project.name or "flarebase"}
    config["main"] = "src/entry.py"
    raw.pop("main", None)
    date = str(raw.pop("compatibility_date", "") or "")
    config["compatibility_date"] = max(date, MIN_COMPATIBILITY_DATE)
    flags = list(raw.pop("compatibility_flags", []) or [])
    config["compatibility_flags"] = flags + [f for f in ("python_workers",) if f not in flags]
    for db in raw.get("d1_databases") or []:
        folder = project.root / db.get("migrations_dir", "migrations")
        db["migrations_dir"] = Path(os.path.relpath(folder, out_dir)).as_posix()
    config.update(raw)
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} to wrangler.toml")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars and inline arrays first, then tables and arrays of tables."""
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict) or _is_table_list(value):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines)
    for key, value in nested:
        name = f"{prefix}{_toml_key(key)}"
        if isinstance(value, dict):
            body = to_toml(value, f"{name}.")
            out += f"\n\n[{name}]\n{body}" if body.strip() else f"\n\n[{name}]"
        else:
            for item in value:
                out += f"\n\n[[{name}]]\n{to_toml(item, f'{name}.')}"
    return out.strip("\n") + "\n" if not prefix else out.strip("\n")


# -- entry.py -----------------------------------------------------------------------------------

ENTRY = '''"""The Worker entry point, generated by `flarebase deploy --target python-worker`.

Regenerate it instead of editing it. `fetch` hands each request to flarebase's ASGI
app, `queue` hands each batch to the consumer of its queue, and each Durable Object
class hosts the flarebase class of the same name. The env is wrapped once
(flarebase.platform.workers), so the app sees the local provider's Python API.
Nothing is created at import (imports are snapshotted at deploy).
"""

from workers import DurableObject, WorkerEntrypoint

from flarebase.platform.workers.runtime import App, DurableObjectHost, serve_queue

# Binding name -> product, from wrangler.toml.
BINDINGS = {bindings}

# Queue name -> consumer ("module:function"), for [[queues.consumers]].
CONSUMERS = {consumers}

APP = App({app!r}, BINDINGS)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await APP.fetch(request, self.env)

    async def queue(self, batch):
        await serve_queue(batch, self.env, CONSUMERS, BINDINGS)
'''

HOST = '''

class {name}(DurableObject):
    """Hosts {target} (a flarebase Durable Object)."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self._host = DurableObjectHost({target!r}, ctx, env, BINDINGS)

    async def fetch(self, request):
        return await self._host.fetch(request)

    async def alarm(self, *args):
        await self._host.alarm(*args)
'''

RPC = """
    async def {method}(self, *args):
        return await self._host.call({method!r}, args)
"""


def _target(value: str | type | Callable[..., Any]) -> str:
    if isinstance(value, str):
        return value
    return f"{value.__module__}:{value.__qualname__}"


def entry_source(
    project: Project,
    *,
    app: str = DEFAULT_APP,
    classes: Mapping[str, str | type] | None = None,
    consumers: Mapping[str, str | Callable[..., Any]] | None = None,
) -> str:
    """src/entry.py for `project`: one host class per Durable Object class it declares."""
    from .platform.workers.runtime import load, rpc_methods

    kinds = {
        getattr(spec, attr): kind
        for section, attr, kind in _KINDS
        for spec in getattr(project, section)
    }
    kinds |= {spec.name: "durable_object" for spec in project.durable_objects}
    kinds |= {spec.binding: "queue" for spec in project.queue_producers}
    kinds |= {name: "var" for name in project.vars}
    wanted = {spec.queue for spec in project.queue_consumers if spec.type != "http_pull"}
    given = {queue: _target(fn) for queue, fn in (consumers or {}).items()}
    missing = sorted(wanted - set(given))
    if missing:
        raise ConfigError(
            f"{project.path}: no consumer function for queue(s) {', '.join(missing)}; "
            "pass --consumer QUEUE=module:function"
        )
    source = ENTRY.format(
        bindings=json.dumps(kinds, indent=4),
        consumers=json.dumps(given, indent=4),
        app=app,
    )
    registry = {name: _target(cls) for name, cls in (classes or {}).items()}
    for class_name in dict.fromkeys(s.class_name for s in project.durable_objects):
        if class_name not in registry:
            raise ConfigError(
                f"{project.path}: no Python class for Durable Object class {class_name}; "
                f"known: {', '.join(registry) or 'none'}"
            )
        target = registry[class_name]
        source += HOST.format(name=class_name, target=target)
        for method in rpc_methods(load(target)):
            source += RPC.format(method=method)
    return source


# -- pyproject.toml -----------------------------------------------------------------------------


def pyproject_source(name: str) -> str:
    data = {
        "project": {
            "name": f"{name}-worker",
            "version": "0.1.0",
            "description": "flarebase as a Python Worker (generated by flarebase deploy)",
            "requires-python": ">=3.12",
            "dependencies": [requirement for requirement, _ in WORKER_DEPENDENCIES],
        },
        "dependency-groups": {"dev": ["workers-py", "workers-runtime-sdk"]},
    }
    return to_toml(data)


# -- the plan -----------------------------------------------------------------------------------


def server_classes() -> dict[str, type]:
    """flarebase's own Durable Object classes (ChatStream, ...)."""
    from .server import durable_objects

    return dict(durable_objects())


def plan_python_worker(
    config: str | Path | Project = "wrangler.toml",
    out_dir: str | Path | None = None,
    *,
    app: str = DEFAULT_APP,
    classes: Mapping[str, str | type] | None = None,
    consumers: Mapping[str, str | Callable[..., Any]] | None = None,
) -> PythonWorkerPlan:
    """The files of the Python Worker for `config` (nothing is written yet)."""
    project = config if isinstance(config, Project) else load_project(config)
    out = Path(out_dir) if out_dir else project.root / ".flarebase" / "python-worker"
    out = out.resolve()
    worker = worker_config(project, out)
    files = {
        "wrangler.toml": "# Generated by `flarebase deploy --target python-worker` from "
        f"{project.path.name}.\n" + to_toml(worker),
        "pyproject.toml": pyproject_source(str(worker["name"])),
        "src/entry.py": entry_source(
            project,
            app=app,
            classes=server_classes() if classes is None else classes,
            consumers=consumers,
        ),
    }
    return PythonWorkerPlan(project, out, files)


def write_plan(plan: PythonWorkerPlan) -> None:
    """Write the files and vendor flarebase's package into src/flarebase/."""
    for name, text in plan.files.items():
        path = plan.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    package = Path(__file__).parent
    target = plan.out_dir / "src" / "flarebase"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def deploy_python_worker(plan: PythonWorkerPlan, *, dry_run: bool = False) -> int:
    """Write the Worker's files, then run `uv run pywrangler deploy` there (unless dry)."""
    write_plan(plan)
    if dry_run:
        return 0
    if shutil.which(plan.command[0]) is None:
        raise ConfigError(f"{plan.command[0]} is not installed (pywrangler runs through uv)")
    return subprocess.run(plan.command, cwd=plan.out_dir, check=False).returncode
