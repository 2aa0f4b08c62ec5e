"""Vectors -> Vectorize (local): a JSONL export with nested metadata and namespaces,
the index's shape checked first, verification that catches a changed vector, an
Upstash Vector REST API (a fake), and kill -9 in the middle."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from flarebase.migrate.vectors import clean_metadata
from flarebase.platform import open_env
from flarebase.platform.local.vectorize import create_index

from .conftest import FLAREBASE, Project

DIMS = 8


def make_project(root: Path, dims: int = DIMS, metric: str = "cosine") -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wrangler.toml").write_text(
        """name = "vectors-test"
compatibility_date = "2025-09-29"
[[vectorize]]
binding = "INDEX"
index_name = "docs"
""",
        encoding="utf-8",
    )
    project = Project(root, root / "migrations")
    create_index(project.state, "docs", dimensions=dims, metric=metric)
    return project


def vectors(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        item: dict[str, Any] = {
            "id": f"v{i}",
            "vector": [rng.uniform(-1, 1) for _ in range(DIMS)],
            "metadata": {"doc": {"page": i % 7, "title": f"t{i}"}, "a.b": i, "$x": True},
        }
        if i % 3:
            item["namespace"] = "ns1"
        out.append(item)
    return out


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(v) + "\n" for v in items), encoding="utf-8")
    return path


async def fetch(project: Project, ids: list[str]) -> dict[str, Any]:
    async with open_env(project.config, state_dir=project.state) as env:
        found = {}
        for start in range(0, len(ids), 20):
            for v in await env.INDEX.get_by_ids(ids[start : start + 20]):
                found[v.id] = v
        return found | {"_count": (await env.INDEX.describe()).vector_count}


def test_jsonl_metadata_namespaces_and_verification(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    items = vectors(300)
    source = write_jsonl(tmp_path / "export.jsonl", items)
    project.migrate(
        "vectors",
        str(source),
        "--vectorize",
        "INDEX",
        "--namespace",
        "ns1=docs",
        "--source-metric",
        "cosine",
        "--report",
        "r.json",
    )
    data = json.loads((project.root / "r.json").read_text())
    assert data["status"] == "verified"
    check = data["verification"]["tables"][0]
    assert check["source_rows"] == check["target_rows"] == 300 and check["sampled"] >= 50

    found = asyncio.run(fetch(project, ["v0", "v1"]))
    assert found["_count"] == 300
    assert found["v1"].metadata == {"doc__page": 1, "doc__title": "t1", "a_b": 1, "_x": True}
    assert found["v1"].namespace == "docs" and found["v0"].namespace is None
    want = np.asarray(items[1]["vector"], dtype=np.float32)
    assert np.array_equal(np.asarray(found["v1"].values, dtype=np.float32), want)

    # A vector changed in the index: verification (looking at all of them) names it.
    async def tamper() -> None:
        async with open_env(project.config, state_dir=project.state) as env:
            await env.INDEX.upsert([{"id": "v5", "values": [0.5] * DIMS, "namespace": "docs"}])

    asyncio.run(tamper())
    project.cli(
        "migrate",
        "verify",
        str(source),
        "--vectorize",
        "INDEX",
        "--namespace",
        "ns1=docs",
        "--sample",
        "1000",
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--report",
        "v.json",
        code=1,
    )
    check = json.loads((project.root / "v.json").read_text())["verification"]["tables"][0]
    assert [d["key"] for d in check["differences"]] == ["v5"]
    assert set(check["differences"][0]["columns"]) == {"values", "metadata"}


def test_index_shape_is_checked_first(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "export.jsonl", vectors(10))
    small = make_project(tmp_path / "small", dims=4)
    result = small.migrate("vectors", str(source), "--vectorize", "INDEX", code=1)
    assert "4 dimensions" in result.output and "--dimensions 8" in result.output
    other = make_project(tmp_path / "other", metric="euclidean")
    result = other.migrate(
        "vectors", str(source), "--vectorize", "INDEX", "--source-metric", "cosine", code=1
    )
    assert "euclidean metric" in result.output
    assert asyncio.run(fetch(other, ["v0"]))["_count"] == 0  # nothing written


def test_metadata_rules() -> None:
    assert clean_metadata({"a": {"b": {"c": 1}}, "l": [{"x.y": 1}]}) == {
        "a__b__c": 1,
        "l": [{"x_y": 1}],
    }
    assert clean_metadata({"a": {"b": 1}}, nested=True) == {"a": {"b": 1}}
    try:
        clean_metadata({"a.b": 1, "a_b": 2})
    except Exception as e:
        assert "collide" in str(e)
    else:
        raise AssertionError("colliding keys were accepted")


class FakeUpstashVector(BaseHTTPRequestHandler):
    """A *fake* Upstash Vector REST API: GET /info, POST /range[/ns], POST /fetch[/ns]."""

    data: dict[str, list[dict[str, Any]]]

    def _send(self, result: Any) -> None:
        payload = json.dumps({"result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._send(
            {
                "vectorCount": sum(len(v) for v in self.data.values()),
                "pendingVectorCount": 0,
                "dimension": DIMS,
                "similarityFunction": "COSINE",
                "namespaces": {
                    ns: {"vectorCount": len(v), "pendingVectorCount": 0}
                    for ns, v in self.data.items()
                },
            }
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parts = self.path.strip("/").split("/")
        namespace = parts[1] if len(parts) > 1 else ""
        items = self.data.get(namespace, [])
        if parts[0] == "range":
            start, limit = int(body["cursor"] or 0), int(body["limit"])
            page = items[start : start + limit]
            more = start + limit < len(items)
            self._send({"nextCursor": str(start + limit) if more else "", "vectors": page})
        else:
            by_id = {v["id"]: v for v in items}
            self._send([by_id.get(i) for i in body["ids"]])

    def log_message(self, *args: Any) -> None:
        pass


def test_upstash_vector_rest_api(tmp_path: Path) -> None:
    items = vectors(45)
    data: dict[str, list[dict[str, Any]]] = {"": [], "ns1": []}
    for v in items:
        entry = {"id": v["id"], "vector": v["vector"], "metadata": v["metadata"]}
        if v["id"] == "v3":
            entry["data"] = "the text that was embedded"
        data[v.get("namespace", "")].append(entry)
    handler = type("Handler", (FakeUpstashVector,), {"data": data})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        project = make_project(tmp_path / "p")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        project.cli(
            "migrate",
            "vectors",
            "--upstash-url",
            url,
            "--upstash-token",
            "t",
            "--vectorize",
            "INDEX",
            "--batch-size",
            "10",
            "--config",
            str(project.config),
            "--state-dir",
            str(project.state),
            "--report",
            "r.json",
        )
        report = json.loads((project.root / "r.json").read_text())
        assert report["status"] == "verified"
        found = asyncio.run(fetch(project, ["v3", "v4"]))
        assert found["_count"] == 45
        assert found["v3"].metadata["data"] == "the text that was embedded"
        assert found["v4"].namespace == "ns1"
    finally:
        server.shutdown()


def test_kill_during_upserts_then_resume(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    source = write_jsonl(tmp_path / "export.jsonl", vectors(4000, seed=2))
    ck = project.root / "ck.json"
    args = [
        "migrate",
        "vectors",
        str(source),
        "--vectorize",
        "INDEX",
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--checkpoint",
        str(ck),
        "--batch-size",
        "25",
    ]
    proc = subprocess.Popen(
        [str(FLAREBASE), *args, "--max-items-per-second", "3000"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = json.loads(ck.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("stages", {}).get("copy", {}).get("rows", 0) >= 1000:
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        assert proc.poll() is None, "finished before the kill"
        time.sleep(0.01)
    killed = json.loads(ck.read_text())
    assert not killed["finished"] and 0 < killed["stages"]["copy"]["rows"] < 4000
    done = subprocess.run(
        [str(FLAREBASE), *args, "--report", "r.json", "--sample", "5000"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "verified" and report["resumed"]
    assert report["rows_copied_this_run"] < 4000
    check = report["verification"]["tables"][0]
    assert check["source_rows"] == check["target_rows"] == 4000 == check["sampled"]
    assert asyncio.run(fetch(project, ["v3999"]))["_count"] == 4000  # no duplicates, none lost


def test_an_index_that_held_vectors_is_checked_vector_by_vector(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")

    async def before() -> None:
        async with open_env(project.config, state_dir=project.state) as env:
            await env.INDEX.upsert([{"id": f"old{i}", "values": [1.0] * DIMS} for i in range(5)])

    asyncio.run(before())
    source = write_jsonl(tmp_path / "export.jsonl", vectors(50))
    for name in ("r.json", "r2.json"):  # the second run has nothing to copy, verifies again
        project.migrate("vectors", str(source), "--vectorize", "INDEX", "--report", name)
        check = json.loads((project.root / name).read_text())["verification"]["tables"][0]
        assert check["ok"] and check["sampled"] == 50 and "looked up by id" in check["note"]
    assert asyncio.run(fetch(project, ["old0"]))["_count"] == 55
