"""`flarebase deploy --target python-worker`: the generated files, validated offline.

pywrangler and workerd's Python runtime cannot run here, so the files are checked
as far as they can be: wrangler.toml parses and keeps every binding, DO migration
and queue consumer of the project (flarebase's own config reader reads it back),
has the Python Workers flag and date; pyproject.toml lists the server's
dependencies for pywrangler; src/entry.py compiles and declares the entry point,
the queue handler and one host class per Durable Object class with its RPC
methods; flarebase is vendored beside it. The CLI's dry run prints the command.
"""

from __future__ import annotations

import ast
import asyncio
import sys
import tomllib
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flarebase.cli import app
from flarebase.deploy import (
    MIN_COMPATIBILITY_DATE,
    WORKER_DEPENDENCIES,
    plan_python_worker,
    to_toml,
    write_plan,
)
from flarebase.platform import ConfigError, load_project
from flarebase.platform.queues import MessageBatch
from flarebase.platform.workers.queues import dispatch_batch
from flarebase.platform.workers.runtime import App, rpc_methods
from flarebase.server.chat import ChatStream

from ..helpers import CHAT_BACKEND

REPO = Path(__file__).resolve().parents[2]

PROJECT = CHAT_BACKEND


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "migrations").mkdir(parents=True)
    config = root / "wrangler.toml"
    config.write_text(PROJECT)
    return config


