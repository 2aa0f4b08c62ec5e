"""Local Vectorize against an exact numpy scan over the same vectors, in one run.

Builds 100k random 384-dimension vectors (10k with --quick) with metadata, loads
them through the binding (`upsert`, batches of 1,000), then times the same
queries on the binding and on a plain numpy baseline (normalised float32
matrix, `X @ q`, `argpartition`), alternating the two query by query so that a
noisy machine slows both alike:

- topK 10 over every vector;
- topK 10 with a metadata filter matching 1% of the vectors (the baseline masks
  its scores with the same filter);
- topK 10 within a namespace holding 10% of the vectors.

Each line prints our queries/s over the baseline's, p50/p99 of both and
recall@10 against the baseline's exact answer. Inserts are compared with
appending to a numpy array (no durability) and with raw sqlite3 writing the same
rows to a WAL file with synchronous=FULL (the binding's durability).

`--hnsw` also measures usearch's HNSW (if installed) on the same data: the
engine comparison behind the choice of an exact scan (slow to build; not run
by default).

Targets (issue 3): exact recall 1.0 at no worse than the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flarebase.platform.local.vectorize import (
    LocalVectorize,
    create_index,
    create_metadata_index,
    index_folder,
)

DIMS = 384
TOP_K = 10
CATEGORIES = 100  # one category = 1% of the vectors
NAMESPACES = 10  # one namespace = 10%
BATCH = 1000


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class Baseline:
    """What one would write by hand: a normalised float32 matrix and a masked scan."""

    def __init__(self, x: np.ndarray, categories: np.ndarray, namespaces: np.ndarray) -> None:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        self.x = (x / norms).astype(np.float32)
        self.categories = categories
        self.namespaces = namespaces

    def query(
        self, q: np.ndarray, category: int | None = None, namespace: int | None = None
    ) -> list[int]:
        qn = (q / np.linalg.norm(q)).astype(np.float32)
        scores = self.x @ qn
        if category is not None:
            scores[self.categories != category] = -np.inf
        if namespace is not None:
            scores[self.namespaces != namespace] = -np.inf
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        return [int(i) for i in top[np.argsort(-scores[top])]]


def compare(
    name: str,
    queries: np.ndarray,
    ours: Callable[[int, np.ndarray], list[int]],
    peer: Callable[[int, np.ndarray], list[int]],
) -> None:
    ours_t: list[float] = []
    peer_t: list[float] = []
    recall: list[float] = []
    for i, q in enumerate(queries):
        runs: list[tuple[Callable[[int, np.ndarray], list[int]], list[float]]] = [
            (ours, ours_t),
            (peer, peer_t),
        ]
        if i % 2:
            runs.reverse()
        answers = []
        for fn, times in runs:
            start = time.perf_counter()
            answers.append(fn(i, q))
            times.append(time.perf_counter() - start)
        got, truth = (answers[0], answers[1]) if i % 2 == 0 else (answers[1], answers[0])
        recall.append(len(set(got) & set(truth)) / max(1, len(truth)))
    ours_qps = len(ours_t) / sum(ours_t)
    peer_qps = len(peer_t) / sum(peer_t)
    print(
        f"vectorize {name}: {ours_qps / peer_qps:.2f}x numpy baseline "
        f"({ours_qps:,.0f} vs {peer_qps:,.0f} queries/s; "
        f"p50 {ms(statistics.median(ours_t))} vs {ms(statistics.median(peer_t))}, "
        f"p99 {ms(percentile(ours_t, 99))} vs {ms(percentile(peer_t, 99))}; "
        f"recall@10 {statistics.mean(recall):.3f})",
        flush=True,
    )


def raw_sqlite_insert(path: Path, batches: list[list[dict[str, Any]]]) -> float:
    """The same rows, durably, with nothing else: the floor for a durable write."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE v (id TEXT PRIMARY KEY, ns TEXT, vals BLOB, metadata TEXT)")
    start = time.perf_counter()
    for batch in batches:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO v VALUES (?, ?, ?, ?)",
            [
                (
                    v["id"],
                    v["namespace"],
                    np.asarray(v["values"], dtype="<f4").tobytes(),
                    json.dumps(v["metadata"], separators=(",", ":")),
                )
                for v in batch
            ],
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def hnsw(x: np.ndarray, queries: np.ndarray, baseline: Baseline) -> None:
    try:
        from usearch.index import Index
    except ImportError:
        print("hnsw: usearch is not installed (uv pip install usearch)")
        return
    index = Index(ndim=x.shape[1], metric="cos", dtype="f32", connectivity=16, expansion_add=128)
    start = time.perf_counter()
    index.add(np.arange(len(x)), x, threads=os.cpu_count() or 1)
    built = time.perf_counter() - start
    print(f"usearch hnsw build: {len(x) / built:,.0f} vectors/s ({built:.1f} s)", flush=True)
    truth = [set(baseline.query(q)) for q in queries]
    peer_t = []
    for q in queries:
        start = time.perf_counter()
        baseline.query(q)
        peer_t.append(time.perf_counter() - start)
    for ef in (64, 128, 256):
        index.expansion_search = ef
        times, recall = [], []
        for q, expected in zip(queries, truth, strict=True):
            start = time.perf_counter()
            keys = index.search(q, TOP_K).keys
            times.append(time.perf_counter() - start)
            recall.append(len(expected & {int(k) for k in keys}) / TOP_K)
        print(
            f"usearch hnsw ef={ef}: {sum(peer_t) / sum(times):.2f}x numpy baseline "
            f"(p50 {ms(statistics.median(times))} vs {ms(statistics.median(peer_t))}; "
            f"recall@10 {statistics.mean(recall):.3f})",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k vectors (CI smoke run)")
    parser.add_argument("--queries", type=int, default=0, help="queries per kind")
    parser.add_argument("--hnsw", action="store_true", help="also measure usearch HNSW")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("FLAREBASE_BENCH_QUICK") == "1"
    n = 10_000 if quick else 100_000
    n_queries = args.queries or (100 if quick else 200)

    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, DIMS), dtype=np.float32)
    queries = rng.standard_normal((n_queries, DIMS), dtype=np.float32)
    categories = np.arange(n) % CATEGORIES
    namespaces = (np.arange(n) // CATEGORIES) % NAMESPACES
    batches = [
        [
            {
                "id": f"v{i}",
                "values": x[i],
                "namespace": f"ns{namespaces[i]}",
                "metadata": {"category": f"c{categories[i]:02}", "n": i},
            }
            for i in range(start, min(n, start + BATCH))
        ]
        for start in range(0, n, BATCH)
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"{n:,} vectors of {DIMS} dimensions, {n_queries} queries per kind "
        f"({os.cpu_count()} cores, load average {load})",
        flush=True,
    )

    state = Path(tempfile.mkdtemp(prefix="flarebase-bench-vectorize-"))
    try:
        create_index(state, "bench", dimensions=DIMS, metric="cosine")
        create_metadata_index(state, "bench", "category", "string")
        index = LocalVectorize(index_folder(state, "bench"), "bench")

        start = time.perf_counter()
        for batch in batches:
            await index.upsert(batch)
        ours_insert = time.perf_counter() - start

        buffer = np.empty((n, DIMS), dtype=np.float32)
        start = time.perf_counter()
        row = 0
        for batch in batches:
            block = np.stack([v["values"] for v in batch])
            buffer[row : row + len(block)] = block
            row += len(block)
        numpy_insert = time.perf_counter() - start
        sqlite_insert = raw_sqlite_insert(state / "raw.sqlite3", batches)
        print(
            f"vectorize insert: {numpy_insert / ours_insert:.3f}x numpy baseline "
            f"({n / ours_insert:,.0f} vs {n / numpy_insert:,.0f} vectors/s; numpy keeps "
            "nothing on disk)",
            flush=True,
        )
        print(
            f"vectorize insert: {sqlite_insert / ours_insert:.2f}x raw sqlite3 "
            f"({n / ours_insert:,.0f} vs {n / sqlite_insert:,.0f} vectors/s, both WAL with "
            "synchronous=FULL)",
            flush=True,
        )

        await index.aclose()
        index = LocalVectorize(index_folder(state, "bench"), "bench")
        start = time.perf_counter()
        await index.describe()  # loads every vector from the file
        print(
            f"vectorize cold load: {n / (time.perf_counter() - start):,.0f} vectors/s", flush=True
        )

        baseline = Baseline(x, categories, namespaces)

        def rows(result: Any) -> list[int]:
            return [int(m.id[1:]) for m in result.matches]

        # The binding's methods are coroutines that never suspend: drive them directly.
        def run(coro: Any) -> Any:
            try:
                coro.send(None)
            except StopIteration as done:
                return done.value
            raise RuntimeError("the local binding suspended unexpectedly")

        compare(
            "query topK10",
            queries,
            lambda i, q: rows(run(index.query(q, top_k=TOP_K))),
            lambda i, q: baseline.query(q),
        )
        compare(
            "query topK10 + 1% metadata filter",
            queries,
            lambda i, q: rows(
                run(index.query(q, top_k=TOP_K, filter={"category": f"c{i % CATEGORIES:02}"}))
            ),
            lambda i, q: baseline.query(q, category=i % CATEGORIES),
        )
        compare(
            "query topK10 + namespace (10%)",
            queries,
            lambda i, q: rows(run(index.query(q, top_k=TOP_K, namespace=f"ns{i % NAMESPACES}"))),
            lambda i, q: baseline.query(q, namespace=i % NAMESPACES),
        )
        await index.aclose()
        if args.hnsw:
            hnsw(x, queries, baseline)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
