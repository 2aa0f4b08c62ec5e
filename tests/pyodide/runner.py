"""A small test runner that runs inside Pyodide (started by run.mjs).

It runs the provider-agnostic conformance tests (tests/conformance/) and the
Pyodide-only checks (workers_suite.py) against Miniflare's real bindings,
through `flarebase.platform.workers`. pytest is not in a bare Pyodide, so
`shim/pytest.py` stands in for the part of its API the tests use, and this
module does the rest: collection, parametrize, fixtures (`env`, `provider`,
`tmp_path`, `monkeypatch`, the modules' own fixtures), a timeout per test, and a
JSON summary.

`flarebase.platform` is imported as it is (its `__init__` imports config.py, and so
pydantic, only when `load_project` or `open_env` is first used: a bare Pyodide has no
pydantic); the runner points the names the tests import at what works in a Worker.

Tests that cannot run here are listed in NOT_RUN with the reason; every other
test of the listed modules must pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import json
import sys
import tempfile
import time
import traceback
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

SRC = "/mnt/src"
TIMEOUT = 180.0  # seconds per test

# Modules whose tests run here (tests/conformance/<name>.py, or tests/pyodide/<name>.py).
CONFORMANCE = ["test_d1", "test_kv", "test_r2"]
PYODIDE_ONLY = ["workers_suite"]

# Whole conformance modules that are not run under Pyodide, and why.
MODULES_NOT_RUN = {
    "test_d1_local": "tests the local provider's own SQLite connection (local only)",
    "test_durable_objects": (
        "hosts Python Durable Object classes, which only the local provider can run here: "
        "workerd's Python runtime cannot start on these machines. Stub calls (RPC, fetch, "
        "ids) against a JavaScript Durable Object run in workers_suite.py instead"
    ),
    "test_vectorize": (
        "Miniflare has no local Vectorize (wrangler dev proxies it to Cloudflare), and the "
        "module imports the local provider (sqlite3 is not in a bare Pyodide)"
    ),
    "test_queues": (
        "registers Python queue consumers, which cannot run under Miniflare here; "
        "send/send_batch with every body type run in workers_suite.py instead"
    ),
}

_MINIFLARE_NO_WRITE_LIMIT = (
    "one write per second per key: Cloudflare enforces it (429) but Miniflare does not, "
    "and the adapter leaves limits to the runtime"
)
_REOPEN = (
    "reopens the project with open_env(wrangler.toml); in a Worker the bindings come "
    "from the runtime, not from a config and a state folder"
)
_D1_DOCS_LIMIT = (
    "the local provider holds D1 to the documented limit; workerd (so Miniflare and "
    "Cloudflare's runtime) enforces a different figure, a documented difference"
)

# Single tests not run under Pyodide, by "module::name" or "module::name[id]".
NOT_RUN: dict[str, str] = {
    "test_d1::test_value_types_round_trip": (
        "binds 2**62: D1 in a Worker takes JS numbers, so integers beyond 2**53 - 1 cannot "
        "be bound exactly; the adapter refuses them with D1_TYPE_ERROR "
        "(workers_suite::test_d1_unsafe_integers_are_refused)"
    ),
    "test_d1::test_dump_is_an_sqlite_image": (
        "D1's dump() is deprecated; Miniflare answers D1_DUMP_ERROR (the adapter maps it)"
    ),
    "test_d1::test_state_persists_across_reopen": _REOPEN,
    "test_d1::test_batch_failure_rolls_back_everything_and_names_the_statement": (
        "D1's batch error does not say which statement failed (the local provider adds it); "
        "the rollback itself is checked in workers_suite::test_d1_batch_failure_rolls_back"
    ),
    "test_d1::test_attach_is_refused": "writes a path of the local machine into SQL",
    "test_d1::test_exec_error_names_the_failing_line": (
        "Miniflare's D1 names line 1 whichever line of exec() failed; D1's docs say "
        "'Exec error in line x' (a strict xfail on the bridge, in conformance/conftest.py)"
    ),
    "test_d1::test_all_returns_rows_and_meta": (
        "Miniflare reports rows_read 0 for a SELECT that reads no table; the local provider "
        "counts the rows returned (the result shape itself is checked by the other tests)"
    ),
    "test_d1::test_extensions_fts5_json_math_rtree": (
        "Miniflare's D1 refuses R*Tree tables (not authorized: SQLITE_AUTH); FTS5, JSON and "
        "math are checked in workers_suite::test_d1_extensions_fts5_json_math"
    ),
    "test_d1::test_row_and_value_size_limit_2000000_bytes": _D1_DOCS_LIMIT,
    "test_d1::test_function_argument_limit_32": _D1_DOCS_LIMIT,
    "test_d1::test_like_pattern_limit_50_bytes": _D1_DOCS_LIMIT,
    "test_kv::test_one_write_per_second_per_key_then_last_write_wins": _MINIFLARE_NO_WRITE_LIMIT,
    "test_r2::test_one_write_per_second_per_key": _MINIFLARE_NO_WRITE_LIMIT,
    "test_r2::test_concurrent_writers_to_one_key": _MINIFLARE_NO_WRITE_LIMIT,
    "test_r2::test_objects_survive_reopening": _REOPEN,
    "test_r2::test_multipart_upload_resumes_after_reopening": _REOPEN,
    "test_r2::test_storage_class": "Miniflare ignores storageClass (every object is Standard)",
    "test_r2::test_custom_metadata_limit_is_8192_bytes": (
        "Miniflare enforces 2,048 bytes of custom metadata; Cloudflare documents 8,192 "
        "(the adapter leaves the limit to the runtime)"
    ),
    "test_r2::test_list_rejects_bad_options": (
        "Miniflare accepts any string as a list cursor; the other checks run in "
        "workers_suite::test_r2_list_rejects_bad_options"
    ),
    "test_r2::test_complete_needs_known_distinct_parts": (
        "Miniflare completes an upload that lists the same part twice; the local provider "
        "refuses it (InvalidPart). Completing with no parts is refused by the adapter too "
        "(workers_suite::test_r2_complete_needs_parts)"
    ),
    "test_r2::test_list_pages_agree_with_a_model_of_s3_listing": (
        "lists ~3,000 pages; through Miniflare's Node proxy every attribute of every R2 "
        "object is one synchronous round trip, and under that load Miniflare's "
        "SynchronousFetcher trips an internal assertion that breaks every later call. "
        "Listing with prefixes, delimiters and cursors runs in the other list tests"
    ),
    "test_r2::test_unknown_upload_ids_fail": (
        "Miniflare answers complete/abort of an unknown upload with InternalError (10001); "
        "the local provider answers NoSuchUpload (the test's own docstring says so)"
    ),
    "test_r2::test_non_trailing_parts_must_have_the_same_length": (
        "Miniflare words it 'There was a problem with the multipart upload. (10048)'; "
        "the local provider gives Cloudflare's 'All non-trailing parts must have the same "
        "length.' (same code, BadUpload)"
    ),
    "test_kv::test_writes_survive_reopening": _REOPEN,
    "test_kv::test_list_rejects_bad_prefix_and_cursor": (
        "Miniflare accepts any string as a list cursor (Cloudflare's cursors are opaque, so "
        "the adapter cannot check them); bad prefixes are checked in "
        "workers_suite::test_kv_list_rejects_bad_prefixes"
    ),
}


# -- flarebase.platform, as a Worker sees it ----------------------------------------------------


def mount_flarebase() -> None:
    """Import `flarebase.platform` (its lazy `__init__` must not need pydantic) and give it
    the Worker's `Env`; reading wrangler.toml is not something a Worker does."""
    import flarebase.platform as platform
    from flarebase.platform.workers import WorkersEnv

    platform.Env = WorkersEnv
    platform.open_env = _open_env
    platform.load_project = _unavailable


