"""The engine for migrations of keys, vectors and blobs (Redis, Upstash Vector, S3...).

Tables move stage by stage with keyset positions (`run`); these sources are one
stream of items instead, read in batches from a resumable position: a Redis SCAN
cursor, a JSONL byte offset or an Upstash range cursor, the last object key of a
bucket listing. The engine reads a batch, has the migration write it, and records
the position after it in the checkpoint (stage "copy"), written after the target
holds the batch.

Every write of these migrations is idempotent (KV put, D1 delete-then-insert of one
Redis key's rows, Vectorize upsert, R2 put of the same bytes), so the batches a
crash leaves between the last checkpoint and the kill are written again on the
re-run and nothing is duplicated. A finished checkpoint makes the re-run go
straight to verification.

A migration also keeps counters (`Tally`: keys without a rule, TTLs extended...) in
the checkpoint, so the report of a resumed run still counts the whole migration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .checkpoint import Checkpoint, StageState, fingerprint
from .model import Issue, Key, Plan
from .prefetch import prefetch
from .progress import NullProgress, Progress
from .report import Report
from .verify import Verification

STAGE = "copy"
EXAMPLES = 5  # keys named per counted issue


@dataclass
class Batch:
    """Items read from the source, and the position to resume after them."""

    items: list[Any]
    position: Key
    units: int = 0  # what progress counts (bytes for blobs); 0: len(items)


@dataclass
class Written:
    """What writing a batch did: items written per destination, units for progress."""

    counts: dict[str, int] = field(default_factory=dict)
    units: int = 0


@dataclass
class Tally:
    """Counted issues: (object, reason) -> count and a few examples. Kept in the checkpoint."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, object: str, reason: str, example: str = "", severity: str = "warning") -> None:
        key = f"{severity}\x00{object}\x00{reason}"
        entry = self.entries.setdefault(key, {"count": 0, "examples": []})
        entry["count"] += 1
        if example and len(entry["examples"]) < EXAMPLES:
            entry["examples"].append(example)

    def issues(self) -> list[Issue]:
        out = []
        for key, entry in self.entries.items():
            severity, object, reason = key.split("\x00")
            examples = ", ".join(entry["examples"])
            text = f"{entry['count']:,} × {reason}" + (f" (e.g. {examples})" if examples else "")
            out.append(Issue(object, text, severity))
        return out

    def errors(self) -> list[Issue]:
        return [i for i in self.issues() if i.severity == "error"]

    def to_json(self) -> dict[str, Any]:
        return self.entries

    @classmethod
    def from_json(cls, data: Any) -> Tally:
        return cls(dict(data) if isinstance(data, dict) else {})


class ObjectMigration(Protocol):
    """One kind of object migration (see `keys`, `vectors`, `blobs`)."""

    kind: str  # "redis" | "vectors" | "blobs"
    description: str  # the source, without secrets
    target: str  # the target bindings
    unit: str  # what progress counts: "keys", "vectors", "bytes"
    options: dict[str, Any]  # everything that changes the result (fingerprinted)
    tally: Tally
    total: int | None  # units to copy, when known after `plan()` (for the ETA)

    async def plan(self) -> Plan: ...

    async def prepare(self, saved: dict[str, Any], fresh: bool, replace: bool) -> None:
        """Check and create the target (tables, index shape). `saved` is the migration's
        own part of the checkpoint (read and written: e.g. a count taken before)."""

    def batches(self, after: Key | None) -> AsyncIterator[Batch]: ...
    async def write(self, items: list[Any]) -> Written: ...
    async def verify(self, sample: int) -> Verification: ...
    async def aclose(self) -> None: ...


@dataclass
class ObjectOptions:
    restart: bool = False
    replace: bool = False
    verify: bool = True
    sample: int = 100
    checkpoint_every: float = 0.5
    max_items_per_second: float | None = None
    dry_run: bool = False


async def migrate_objects(
    migration: ObjectMigration,
    checkpoint: str | Path,
    *,
    options: ObjectOptions | None = None,
    progress: Progress | None = None,
) -> Report:
    """Copy everything `migration` reads into its target, resuming from `checkpoint`,
    then verify. `report.ok` is False on a difference or on items that could not move."""
    opts = options or ObjectOptions()
    progress = progress or NullProgress()
    started = time.perf_counter()
    plan = await migration.plan()
    report = Report(plan, migration.target, checkpoint=str(checkpoint), unit=migration.unit)
    if opts.dry_run:
        report.status = "dry-run"
        return report
    identity = {"kind": migration.kind, "source": migration.description, "target": migration.target}
    ck = Checkpoint.open(
        checkpoint,
        fingerprint(identity, migration.options),
        identity | migration.options,
        opts.restart,
    )
    own = ck.target.setdefault("migration", {})
    restore = getattr(migration, "restore", None)
    if restore is not None:
        restore(own)  # a finished migration is verified with what it recorded
    migration.tally = Tally.from_json(ck.target.get("tally"))
    report.resumed = ck.resumed
    try:
        if not ck.finished:
            await migration.prepare(own, not ck.resumed, opts.replace and not ck.resumed)
            await _copy(migration, ck, report, opts, progress)
    finally:
        progress.close()
    plan.issues += [i for i in migration.tally.issues() if i.severity != "error"]
    report.skipped += migration.tally.errors()
    if opts.verify:
        report.verification = await migration.verify(opts.sample)
        report.status = "verified" if report.verification.ok else "mismatch"
    else:
        report.status = "copied"
    report.seconds = time.perf_counter() - started
    return report


async def verify_objects(migration: ObjectMigration, sample: int = 100) -> Report:
    """`flarebase migrate verify` for these kinds: compare again, copy nothing."""
    started = time.perf_counter()
    plan = await migration.plan()
    report = Report(plan, migration.target, unit=migration.unit)
    report.verification = await migration.verify(sample)
    report.status = "verified" if report.verification.ok else "mismatch"
    report.seconds = time.perf_counter() - started
    return report


async def _copy(
    migration: ObjectMigration,
    ck: Checkpoint,
    report: Report,
    opts: ObjectOptions,
    progress: Progress,
) -> None:
    state = ck.stage(STAGE)
    if not ck.stages or "schema" not in ck.stages:
        ck.stages["schema"] = StageState(done=True)
        _save(ck, migration)
    total = getattr(migration, "total", None)
    units_done = int(ck.target.get("units", 0))
    label = f"{migration.kind} -> {migration.target}"
    progress.start(label, total, units_done, unit=migration.unit)
    rate_start, rate_items = time.monotonic(), 0
    async for batch in prefetch(migration.batches(state.position)):
        written = await migration.write(batch.items) if batch.items else Written()
        for name, n in written.counts.items():
            report.copied[f"copy:{name}"] = report.copied.get(f"copy:{name}", 0) + n
        units = written.units or batch.units or len(batch.items)
        units_done += units
        state = StageState(batch.position, state.rows + len(batch.items))
        ck.stages[STAGE] = state
        ck.target["units"] = units_done
        progress.advance(label, units)
        if time.monotonic() - ck.saved_at >= opts.checkpoint_every:
            _save(ck, migration)
        if opts.max_items_per_second:
            rate_items += len(batch.items)
            ahead = rate_items / opts.max_items_per_second - (time.monotonic() - rate_start)
            if ahead > 0:
                await asyncio.sleep(ahead)
    state.done = True
    ck.finished = True
    progress.finish(label)
    _save(ck, migration)


def _save(ck: Checkpoint, migration: ObjectMigration) -> None:
    ck.target["tally"] = migration.tally.to_json()
    ck.save()