def plan_for(config: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("consumers", {"jobs": "app.jobs:handle"})
    return plan_python_worker(config, **kwargs)


def test_wrangler_toml_keeps_every_binding_and_adds_python_workers(project: Path) -> None:
    plan = plan_for(project)
    assert plan.out_dir == (project.parent / ".flarebase" / "python-worker").resolve()
    config = tomllib.loads(plan.files["wrangler.toml"])
    source = tomllib.loads(PROJECT)
    assert config["main"] == "src/entry.py"
    assert config["compatibility_flags"] == ["nodejs_compat", "python_workers"]
    assert config["compatibility_date"] == MIN_COMPATIBILITY_DATE  # raised to Pyodide 0.28
    assert config["name"] == "chat-backend"
    assert config["vars"] == source["vars"]
    for section in ("kv_namespaces", "r2_buckets", "vectorize", "migrations", "queues"):
        assert config[section] == source[section], section
    assert config["durable_objects"] == source["durable_objects"]
    db = config["d1_databases"][0]
    assert {k: v for k, v in db.items() if k != "migrations_dir"} == {
        k: v for k, v in source["d1_databases"][0].items() if k != "migrations_dir"
    }
    # The migrations folder is the project's own, relative to the generated config.
    assert (plan.out_dir / db["migrations_dir"]).resolve() == project.parent / "migrations"


def test_generated_config_reads_back_as_the_same_project(project: Path) -> None:
    plan = plan_for(project)
    write_plan(plan)
    original, generated = load_project(project), load_project(plan.out_dir / "wrangler.toml")
    assert generated.binding_names() == original.binding_names()
    assert generated.vars == original.vars
    assert generated.durable_objects == original.durable_objects
    assert generated.do_migrations == original.do_migrations
    assert generated.queue_producers == original.queue_producers
    assert generated.queue_consumers == original.queue_consumers


def test_pyproject_lists_the_servers_dependencies_for_pywrangler(project: Path) -> None:
    data = tomllib.loads(plan_for(project).files["pyproject.toml"])
    assert data["project"]["name"] == "chat-backend-worker"
    assert data["project"]["dependencies"] == [req for req, _ in WORKER_DEPENDENCIES]
    assert "workers-py" in data["dependency-groups"]["dev"]
    names = {req.split(">")[0].split("[")[0] for req in data["project"]["dependencies"]}
    assert {"fastapi", "pydantic"} <= names
    assert not names & {"uvicorn", "psycopg", "typer"}  # not needed (or loadable) in a Worker


def test_entry_point_declares_fetch_queue_and_durable_object_hosts(project: Path) -> None:
    source = plan_for(project).files["src/entry.py"]
    tree = ast.parse(source)
    compile(tree, "entry.py", "exec")
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    default = classes["Default"]
    assert [b.id for b in default.bases if isinstance(b, ast.Name)] == ["WorkerEntrypoint"]
    assert {f.name for f in default.body if isinstance(f, ast.AsyncFunctionDef)} == {
        "fetch",
        "queue",
    }
    host = classes["ChatStream"]
    assert [b.id for b in host.bases if isinstance(b, ast.Name)] == ["DurableObject"]
    methods = {f.name for f in host.body if isinstance(f, ast.AsyncFunctionDef)}
    assert methods == {"fetch", "alarm", *rpc_methods(ChatStream)}
    assert {"start", "read", "stop"} <= methods
    assert "'jobs': 'app.jobs:handle'" in source.replace('"', "'")
    assert "'MEMORY': 'vectorize'" in source.replace('"', "'")
    assert "'JOBS': 'queue'" in source.replace('"', "'")
    # The entrypoint's ctx goes to the app: with it, the runtime's adapter streams SSE.
    assert "APP.fetch(request, self.env, self.ctx)" in source
    # No work at import: the module only defines names (the app is built on first request).
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert calls == []


def test_consumers_and_classes_must_be_known(project: Path) -> None:
    with pytest.raises(ConfigError, match="no consumer function for queue"):
        plan_python_worker(project)
    with pytest.raises(ConfigError, match="no Python class for Durable Object class ChatStream"):
        plan_for(project, classes={})


def test_flarebase_is_vendored_beside_the_entry_point(project: Path) -> None:
    plan = plan_for(project)
    write_plan(plan)
    vendored = plan.out_dir / "src" / "flarebase"
    assert (vendored / "platform" / "workers" / "runtime.py").is_file()
    assert (vendored / "server" / "app.py").is_file()
    assert not list(vendored.rglob("__pycache__"))
    assert (plan.out_dir / "src" / "entry.py").read_text() == plan.files["src/entry.py"]


def test_the_repositorys_own_config_deploys(tmp_path: Path) -> None:
    plan = plan_python_worker(REPO / "wrangler.toml", tmp_path / "out")
    config = tomllib.loads(plan.files["wrangler.toml"])
    assert "python_workers" in config["compatibility_flags"]
    assert "class ChatStream(DurableObject)" in plan.files["src/entry.py"]


def test_cli_dry_run_writes_files_and_prints_the_command(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "worker"
    result = CliRunner().invoke(
        app,
        [
            "deploy",
            "--target",
            "python-worker",
            "--config",
            str(project),
            "--out",
            str(out),
            "--consumer",
            "jobs=app.jobs:handle",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "would run" in result.output and "uv run pywrangler deploy" in result.output
    assert (out / "wrangler.toml").is_file() and (out / "src" / "entry.py").is_file()
    result = CliRunner().invoke(app, ["deploy", "--target", "lambda", "--config", str(project)])
    assert result.exit_code != 0


def test_toml_writer_round_trips() -> None:
    data = {
        "name": 'quote " and \\ and é',
        "n": 3,
        "f": 1.5,
        "ok": True,
        "list": [1, "two"],
        "inline": [{"a": 1}],
        "table": {"x": "y", "nested": {"z": 1}},
        "items": [{"k": 1, "sub": [{"deep": True}]}, {"k": 2}],
    }
    assert tomllib.loads(to_toml(data)) == data


# -- the queue handler's dispatch, with objects shaped like the runtime's -----------------------


class FakeMessage:
    def __init__(self, id: str, body: Any) -> None:
        self.id, self.body, self.attempts = id, body, 1
        self.timestamp = datetime(2025, 1, 1, tzinfo=UTC)
        self.outcome: tuple[str, Any] | None = None

    def ack(self) -> None:
        self.outcome = ("ack", None)

    def retry(self, options: Any = None) -> None:
        self.outcome = ("retry", options)


class FakeBatch:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.queue, self.messages = "jobs", messages


def test_dispatch_acks_and_retries_as_the_local_provider() -> None:
    messages = [FakeMessage(str(i), {"i": i}) for i in range(3)]
    seen: list[Any] = []

    async def handle(batch: MessageBatch, env: Any) -> None:
        seen.extend(m.body for m in batch.messages)
        batch.messages[1].retry()

    asyncio.run(dispatch_batch(FakeBatch(messages), None, handle))
    assert seen == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [m.outcome for m in messages] == [("ack", None), ("retry", None), ("ack", None)]

    async def fail(batch: MessageBatch, env: Any) -> None:
        batch.messages[0].ack()
        raise RuntimeError("consumer failed")

    messages = [FakeMessage(str(i), i) for i in range(2)]
    asyncio.run(dispatch_batch(FakeBatch(messages), None, fail))
    assert [m.outcome for m in messages] == [("ack", None), ("retry", None)]


@pytest.mark.parametrize("takes_ctx", [True, False])
def test_fetch_gives_ctx_to_an_adapter_that_takes_it(
    takes_ctx: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the Python Workers runtime's `asgi` module (workerd's Python runtime
    # cannot run here): the newer adapter streams a body only when given `ctx`.
    calls: list[tuple[Any, ...]] = []

    async def fetch_with_ctx(app: Any, req: Any, env: Any, ctx: Any = None) -> str:
        calls.append((app, req, ctx))
        return "response"

    async def fetch_without(app: Any, req: Any, env: Any) -> str:
        calls.append((app, req))
        return "response"

    adapter = types.ModuleType("asgi")
    adapter.fetch = fetch_with_ctx if takes_ctx else fetch_without  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgi", adapter)
    monkeypatch.setattr(App, "env", lambda self, js_env: js_env)  # (wrapping needs Pyodide)
    app = App(lambda env: "the app", {})
    assert asyncio.run(app.fetch("request", types.SimpleNamespace(), "ctx")) == "response"
    assert calls == ([("the app", "request", "ctx")] if takes_ctx else [("the app", "request")])
