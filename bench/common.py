"""Shared pieces of the benchmarks: timing, ratio lines, a real redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

QUICK = os.environ.get("FLAREBASE_BENCH_QUICK") == "1"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """The best of several timed runs: the least disturbed by a noisy machine."""
    return min(fn() for _ in range(runs))


def report(name: str, ours: float, peer: float, peer_name: str, unit: str = "ops/s") -> None:
    """One line per claim: our rate, the peer's, and the ratio (higher is better for us)."""
    print(f"{name}: {ours:,.0f} {unit} vs {peer_name} {peer:,.0f} {unit} = {ours / peer:.2f}x")


def report_overhead(name: str, ours_s: float, peer_s: float, peer_name: str) -> None:
    """For time-per-operation claims: how many times the peer's time we take (lower is better)."""
    print(
        f"{name}: {ours_s * 1e6:,.1f} us vs {peer_name} {peer_s * 1e6:,.1f} us "
        f"= {ours_s / peer_s:.2f}x overhead"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
    return shutil.which("redis-server") or "/usr/bin/redis-server"


@contextmanager
def redis_server() -> Iterator[int]:
    """A real redis-server on a loopback port, no persistence, stopped afterwards."""
    binary = ensure_redis_server()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="flarebase-bench-"))
