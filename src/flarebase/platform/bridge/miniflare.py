"""The bridge Worker on Miniflare, on a loopback port: Cloudflare's own D1, KV, R2,
Durable Objects and Queues, offline (Vectorize has no local mode).

    with MiniflareBridge(load_project("wrangler.toml")) as bridge:
        async with open_env(..., provider="bridge", url=bridge.url, secret=bridge.secret):
            ...

It runs `node bridge/serve.mjs` from a flarebase checkout (or $FLAREBASE_BRIDGE_DIR)
with wrangler's pinned Miniflare in bridge/node_modules (`npm ci` in bridge/). The
process is tied to ours through its stdin: it exits when we do, even if killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from ..config import Project
from .client import SCHEME, BridgeError, sign


def bridge_dir() -> Path:
    """The folder holding serve.mjs and src/index.js."""
    if env := os.environ.get("FLAREBASE_BRIDGE_DIR"):
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "bridge" / "serve.mjs").exists():
            return parent / "bridge"
    raise BridgeError("cannot find the bridge Worker (bridge/serve.mjs); set FLAREBASE_BRIDGE_DIR")


def serve_config(
    projects: Project | Sequence[Project], vectorize_mocks: Sequence[str] = ()
) -> dict[str, Any]:
    """serve.mjs's bindings for one or more wrangler.toml files (merged by binding name)."""
    if isinstance(projects, Project):
        projects = [projects]
    config: dict[str, Any] = {
        "d1Databases": {},
        "kvNamespaces": {},
        "r2Buckets": {},
        "queueProducers": {},
        "vectorizeMocks": list(vectorize_mocks),
    }
    for p in projects:
        config["d1Databases"] |= {s.binding: s.database_id or s.name for s in p.d1_databases}
        config["kvNamespaces"] |= {s.binding: s.name for s in p.kv_namespaces}
        config["r2Buckets"] |= {s.binding: s.name for s in p.r2_buckets}
        config["queueProducers"] |= {s.binding: s.queue for s in p.queue_producers}
    return config


class MiniflareBridge:
    """Start with `start()` (or `with`); `url` and `secret` are then what the provider needs.

    `persist`: a folder for the bindings' state (default: in memory, gone at stop).
    `allow_reset`: enable the Worker's admin.reset op (tests). `consume_queues`: make
    the bridge the consumer (acknowledging and dropping messages) of every producer's
    queue, so that Miniflare checks sends as Cloudflare does (tests). `vectorize_mocks`:
    binding names to back with the in-memory *mock* of Vectorize (tests).
    """

    def __init__(
        self,
        project: Project | Sequence[Project],
        *,
        secret: str | None = None,
        persist: str | Path | None = None,
        allow_reset: bool = False,
        consume_queues: bool = False,
        vectorize_mocks: Sequence[str] = (),
        node: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.project = project
        self.secret = secret or secrets.token_urlsafe(32)
        # Absolute: serve.mjs runs in the bridge folder, not in our working directory.
        self.persist = Path(persist).resolve() if persist else None
        self.allow_reset = allow_reset
        self.consume_queues = consume_queues
        self.vectorize_mocks = list(vectorize_mocks)
        self.node = node or shutil.which("node") or "node"
        self.startup_timeout = startup_timeout
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._config: IO[str] | None = None
        self._log: list[str] = []

    def start(self) -> str:
        folder = bridge_dir()
        if not (folder / "node_modules" / "miniflare").exists():
            raise BridgeError(f"Miniflare is not installed: run `npm ci` in {folder}")
        config = {
            "secret": self.secret,
            "host": "127.0.0.1",
            "allowReset": self.allow_reset,
            "persist": str(self.persist) if self.persist else None,
            **serve_config(self.project, self.vectorize_mocks),
        }
        if self.consume_queues:
            config["consumeQueues"] = sorted(set(config["queueProducers"].values()))
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(config, self._config)
        self._config.close()
        self._proc = subprocess.Popen(
            [self.node, str(folder / "serve.mjs"), self._config.name],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self._readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        line = ready[0] if ready else ""
        try:
            self.url = json.loads(line)["url"]
        except (ValueError, KeyError, TypeError):
            self.stop()
            log = "".join(self._log)[-4000:]
            raise BridgeError(f"Miniflare did not start: {line or 'no output'}\n{log}") from None
        return self.url

    def _readline(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        return self._proc.stdout.readline()

    def _drain_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        for line in proc.stderr:
            self._log.append(line)
            if len(self._log) > 200:
                del self._log[:100]

    @property
    def log(self) -> str:
        return "".join(self._log)

    def reset(self) -> None:
        """Empty every D1 database, KV namespace and R2 bucket (needs `allow_reset`)."""
        body = b'{"ops":[{"op":"admin.reset"}]}'
        digest = hashlib.sha256(body).hexdigest()
        timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
        signature = sign(self.secret, "POST", "/v1/ops", timestamp, nonce, digest)
        headers = {
            "authorization": f"{SCHEME} {signature}",
            "x-bridge-timestamp": timestamp,
            "x-bridge-nonce": nonce,
            "x-bridge-content-sha256": digest,
        }
        response = httpx.post(f"{self.url}/v1/ops", content=body, headers=headers, timeout=60)
        response.raise_for_status()
        [result] = response.json()["results"]
        if "error" in result:
            raise BridgeError(f"reset failed: {result['error']['message']}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()  # serve.mjs disposes Miniflare and exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._config is not None:
            Path(self._config.name).unlink(missing_ok=True)
            self._config = None

    def __enter__(self) -> MiniflareBridge:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
