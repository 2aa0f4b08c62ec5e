"""flarebase.platform.workers under real Pyodide against Miniflare's real bindings.

Runs tests/pyodide/run.mjs once for the whole module (Pyodide costs ~3 s and
~170 MB to load): Node starts Miniflare (D1, KV, R2, a Queue with a consumer, a
JavaScript Durable Object), loads Pyodide 0.28.2 (the version Python Workers run)
offline, mounts src/ and tests/ and runs runner.py inside it, which runs the
provider-agnostic conformance tests and workers_suite.py through the adapter and
writes a JSON summary that the tests below check.

Needs `node` and the npm packages of tests/pyodide (`scripts/bootstrap --node`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
PYODIDE_VERSION = "0.28.2"  # what Python Workers run (compatibility date 2025-09-29+)
MODULES = ["test_d1", "test_kv", "test_r2", "workers_suite"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it with scripts/bootstrap --node)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("node") is None:
        _unavailable("node is not installed")
    if not (HERE / "node_modules" / "pyodide-0.28").is_dir():
        _unavailable("tests/pyodide/node_modules is missing: run scripts/bootstrap --node")
    out = tmp_path_factory.mktemp("pyodide") / "summary.json"
    proc = subprocess.run(
        ["node", str(HERE / "run.mjs"), "--summary", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if not out.exists():
        pytest.fail(f"run.mjs wrote no summary (exit {proc.returncode}):\n{proc.stderr[-8000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    data["stderr"] = proc.stderr
    return data


def test_runs_the_pyodide_python_workers_use(summary: dict[str, Any]) -> None:
    assert summary["pyodide"] == PYODIDE_VERSION


def test_every_module_imports(summary: dict[str, Any]) -> None:
    assert summary["errors"] == []


def test_every_test_run_under_pyodide_passes(summary: dict[str, Any]) -> None:
    failures = "\n\n".join(f"{f['id']}\n{f['error']}" for f in summary["failures"])
    assert summary["failed"] == 0, failures


@pytest.mark.parametrize("module", MODULES)
def test_each_module_ran(summary: dict[str, Any], module: str) -> None:
    ran = [t for t in summary["passed_tests"] if t.startswith(f"{module}::")]
    assert len(ran) >= 10, f"only {len(ran)} tests of {module} passed under Pyodide"


def test_what_is_not_run_says_why(summary: dict[str, Any]) -> None:
    for entry in summary["not_run"] + summary["skipped_tests"]:
        assert entry["reason"].strip(), entry["id"]
