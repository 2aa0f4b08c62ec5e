"""What importing flarebase.platform costs: a Python Worker (Pyodide) has no pydantic."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "numpy", "httpx", "flarebase.platform.config")


def imported_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_workers_provider_imports_no_heavy_module() -> None:
    assert imported_after("import flarebase.platform.workers") == []


def test_the_package_loads_its_config_names_on_first_use() -> None:
    assert imported_after("import flarebase.platform") == []
    loaded = imported_after("from flarebase.platform import load_project")
    assert "flarebase.platform.config" in loaded
