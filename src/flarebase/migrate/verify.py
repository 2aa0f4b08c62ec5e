"""Verification: the target holds exactly the source's rows, value for value.

Per table, both sides are read in full and summarized the same way: the row count
and a content checksum, the sum (mod 2**128) of a BLAKE2b digest of each row's
canonical text. Rows are D1 values on both sides (the source's after conversion),
so equal checksums mean equal multisets of rows, in any order. Then a sample of
source rows is looked up in the target by key and compared field by field. On any
difference a second pass names the rows: missing, extra, or changed and in which
columns.

Tables that existed before the migration (the server's `users`) hold other rows
too: their source rows are all looked up by key instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import pickle
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .model import Plan, Row, TablePlan
from .prefetch import prefetch
from .source import Source
from .target import TableReader

MOD = 2**128
SHOW = 20  # differences listed per table


def digests(rows: list[Row]) -> list[int]:
    """128-bit digests of rows of D1 values (None, int, float, str, bytes).

    A row's bytes are its pickle without the memo (`fast`), so that equal values give
    equal bytes whether or not two columns share one object; types stay apart (1, 1.0,
    '1'). Inlined: this runs for every row on both sides.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, 5)
    pickler.fast = True  # no memo: no back-references
    dump, seek, truncate, getvalue = pickler.dump, buffer.seek, buffer.truncate, buffer.getvalue
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    out = []
    for row in rows:
        seek(0)
        truncate()
        dump(row if type(row) is tuple else tuple(row))
        out.append(from_bytes(blake2b(getvalue(), digest_size=16).digest(), "big"))
    return out


def row_digest(row: Row) -> int:
    return digests([row])[0]


@dataclass
class Summary:
    rows: int = 0
    total: int = 0

    def add(self, rows: list[Row]) -> list[int]:
        self.rows += len(rows)
        found = digests(rows)
        self.total = (self.total + sum(found)) % MOD
        return found

    @property
    def checksum(self) -> str:
        return f"{self.total:032x}"


@dataclass
class Difference:
    kind: str  # missing | extra | changed
    key: Any
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)  # col -> {source, target}

    def describe(self) -> str:
        if self.kind == "changed":
            cols = "; ".join(
                f"{c}: source {v['source']!r}, target {v['target']!r}"
                for c, v in self.columns.items()
            )
            return f"{self.key}: {cols}"
        return f"{self.key}: {self.kind} in the target"


@dataclass
class TableCheck:
    table: str
    source_rows: int = 0
    target_rows: int = 0
    source_checksum: str = ""
    target_checksum: str = ""
    sampled: int = 0
    sample_mismatches: int = 0
    differences: list[Difference] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.source_rows == self.target_rows
            and self.source_checksum == self.target_checksum
            and not self.sample_mismatches
            and not self.differences
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["differences"] = [asdict(d) | {"text": d.describe()} for d in self.differences]
        return data


@dataclass
class Verification:
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "tables": [t.to_json() for t in self.tables]}


async def verify(
    source: Source,
    target: TableReader,
    plan: Plan,
    *,
    sample: int = 100,
    tables: list[str] | None = None,
) -> Verification:
    """Compare every planned table of `source` with `target`."""
    result = Verification()
    for table in plan.tables:
        if tables and table.name not in tables:
            continue
        if table.create_sql is None:
            check = await _verify_by_key(source, target, table)
        else:
            check = await _verify_table(source, target, table, sample)
        result.tables.append(check)
    return result


async def _source_pass(source: Source, table: TablePlan, sample: int) -> tuple[Summary, list[Row]]:
    """Count and checksum the source; pick about `sample` rows spread over the table
    (those whose digest falls under a threshold: no extra randomness per row)."""
    summary = Summary()
    picked: list[Row] = []
    threshold = MOD if table.rows <= sample else MOD // table.rows * sample
    async for rows, _ in prefetch(source.rows(table.complete())):
        found = summary.add(rows)
        if len(picked) < sample:
            picked += [r for r, d in zip(rows, found, strict=True) if d < threshold]
    return summary, picked[:sample]


async def _target_pass(target: TableReader, table: TablePlan) -> Summary:
    summary = Summary()
    async for rows in target.scan(table):
        summary.add(rows)
        await asyncio.sleep(0)  # let the source pass read meanwhile (a local D1 never waits)
    return summary


