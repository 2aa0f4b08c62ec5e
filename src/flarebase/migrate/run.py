"""The engine: plan, schema, rows in batches, second passes, indexes, verification.

Stages run in order and each is skipped once the checkpoint (or the target's own
record) says it is done; a stage that was cut off continues after its recorded
keyset position. See `checkpoint` for why nothing is written twice.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..platform.errors import FlarebaseError
from ..platform.limits import D1_SQLITE_LIMITS
from .checkpoint import Checkpoint, CheckpointError, StageState, fingerprint
from .model import Issue, Plan, TablePlan, quote
from .prefetch import prefetch
from .progress import NullProgress, Progress
from .report import Report
from .source import Source
from .target import TableReader, Target
from .verify import Verification, verify


class PlanError(FlarebaseError):
    code = "MIGRATE_PLAN"


@dataclass
class RunOptions:
    restart: bool = False  # ignore the checkpoint and start over
    replace: bool = False  # drop target tables of the same names first
    verify: bool = True
    sample: int = 100  # rows per table compared field by field
    max_rows_per_second: float | None = None  # be gentle with a production source
    checkpoint_every: float = 0.5  # seconds between checkpoint file writes
    dry_run: bool = False


async def migrate(
    source: Source,
    target: Target,
    checkpoint: str | Path,
    *,
    reader: TableReader | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> Report:
    """Migrate `source` into `target`, resuming from `checkpoint`; verify with `reader`.

    Returns the report; `report.ok` is False when verification found a difference or
    rows could not be stored.
    """
    opts = options or RunOptions()
    progress = progress or NullProgress()
    started = time.perf_counter()
    plan = await source.plan()
    validate(plan)
    report = Report(plan, target.description, checkpoint=str(checkpoint))
    if opts.dry_run:
        report.status = "dry-run"
        return report
    identity = {"source": source.description, "target": target.description}
    # Bound to the options and to the tables' shape: a source whose schema changed
    # since the checkpoint is not resumed into a half-old copy.
    shape = [(t.name, t.columns, t.key, t.create_sql) for t in plan.tables]
    ck = Checkpoint.open(
        checkpoint,
        fingerprint(identity, plan.options, shape),
        identity | plan.options,
        opts.restart,
    )
    engine = _Engine(source, target, ck, report, opts, progress)
    try:
        await engine.run()
    finally:
        progress.close()
    if opts.verify and reader is not None:
        report.verification = await verify(source, reader, plan, sample=opts.sample)
        report.status = "verified" if report.verification.ok else "mismatch"
    else:
        report.status = "copied"
    report.seconds = time.perf_counter() - started
    return report


async def verify_only(
    source: Source, reader: TableReader, *, sample: int = 100, tables: list[str] | None = None
) -> tuple[Report, Verification]:
    """`flarebase migrate verify`: plan the source as a migration would, then compare."""
    started = time.perf_counter()
    plan = await source.plan()
    validate(plan)
    report = Report(plan, reader.description)
    report.verification = await verify(source, reader, plan, sample=sample, tables=tables)
    report.status = "verified" if report.verification.ok else "mismatch"
    report.seconds = time.perf_counter() - started
    return report, report.verification


class _Engine:
    def __init__(
        self,
        source: Source,
        target: Target,
        ck: Checkpoint,
        report: Report,
        opts: RunOptions,
        progress: Progress,
    ) -> None:
        self.source, self.target, self.ck = source, target, ck
        self.report, self.opts, self.progress = report, opts, progress
        self.plan = report.plan
        self._rate_start = time.monotonic()
        self._rate_rows = 0

    async def run(self) -> None:
        ck, target = self.ck, self.target
        saved = ck.stages.get("schema")
        schema_done = bool(saved and saved.done)
        await target.begin(ck.target if schema_done else None)
        committed = {} if self.opts.restart else await target.committed()
        if committed:
            mark = committed.get("schema")
            if mark is None or mark.position != [ck.fingerprint]:
                raise CheckpointError(
                    f"{target.description} holds the progress of another migration (table "
                    "_flarebase_migrate); run with --restart --replace to start over"
                )
        elif target.records_progress and schema_done and not ck.finished:
            raise CheckpointError(
                f"checkpoint {ck.path} records progress that {target.description} does "
                "not hold (was the database reset?); run with --restart"
            )
        ck.stages.update(committed)  # the target's record is written with the rows
        self.report.resumed = ck.resumed
        if ck.finished:
            return
        if not ck.stage("schema").done:
            await self._schema()
        for table in self.plan.tables:
            await self._copy(table)
        if not target.one_transaction:
            for table in self.plan.tables:
                if table.deferred:
                    await self._fixup(table)
        if not ck.stage("finish").done:
            await target.finish(self.plan)
            ck.stage("finish").done = True
        ck.finished = True
        await self._save()
        await target.cleanup()

    async def _schema(self) -> None:
        created = [t.name for t in self.plan.tables if t.create_sql]
        if not self.opts.replace:
            existing = await self.target.existing(created)
            if existing:
                raise CheckpointError(
                    f"{self.target.description} already has table(s) {', '.join(existing)}; "
                    "run with --replace to drop and recreate them"
                )
        state = StageState([self.ck.fingerprint], done=True)
        await self.target.create(self.plan, self.opts.replace, state)
        self.ck.stages["schema"] = state
        await self._save()

    async def _copy(self, table: TablePlan) -> None:
        stage = table.stage
        state = self.ck.stage(stage)
        if state.done:
            return
        self.progress.start(table.name, table.rows, state.rows)
        reading = table.complete() if self.target.one_transaction else table
        copied = self.report.copied.setdefault(stage, 0)
        async for rows, position in prefetch(self.source.rows(reading, state.position)):
            state = StageState(position, state.rows + len(rows))
            too_big = await self.target.write(table, rows, state)
            self.ck.stages[stage] = state
            copied += len(rows)
            self.report.copied[stage] = copied
            for row in too_big:
                self.report.skipped.append(_too_big(table, row))
            self.progress.advance(table.name, len(rows))
            await self._throttle(len(rows))
        state.done = True
        await self.target.mark(stage, state)
        self.progress.finish(table.name)
        await self._save()

    async def _fixup(self, table: TablePlan) -> None:
        stage = f"fixup:{table.name}"
        state = self.ck.stage(stage)
        if state.done:
            return
        self.progress.start(f"{table.name} ({', '.join(table.deferred)})", None, state.rows)
        async for rows, position in prefetch(self.source.deferred_rows(table, state.position)):
            state = StageState(position, state.rows + len(rows))
            await self.target.update(table, rows, state)
            self.ck.stages[stage] = state
            self.report.copied[stage] = self.report.copied.get(stage, 0) + len(rows)
            self.progress.advance(f"{table.name} ({', '.join(table.deferred)})", len(rows))
            await self._throttle(len(rows))
        state.done = True
        await self.target.mark(stage, state)
        self.progress.finish(f"{table.name} ({', '.join(table.deferred)})")
        await self._save()

    async def _throttle(self, rows: int) -> None:
        if time.monotonic() - self.ck.saved_at >= self.opts.checkpoint_every:
            await self._save()
        limit = self.opts.max_rows_per_second
        if limit:
            self._rate_rows += rows
            ahead = self._rate_rows / limit - (time.monotonic() - self._rate_start)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _save(self) -> None:
        self.ck.target = await self.target.durable()
        self.ck.save()


def validate(plan: Plan) -> None:
    """Compile the plan's SQL in a scratch SQLite held to D1's limits, before anything is
    written: a table that does not compile is an error; an index, view or trigger that
    does not is left out and reported (a view is also read once, which resolves it)."""
    conn = sqlite3.connect(":memory:")
    try:
        for limit, value in D1_SQLITE_LIMITS.items():
            conn.setlimit(limit, value)
        for table in plan.tables:
            sql = table.create_sql or (
                f"CREATE TABLE IF NOT EXISTS {quote(table.name)} "
                f"({', '.join(quote(c) for c in table.columns)})"
            )
            try:
                conn.execute(sql)
            except sqlite3.Error as e:
                raise PlanError(
                    f"table {table.name}: D1 would refuse its schema ({e}): {sql}"
                ) from None
        kept = []
        for sql in plan.finish_sql:
            view = _VIEW.match(sql)
            try:
                conn.execute(sql)
                if view:
                    conn.execute(f"SELECT * FROM {view.group(1)} LIMIT 0")
                kept.append(sql)
            except sqlite3.Error as e:
                if view:
                    conn.execute(f"DROP VIEW IF EXISTS {view.group(1)}")
                plan.issue(sql.split(" AS ")[0][:120], f"left out: SQLite refuses it ({e})")
        plan.finish_sql = kept
    finally:
        conn.close()


_VIEW = re.compile(r'CREATE\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")*"|\S+)', re.I)


def _too_big(table: TablePlan, row: tuple[Any, ...]) -> Issue:
    from .load import row_bytes

    if table.key:
        key = ", ".join(f"{k}={row[table.columns.index(k)]!r}" for k in table.key)
    else:
        key = repr(row)[:80]
    return Issue(
        f"row {key} of {table.name}",
        f"{row_bytes(row):,} bytes: over D1's 2,000,000-byte row limit, not copied",
        "error",
    )
