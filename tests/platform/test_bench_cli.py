"""`flarebase bench`: runs the benchmarks of bench/ and refuses names it does not know."""

from __future__ import annotations

import re
import subprocess
import sys

from typer.testing import CliRunner

from flarebase.cli import app


def test_an_unknown_benchmark_is_refused_with_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["bench", "nosuch"])

    assert result.exit_code == 1
    assert "unknown benchmark 'nosuch'" in result.output
    assert "d1, durable_objects, kv" in result.output


def test_a_quick_benchmark_prints_its_ratios() -> None:
    # A subprocess, as bench/run calls it: the benchmark itself runs in a child process.
    done = subprocess.run(
        [sys.executable, "-m", "flarebase.cli", "bench", "--quick", "r2"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    ratios = re.findall(r"r2 (put|get) 1 MiB: .* = (\d+\.\d\d)x overhead", done.stdout)
    assert [kind for kind, _ in ratios] == ["put", "get"]
    assert all(float(ratio) > 0 for _, ratio in ratios)