async def _verify_table(
    source: Source, target: TableReader, table: TablePlan, sample: int
) -> TableCheck:
    (src, picked), dst = await asyncio.gather(
        _source_pass(source, table, sample), _target_pass(target, table)
    )
    check = TableCheck(table.name, src.rows, dst.rows, src.checksum, dst.checksum)
    check.sampled = len(picked)
    if table.key and picked:
        idx = [table.columns.index(k) for k in table.key]
        found = await target.lookup(table, [tuple(r[i] for i in idx) for r in picked])
        for row in picked:
            other = found.get(tuple(row[i] for i in idx))
            if other is None or tuple(other) != tuple(row):
                check.sample_mismatches += 1
    else:
        for row in picked:
            if not await target.contains(table, row):
                check.sample_mismatches += 1
    if not check.ok:
        check.differences = await _differences(source, target, table)
        if not check.differences and src.checksum != dst.checksum:
            check.note = "checksums differ but no row differs on a second read: the source changed?"
    return check


async def _key_digests(rows_iter: AsyncIterator[list[Row]], idx: list[int]) -> dict[Any, int]:
    digests: dict[Any, int] = {}
    async for rows in rows_iter:
        for row in rows:
            key = tuple(row[i] for i in idx) if idx else row_digest(row)
            if idx:
                digests[key] = row_digest(row)
            else:
                digests[key] = digests.get(key, 0) + 1
    return digests


async def _source_rows(source: Source, table: TablePlan) -> AsyncIterator[list[Row]]:
    async for rows, _ in source.rows(table.complete()):
        yield rows


async def _differences(source: Source, target: TableReader, table: TablePlan) -> list[Difference]:
    """Name the rows that differ: by key, or for keyless tables by content."""
    idx = [table.columns.index(k) for k in table.key]
    src = await _key_digests(_source_rows(source, table), idx)
    dst = await _key_digests(target.scan(table), idx)
    diffs: list[Difference] = []
    if not idx:  # keyless: multisets of row digests
        counts = Counter(src)
        counts.subtract(Counter(dst))
        wanted = {d: n for d, n in counts.items() if n}
        for side, kind, sign in (
            (_source_rows(source, table), "missing", 1),
            (target.scan(table), "extra", -1),
        ):
            async for batch in side:
                for row in batch:
                    d = row_digest(row)
                    if len(diffs) < SHOW and wanted.get(d, 0) * sign > 0:
                        diffs.append(Difference(kind, list(row)))
                        wanted[d] -= sign
        return diffs
    missing = [k for k in src if k not in dst]
    extra = [k for k in dst if k not in src]
    changed = [k for k in src if k in dst and src[k] != dst[k]]
    diffs += [Difference("missing", _key_text(table, k)) for k in missing[:SHOW]]
    diffs += [Difference("extra", _key_text(table, k)) for k in extra[: SHOW - len(diffs)]]
    wanted_keys = set(changed[: max(0, SHOW - len(diffs))])
    if wanted_keys:
        theirs = await target.lookup(table, list(wanted_keys))
        async for rows in _source_rows(source, table):
            for row in rows:
                key = tuple(row[i] for i in idx)
                if key in wanted_keys:
                    other = theirs.get(key, ())
                    cols = {
                        c: {"source": a, "target": b}
                        for c, a, b in zip(table.columns, row, other, strict=False)
                        if type(a) is not type(b) or a != b
                    }
                    diffs.append(Difference("changed", _key_text(table, key), cols))
    return diffs


def _key_text(table: TablePlan, key: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(table.key, key, strict=True))


async def _verify_by_key(source: Source, target: TableReader, table: TablePlan) -> TableCheck:
    """For tables holding other rows too: every source row, looked up by key."""
    check = TableCheck(table.name, note="existing table: every migrated row looked up by key")
    src, dst = Summary(), Summary()
    idx = [table.columns.index(k) for k in table.key]
    async for rows, _ in source.rows(table):
        src.add(rows)
        found = await target.lookup(table, [tuple(r[i] for i in idx) for r in rows])
        matched = [found[k] for k in (tuple(r[i] for i in idx) for r in rows) if k in found]
        dst.add(matched)
        check.sampled += len(rows)
        for row in rows:
            key = tuple(row[i] for i in idx)
            other = found.get(key)
            if other is None:
                check.differences.append(Difference("missing", _key_text(table, key)))
            elif tuple(other) != tuple(row):
                cols = {
                    c: {"source": a, "target": b}
                    for c, a, b in zip(table.columns, row, other, strict=True)
                    if type(a) is not type(b) or a != b
                }
                check.differences.append(Difference("changed", _key_text(table, key), cols))
    check.differences = check.differences[:SHOW]
    check.source_rows, check.target_rows = src.rows, dst.rows
    check.source_checksum, check.target_checksum = src.checksum, dst.checksum
    return check
