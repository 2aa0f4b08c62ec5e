"""Vectors (Upstash Vector, a JSONL export) into a Vectorize index; verified.

Before anything is written the target is checked: its dimensions must equal the
source's, and so must its metric when both are known (a JSONL file says nothing of
its metric unless `--source-metric` does; a provider that cannot tell the index's
metric is reported, not guessed).

Metadata. Vectorize keys must not be empty, contain `.` or `"`, or start with `$`.
By default nested objects are flattened into top-level keys joined by `__`
(`{"doc": {"page": 3}}` becomes `{"doc__page": 3}`), so every value can carry a
metadata index (created with `flarebase vectorize create-metadata-index`) and be
filtered by its flat name. `--keep-nested` keeps objects as they are instead
(Vectorize's dotted filter keys, `doc.page`, reach into them). Either way, in every
key `.` and `"` become `_` and a leading `$` becomes `_`; lists stay lists. A vector
whose keys collide after this (`a.b` next to `a_b`), or whose metadata exceeds
10 KiB, is reported and not copied. Upstash's `data` field (the embedded text), when
present, goes into metadata under `--data-key` (default `data`).

Namespaces keep their names (Upstash's default namespace, "", is Vectorize's "no
namespace") unless `--namespace SRC=DST` maps them. Vectors are upserted (the last
write wins, so a batch written again after a crash changes nothing) in batches of
at most 1,000, the binding's limit.

Verification reads the whole source again: its count against the index's
`describe().vectorCount` (minus what the index held before the migration), and a
sample of vectors (or all of them, when the index was not empty before) fetched
with `get_by_ids` and compared field by field: values as float32 (what Vectorize
stores), metadata as transformed, namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from ..platform.errors import FlarebaseError
from ..platform.vectorize import MAX_BATCH, MAX_GET_IDS, MAX_ID_BYTES, MAX_METADATA_BYTES
from .model import Plan, TablePlan
from .objects import Batch, Tally, Written
from .sources.vectors import SourceInfo, SourceVector, VectorSource
from .verify import MOD, SHOW, Difference, Summary, TableCheck, Verification

SEPARATOR = "__"


class VectorTargetError(FlarebaseError):
    code = "MIGRATE_TARGET"


class Unmovable(Exception):
    pass


def clean_metadata(
    metadata: dict[str, Any] | None, *, separator: str = SEPARATOR, nested: bool = False
) -> dict[str, Any] | None:
    """Metadata within Vectorize's key rules (see the module's docstring)."""
    if metadata is None:
        return None
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in out:
            raise Unmovable(f"metadata keys collide as {key!r}")
        out[key] = value

    def walk(node: dict[str, Any], path: str) -> None:
        for raw, value in node.items():
            key = path + _clean_key(str(raw))
            if isinstance(value, dict) and not nested and value:
                walk(value, key + separator)
            else:
                put(key, _clean_value(value))

    walk(metadata, "")
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise Unmovable(f"metadata of {len(text.encode()):,} bytes: over Vectorize's 10 KiB")
    return out


def _clean_key(key: str) -> str:
    key = key.replace(".", "_").replace('"', "_")
    if key.startswith("$"):
        key = "_" + key[1:]
    return key or "_"


def _clean_value(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for k, v in value.items():
            key = _clean_key(str(k))
            if key in cleaned:
                raise Unmovable(f"metadata keys collide as {key!r}")
            cleaned[key] = _clean_value(v)
        return cleaned
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    return value


def _float32(values: list[float]) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def vector_digest(vector_id: str, namespace: str | None, values: bytes, metadata: Any) -> int:
    text = json.dumps([vector_id, namespace, metadata], sort_keys=True, ensure_ascii=False)
    h = hashlib.blake2b(text.encode() + b"\x00" + values, digest_size=16)
    return int.from_bytes(h.digest(), "big")


class VectorMigration:
    kind = "vectors"
    unit = "vectors"

    def __init__(
        self,
        source: VectorSource,
        index: Any,
        index_name: str,
        *,
        namespaces: dict[str, str] | None = None,
        separator: str = SEPARATOR,
        nested: bool = False,
        data_key: str = "data",
        batch_size: int = MAX_BATCH,
        index_metric: str | None = None,
        where: str = "local",
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise VectorTargetError(f"--batch-size must be 1 to {MAX_BATCH}")
        self.source = source
        self.index = index
        self.index_metric = index_metric
        self.description = source.description
        self.target = f"Vectorize {index_name} ({where})"
        self.namespaces = namespaces or {}
        self.separator, self.nested, self.data_key = separator, nested, data_key
        self.batch_size = batch_size
        self.options = {
            "namespaces": self.namespaces,
            "separator": separator,
            "nested": nested,
            "data_key": data_key,
        }
        self.tally = Tally()
        self.total: int | None = None
        self.info: SourceInfo | None = None
        self._saved: dict[str, Any] = {}
        self._last_mutation: str | None = None
        self._missing = 0

    async def plan(self) -> Plan:
        self.info = await self.source.info()
        self.total = self.info.count
        plan = Plan(self.description, options=dict(self.options))
        for name, count in sorted(self.info.namespaces.items()):
            target = self.target_namespace(name)
            plan.tables.append(
                TablePlan(
                    f"namespace {target or '(none)'}",
                    f"namespace {name or '(default)'}",
                    ["id", "values", "metadata"],
                    ["id"],
                    "",
                    count,
                )
            )
        return plan

    def restore(self, saved: dict[str, Any]) -> None:
        """What the migration kept in its checkpoint (the index's count before it)."""
        self._saved = saved

    def target_namespace(self, namespace: str) -> str | None:
        mapped = self.namespaces.get(namespace, namespace)
        return mapped or None

    async def prepare(self, saved: dict[str, Any], fresh: bool, replace: bool) -> None:
        self._saved = saved
        assert self.info is not None
        details = await self.index.describe()
        if self.info.dimensions is not None and details.dimensions != self.info.dimensions:
            raise VectorTargetError(
                f"{self.target} has {details.dimensions} dimensions; the source's vectors have "
                f"{self.info.dimensions}: create an index with --dimensions {self.info.dimensions}"
            )
        metric = self.index_metric or _metric_of(self.index)
        if self.info.metric and metric and metric != self.info.metric:
            raise VectorTargetError(
                f"{self.target} uses the {metric} metric; the source uses {self.info.metric}: "
                "scores and rankings would differ"
            )
        if self.info.metric is None:
            self.tally.add("metric", "not checked: the source does not say (--source-metric)")
        elif metric is None:
            self.tally.add("metric", f"not checked: {self.target} does not tell its metric")
        if fresh or "count_before" not in saved:
            saved["count_before"] = details.vector_count

    async def batches(self, after: list[Any] | None) -> AsyncIterator[Batch]:
        async for vectors, position in self.source.batches(after, self.batch_size):
            yield Batch(vectors, position)

    def convert(self, vector: SourceVector) -> dict[str, Any]:
        if vector.problem:
            raise Unmovable(vector.problem)
        if len(vector.id.encode()) > MAX_ID_BYTES:
            raise Unmovable(f"id over Vectorize's {MAX_ID_BYTES} bytes")
        metadata = dict(vector.metadata or {})
        if vector.data is not None and self.data_key:
            if self.data_key in metadata:
                raise Unmovable(f"metadata already has a key {self.data_key!r} for Upstash's data")
            metadata[self.data_key] = vector.data
        out: dict[str, Any] = {"id": vector.id, "values": vector.values}
        cleaned = clean_metadata(
            metadata if (vector.metadata is not None or metadata) else None,
            separator=self.separator,
            nested=self.nested,
        )
        if cleaned is not None:
            out["metadata"] = cleaned
        namespace = self.target_namespace(vector.namespace)
        if namespace is not None:
            if len(namespace.encode()) > 64:
                raise Unmovable("namespace over Vectorize's 64 bytes")
            out["namespace"] = namespace
        return out

    async def write(self, items: list[SourceVector]) -> Written:
        written = Written()
        ready: list[dict[str, Any]] = []
        for vector in items:
            try:
                ready.append(self.convert(vector))
            except Unmovable as e:
                self.tally.add("vectors", f"not copied: {e}", vector.id, "error")
        for start in range(0, len(ready), MAX_BATCH):
            chunk = ready[start : start + MAX_BATCH]
            try:
                mutation = await self.index.upsert(chunk)
            except FlarebaseError as e:
                raise VectorTargetError(f"{self.target}: upsert: {e}") from None
            self._last_mutation = getattr(mutation, "mutation_id", None)
            for v in chunk:
                name = f"namespace {v.get('namespace') or '(none)'}"
                written.counts[name] = written.counts.get(name, 0) + 1
        return written

    async def _processed(self, timeout: float = 120.0) -> Any:
        """describe(), once the index has applied the last write (Cloudflare: seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            details = await self.index.describe()
            if (
                self._last_mutation is None
                or details.processed_up_to_mutation == self._last_mutation
            ):
                return details
            if time.monotonic() > deadline:
                return details
            await asyncio.sleep(1.0)

    async def verify(self, sample: int = 100) -> Verification:
        info = self.info or await self.source.info()
        details = await self._processed()
        before = int(self._saved.get("count_before", 0))
        check = TableCheck(self.target)
        self._missing = 0
        every = before > 0 or sample <= 0
        if every:
            check.note = "the index held vectors before: every vector looked up by id"
        threshold = MOD if (every or info.count <= sample) else MOD // max(1, info.count) * sample
        picked: list[dict[str, Any]] = []
        count = 0
        source_sum = Summary()
        async for vectors, _ in self.source.batches(None, 1000):
            for vector in vectors:
                try:
                    v = self.convert(vector)
                except Unmovable:
                    continue  # reported by the migration
                count += 1
                digest = vector_digest(
                    v["id"], v.get("namespace"), _float32(v["values"]), v.get("metadata")
                )
                source_sum.total = (source_sum.total + digest) % MOD
                if (every or len(picked) < sample) and digest < threshold:
                    picked.append(v)
                    if every and len(picked) >= 1000:
                        await self._compare(picked, check)
                        picked = []
        await self._compare(picked, check)
        check.source_rows = count
        check.target_rows = details.vector_count - before
        if every:
            check.target_rows = count - self._missing
        return Verification([check])

    async def _compare(self, picked: list[dict[str, Any]], check: TableCheck) -> None:
        src, dst = Summary(), Summary()
        for start in range(0, len(picked), MAX_GET_IDS):
            chunk = picked[start : start + MAX_GET_IDS]
            found = {v.id: v for v in await self.index.get_by_ids([v["id"] for v in chunk])}
            for want in chunk:
                check.sampled += 1
                values = _float32(want["values"])
                src.total += vector_digest(
                    want["id"], want.get("namespace"), values, want.get("metadata")
                )
                got = found.get(want["id"])
                if got is None:
                    self._missing += 1
                    check.sample_mismatches += 1
                    _add(check, Difference("missing", want["id"]))
                    continue
                got_values = _float32(got.values)
                dst.total += vector_digest(got.id, got.namespace, got_values, got.metadata)
                cols = {}
                if got_values != values:
                    cols["values"] = {"source": want["values"][:4], "target": got.values[:4]}
                if got.metadata != want.get("metadata"):
                    cols["metadata"] = {"source": want.get("metadata"), "target": got.metadata}
                if got.namespace != want.get("namespace"):
                    cols["namespace"] = {"source": want.get("namespace"), "target": got.namespace}
                if cols:
                    check.sample_mismatches += 1
                    _add(check, Difference("changed", want["id"], cols))
        src.total %= MOD
        dst.total %= MOD
        # The checksum columns hold the sampled vectors' checksums (the index cannot be read
        # in full); accumulated over every call.
        check.source_checksum = _combine(check.source_checksum, src.total)
        check.target_checksum = _combine(check.target_checksum, dst.total)

    async def aclose(self) -> None:
        await self.source.aclose()


def _combine(previous: str, total: int) -> str:
    return f"{(int(previous or '0', 16) + total) % MOD:032x}"


def _add(check: TableCheck, difference: Difference) -> None:
    if len(check.differences) < SHOW:
        check.differences.append(difference)


def _metric_of(index: Any) -> str | None:
    try:
        config = index.config
    except Exception:  # an index that does not exist yet, a provider without it
        return None
    return getattr(config, "metric", None)