class NotHere(Exception):
    """Raised by what cannot run inside a Worker (open_env, load_project)."""


@contextlib.asynccontextmanager
async def _open_env(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    raise NotHere("open_env() reads wrangler.toml and a state folder: not in a Worker")
    yield  # pragma: no cover


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise NotHere("not available inside a Worker")


# -- state between tests ------------------------------------------------------------------------


async def reset(js_env: Any) -> None:
    """Empty D1, KV and R2 so that each test starts from nothing, as with a fresh state_dir."""
    db = js_env.DB
    for _ in range(10):
        listed = await db.prepare(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger') "
            "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' "
            "ORDER BY type = 'table', sql LIKE 'CREATE VIRTUAL%' DESC"
        ).all()
        rows = listed.results.to_py()
        if not rows:
            break
        for row in rows:
            name = row["name"].replace('"', '""')
            with contextlib.suppress(Exception):
                await db.exec(f'DROP {row["type"].upper()} IF EXISTS "{name}"')
    for binding in (js_env.KV,):
        while True:
            page = await binding.list()
            keys = [k.name for k in page.keys]
            if not keys:
                break
            await asyncio.gather(*(binding.delete(k) for k in keys))
    bucket = js_env.BUCKET
    while True:
        listed = await bucket.list()
        keys = [o.key for o in listed.objects]
        if not keys:
            break
        from pyodide.ffi import to_js

        await bucket.delete(to_js(keys))


# -- collection ---------------------------------------------------------------------------------


class Case:
    def __init__(self, module: str, fn: Callable[..., Any], test_id: str, params: dict[str, Any]):
        self.module, self.fn, self.id, self.params = module, fn, test_id, params

    @property
    def name(self) -> str:
        return f"{self.module}::{self.id}"


def _param_id(value: Any, argname: str, index: int) -> str:
    if isinstance(value, str):
        return value.encode("unicode_escape").decode("ascii") if value else ""
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    return f"{argname}{index}"


def expand(module: str, fn: Callable[..., Any]) -> list[Case]:
    marks = [m for m in getattr(fn, "_pytest_marks", []) if m.name == "parametrize"]
    if not marks:
        return [Case(module, fn, fn.__name__, {})]
    axes = []
    for m in marks:
        names = (
            [n.strip() for n in m.args[0].split(",")] if isinstance(m.args[0], str) else m.args[0]
        )
        values = list(m.args[1])
        ids = m.kwargs.get("ids")
        axis = []
        for i, v in enumerate(values):
            row = tuple(v) if len(names) > 1 else (v,)
            if ids:
                pid = ids[i]
            else:
                pid = "-".join(_param_id(x, n, i) for x, n in zip(row, names, strict=True))
            axis.append((dict(zip(names, row, strict=True)), pid))
        axes.append(axis)
    cases = []
    for combo in itertools.product(*reversed(axes)):
        params: dict[str, Any] = {}
        for p, _ in combo:
            params |= p
        cases.append(
            Case(module, fn, f"{fn.__name__}[{'-'.join(pid for _, pid in combo)}]", params)
        )
    return cases


def collect(
    only: str,
) -> tuple[list[tuple[Case, types.ModuleType]], list[dict[str, str]], list[dict[str, str]]]:
    cases: list[tuple[Case, types.ModuleType]] = []
    not_run: list[dict[str, str]] = []
    errors: list[dict[str, str]] = []
    for name, reason in MODULES_NOT_RUN.items():
        if Path(f"/mnt/tests/conformance/{name}.py").exists():
            not_run.append({"id": f"{name} (whole module)", "reason": reason})
    modules = [(n, f"tests.conformance.{n}") for n in CONFORMANCE]
    modules += [(n, n) for n in PYODIDE_ONLY]
    for short, dotted in modules:
        if (
            dotted.startswith("tests.conformance.")
            and not Path(f"/mnt/tests/conformance/{short}.py").exists()
        ):
            continue
        try:
            module = importlib.import_module(dotted)
        except Exception:
            errors.append({"id": short, "error": traceback.format_exc(limit=5)})
            continue
        for attr, fn in vars(module).items():
            if not attr.startswith("test_") or not callable(fn):
                continue
            for case in expand(short, fn):
                if only and only not in case.name:
                    continue
                reason = NOT_RUN.get(case.name) or NOT_RUN.get(f"{short}::{fn.__name__}")
                if reason:
                    not_run.append({"id": case.name, "reason": reason})
                else:
                    cases.append((case, module))
    return cases, not_run, errors


# -- fixtures and running -----------------------------------------------------------------------


class Fixtures:
    def __init__(self, js_env: Any, module: types.ModuleType, case: Case) -> None:
        self.js_env, self.module, self.case = js_env, module, case
        self.values: dict[str, Any] = dict(case.params)
        self.finalizers: list[Callable[[], Any]] = []

    async def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        value = await self._make(name)
        self.values[name] = value
        return value

    async def _make(self, name: str) -> Any:
        import pytest

        from flarebase.platform.workers import WorkersEnv

        if name == "env":
            await reset(self.js_env)
            return WorkersEnv(self.js_env)
        if name == "js_env":
            return self.js_env
        if name == "provider":
            return "workers"
        if name == "tmp_path":
            return Path(tempfile.mkdtemp(prefix="flarebase-"))
        if name == "monkeypatch":
            patch = pytest.MonkeyPatch()
            self.finalizers.append(patch.undo)
            return patch
        fixture = getattr(self.module, name, None)
        if fixture is None and hasattr(self.module, "__package__"):
            conftest = sys.modules.get(f"{self.module.__package__}.conftest")
            fixture = getattr(conftest, name, None)
        if fixture is None or not hasattr(fixture, "_pytest_fixture"):
            raise LookupError(f"fixture {name!r} not found")
        kwargs = {p: await self.get(p) for p in inspect.signature(fixture).parameters}
        result = fixture(**kwargs)
        if inspect.isasyncgen(result):
            value = await result.__anext__()
            self.finalizers.append(lambda: _finish_async(result))
            return value
        if inspect.isgenerator(result):
            value = next(result)
            self.finalizers.append(lambda: next(result, None))
            return value
        if inspect.isawaitable(result):
            return await result
        return result

    async def close(self) -> None:
        for finalize in reversed(self.finalizers):
            out = finalize()
            if inspect.isawaitable(out):
                await out


async def _finish_async(gen: Any) -> None:
    with contextlib.suppress(StopAsyncIteration):
        await gen.__anext__()


async def run_case(js_env: Any, case: Case, module: types.ModuleType) -> tuple[str, str]:
    import pytest

    for mark in getattr(case.fn, "_pytest_marks", []):
        if mark.name == "skipif" and mark.args and mark.args[0]:
            return "skipped", str(mark.kwargs.get("reason", ""))
    fixtures = Fixtures(js_env, module, case)
    outcome, detail = "passed", ""
    try:
        kwargs = {p: await fixtures.get(p) for p in inspect.signature(case.fn).parameters}
        result = case.fn(**kwargs)
        if inspect.isawaitable(result):
            await asyncio.wait_for(result, TIMEOUT)
    except pytest.Skipped as e:
        outcome, detail = "skipped", str(e)
    except Exception:
        outcome, detail = "failed", traceback.format_exc(limit=-4)
    try:
        await fixtures.close()
    except Exception:
        if outcome != "failed":
            outcome, detail = "failed", "fixture teardown: " + traceback.format_exc(limit=-3)
    return outcome, detail


def _broken_proxy(detail: str) -> bool:
    """Miniflare's synchronous fetcher failed (see run.mjs, `restart`)."""
    return "ERR_ASSERTION" in detail and "false == true" in detail


async def _healthy(js_env: Any) -> bool:
    try:
        js_env.DB.prepare("SELECT 1")
        await js_env.KV.get("health")
        return True
    except Exception:
        return False


async def main(js_env: Any, only: str = "", restart: Any = None) -> str:
    mount_flarebase()
    started = time.monotonic()
    cases, not_run, errors = collect(only)
    passed, failed, skipped, retried = [], [], [], []
    for case, module in cases:
        t0 = time.monotonic()
        outcome, detail = await run_case(js_env, case, module)
        if (
            outcome == "failed"
            and restart is not None
            and (_broken_proxy(detail) or not await _healthy(js_env))
        ):
            print(f"RESTART after {case.name}: Miniflare's proxy broke", file=sys.stderr)
            js_env = await restart()
            retried.append({"id": case.name, "first_error": detail[-2000:]})
            outcome, detail = await run_case(js_env, case, module)
        took = time.monotonic() - t0
        print(f"{outcome.upper():7} {case.name} ({took:.2f}s)", file=sys.stderr, flush=True)
        if outcome == "passed":
            passed.append(case.name)
        elif outcome == "skipped":
            skipped.append({"id": case.name, "reason": detail})
        else:
            print(detail, file=sys.stderr, flush=True)
            failed.append({"id": case.name, "error": detail})
    import pyodide

    summary = {
        "pyodide": pyodide.__version__,
        "python": sys.version.split()[0],
        "passed": len(passed),
        "failed": len(failed),
        "skipped": len(skipped),
        "not_run": not_run,
        "skipped_tests": skipped,
        "failures": failed,
        "retried_after_miniflare_restart": retried,
        "errors": errors,
        "passed_tests": passed,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(
        f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped "
        f"({len(not_run)} not run here, {len(errors)} import errors, "
        f"{len(retried)} retried after a Miniflare restart)",
        file=sys.stderr,
        flush=True,
    )
    return json.dumps(summary)
