"""Redis (or Upstash Redis) keys into KV and D1, by rules; verified by reading both again.

Writes are idempotent, so a batch written again after a crash changes nothing:
a KV key is `put` with the same value and expiry; a D1 destination replaces all of
one Redis key's rows (`DELETE ... WHERE key = ?` then the inserts, in one D1 batch).
KV allows one write per key per second: a write refused with 429 is retried after
that second.

Verification re-reads the source (a new SCAN) and compares, per destination:
- D1 tables: the row count and content checksum (`verify.digests`, as for tables)
  of the rows the rules make from the source against the rows in the table, without
  `expires_at`; on a difference, the Redis keys whose rows differ are named;
- KV: every source key is looked up: value byte for byte, and its expiry (within
  two seconds, or as the TTL policy allows).
Keys that expire within five seconds of the verification's start are left out on
both sides (they may be gone from one before the other is read).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..platform.errors import FlarebaseError
from .load import MAX_ROW_BYTES, bound_inserts, row_bytes
from .model import Plan, TablePlan, quote
from .objects import Batch, Tally, Written
from .redis_rules import Rule, Rules, TableSpec, Unmovable
from .sources.redis import RedisClient, RedisReader, RedisValue
from .verify import SHOW, Difference, Summary, TableCheck, Verification, digests

KV_MINIMUM = 60
MARGIN = 1  # seconds between reading a TTL and KV checking it
EXPIRY_TOLERANCE = 2  # seconds
VERIFY_HORIZON_MS = 5000
STATEMENTS_PER_BATCH = 500


class KeysTargetError(FlarebaseError):
    code = "MIGRATE_TARGET"


@dataclass
class Entry:
    """One scanned key: moved by `rule` (value or why not), or skipped for `reason`."""

    key: bytes
    rule: Rule | None = None
    value: RedisValue | str | None = None
    reason: str = ""


class RedisMigration:
    kind = "redis"
    unit = "keys"

    def __init__(
        self,
        client: RedisClient,
        rules: Rules,
        bindings: dict[str, Any],
        target: str,
        *,
        count: int = 500,
        chunk: int = 1000,
    ) -> None:
        self.client = client
        self.rules = rules
        self.bindings = bindings
        self.reader = RedisReader(client, count=count, chunk=chunk)
        self.description = client.description
        self.target = target
        self.options = {"rules": rules.source or repr(rules.rules), "scan_count": count}
        self.tally = Tally()
        self.total: int | None = None
        self.tables = rules.tables()
        for name in {r.binding for r in rules.rules if r.binding}:
            if name not in bindings:
                raise KeysTargetError(f"no binding {name} in the project (wrangler.toml)")

    async def plan(self) -> Plan:
        self.total = await self.reader.dbsize()
        plan = Plan(self.description, options={"rules": len(self.rules.rules)})
        for spec in self.tables:
            plan.tables.append(
                TablePlan(
                    f"{spec.binding}.{spec.name}",
                    ", ".join(r.match for r in self._rules_of(spec)),
                    spec.columns,
                    spec.key,
                    spec.create_sql,
                )
            )
        for rule in self.rules.rules:
            if rule.to == "kv":
                plan.tables.append(
                    TablePlan(rule.destination, rule.match, ["key", "value"], ["key"], "")
                )
        return plan

    def _rules_of(self, spec: TableSpec) -> list[Rule]:
        return [
            r
            for r in self.rules.rules
            if r.to == "d1" and (r.binding, r.table) == (spec.binding, spec.name)
        ]

    async def prepare(self, saved: dict[str, Any], fresh: bool, replace: bool) -> None:
        for spec in self.tables:
            db = self.bindings[spec.binding]
            if replace:
                await db.exec(f"DROP TABLE IF EXISTS {quote(spec.name)}")
            await db.exec(spec.create_sql)
            info = await db.prepare(f"PRAGMA table_info({quote(spec.name)})").raw()
            columns = [row[1] for row in info]
            if columns != spec.columns:
                raise KeysTargetError(
                    f"D1 {spec.binding}: table {spec.name} exists with columns {columns}, the "
                    f"rules make {spec.columns}; rename the table in the rules or use --replace"
                )

    async def batches(self, after: list[Any] | None) -> AsyncIterator[Batch]:
        cursor = int(after[0]) if after else 0
        async for scanned, next_cursor in self.reader.scan(cursor):
            entries = await self._read(scanned.keys)
            yield Batch(entries, [next_cursor], units=len(entries))

    async def _read(self, keys: list[tuple[bytes, str, int | None]]) -> list[Entry]:
        entries: list[Entry] = []
        wanted: list[tuple[bytes, str, int | None]] = []
        rules: list[Rule] = []
        for key, kind, expires in keys:
            if self.rules.resumable_stream(key):
                entries.append(Entry(key, reason="resumable-stream"))
                continue
            if kind not in ("string", "json", "hash", "list", "set", "zset", "stream"):
                entries.append(Entry(key, reason=f"unsupported type {kind}"))
                continue
            rule = self.rules.find(key, kind)
            if rule is None:
                entries.append(Entry(key, reason=f"no rule ({kind})"))
            elif rule.to == "skip":
                entries.append(Entry(key, rule, reason="skip"))
            else:
                wanted.append((key, kind, expires))
                rules.append(rule)
        values = await self.reader.values(wanted) if wanted else []
        for (key, _, _), rule, value in zip(wanted, rules, values, strict=True):
            entries.append(Entry(key, rule, value))
        return entries

    # -- writing ---------------------------------------------------------------------------
    async def write(self, items: list[Entry]) -> Written:
        written = Written()
        kv_puts: list[tuple[Rule, str, bytes, dict[str, Any]]] = []
        d1: dict[str, list[Any]] = defaultdict(list)
        now = time.time()
        for entry in items:
            name = entry.key.decode("utf-8", errors="backslashreplace")
            if entry.rule is None:
                if entry.reason == "resumable-stream":
                    self.tally.add("resumable-stream keys", "skipped (live stream state)", name)
                else:
                    self.tally.add("keys without a rule", f"not copied: {entry.reason}", name)
                continue
            rule = entry.rule
            if entry.reason == "skip":
                self.tally.add(rule.name, "skipped by the rule", name)
                continue
            value = entry.value
            if not isinstance(value, RedisValue):
                self.tally.add(rule.name, f"not copied: {value}", name)
                continue
            try:
                if rule.to == "kv":
                    ready = self._kv_put(rule, value, now)
                    if ready is not None:
                        kv_puts.append((rule, *ready))
                else:
                    self._d1_statements(rule, value, d1)
                    written.counts[rule.destination] = written.counts.get(rule.destination, 0) + 1
            except Unmovable as e:
                self.tally.add(rule.name, f"not copied: {e}", name, "error")
        for binding, statements in d1.items():
            await self._d1_batch(binding, statements)
        if kv_puts:
            semaphore = asyncio.Semaphore(16)

            async def put(rule: Rule, key: str, data: bytes, options: dict[str, Any]) -> None:
                async with semaphore:
                    if await self._put(self.bindings[rule.binding or ""], key, data, options):
                        written.counts[rule.destination] = (
                            written.counts.get(rule.destination, 0) + 1
                        )
                    else:
                        self.tally.add(rule.name, "not copied: KV refused the value", key, "error")

            await asyncio.gather(*(put(*p) for p in kv_puts))
        return written

    def _kv_put(
        self, rule: Rule, value: RedisValue, now: float
    ) -> tuple[str, bytes, dict[str, Any]] | None:
        key = rule.kv_key(value.key)
        data = rule.kv_value(value)
        if len(data) > 25 * 1024 * 1024:
            raise Unmovable(f"{len(data):,} bytes: over KV's 25 MiB value limit")
        options: dict[str, Any] = {}
        if value.expires_at_ms is not None:
            at = math.ceil(value.expires_at_ms / 1000)
            minimum = math.floor(now) + KV_MINIMUM + MARGIN
            if at <= now:
                self.tally.add(rule.name, "expired while being copied", value.name)
                return None
            if at < minimum:
                policy = rule.ttl_under_minimum
                if policy == "skip":
                    self.tally.add(rule.name, "TTL under KV's 60 s minimum: skipped", value.name)
                    return None
                if policy == "drop-ttl":
                    self.tally.add(
                        rule.name, "TTL under KV's 60 s minimum: written without expiry", value.name
                    )
                    return key, data, options
                self.tally.add(
                    rule.name, "TTL under KV's 60 s minimum: extended to 60 s", value.name
                )
                at = minimum
            options["expiration"] = at
        return key, data, options

    async def _put(self, kv: Any, key: str, data: bytes, options: dict[str, Any]) -> bool:
        for attempt in range(4):
            try:
                await kv.put(key, data, **options)
                return True
            except FlarebaseError as e:
                if "429" not in str(e) or attempt == 3:
                    if "413" in str(e) or "414" in str(e):
                        return False
                    raise KeysTargetError(f"KV put {key!r}: {e}") from None
                await asyncio.sleep(1.05)  # one write per key per second
        return False

    def _d1_statements(self, rule: Rule, value: RedisValue, out: dict[str, list[Any]]) -> None:
        spec = rule.table_spec()
        rows = rule.rows(value)
        big = [r for r in rows if row_bytes(r) > MAX_ROW_BYTES]
        if big:
            raise Unmovable(f"a row of {row_bytes(big[0]):,} bytes: over D1's row limit")
        db = self.bindings[spec.binding]
        key = rows[0][0] if rows else _short_key(rule, value)
        group = [
            db.prepare(f"DELETE FROM {quote(spec.name)} WHERE {quote(spec.key[0])} = ?").bind(key)
        ]
        for sql, params in bound_inserts(spec.name, spec.columns, rows):
            group.append(db.prepare(sql).bind(*params))
        out[spec.binding].append(group)

    async def _d1_batch(self, binding: str, groups: list[list[Any]]) -> None:
        """Each key's statements stay in one batch (a key's rows are replaced atomically)."""
        db = self.bindings[binding]
        pending: list[Any] = []
        for group in groups:
            if pending and len(pending) + len(group) > STATEMENTS_PER_BATCH:
                await self._run_batch(db, binding, pending)
                pending = []
            pending += group
        if pending:
            await self._run_batch(db, binding, pending)

    async def _run_batch(self, db: Any, binding: str, statements: list[Any]) -> None:
        try:
            await db.batch(statements)
        except Exception as e:  # D1Error; a provider may let a driver's error through
            raise KeysTargetError(f"D1 {binding}: {e}") from None

    # -- verification ----------------------------------------------------------------------
    async def verify(self, sample: int = 0) -> Verification:
        cutoff = int(time.time() * 1000) + VERIFY_HORIZON_MS
        checks: dict[str, TableCheck] = {}
        src: dict[str, Summary] = defaultdict(Summary)
        dst: dict[str, Summary] = defaultdict(Summary)
        for spec in self.tables:
            checks[_table_name(spec)] = TableCheck(_table_name(spec))
        for rule in self.rules.rules:
            if rule.to == "kv":
                checks.setdefault(
                    rule.destination,
                    TableCheck(rule.destination, note="every source key looked up"),
                )
        async for scanned, _ in self.reader.scan(0):
            keys = [k for k in scanned.keys if k[2] is None or k[2] >= cutoff]
            for entry in await self._read(keys):
                rule_of, value = entry.rule, entry.value
                if rule_of is None or entry.reason or not isinstance(value, RedisValue):
                    continue
                if value.expires_at_ms is not None and value.expires_at_ms < cutoff:
                    continue
                try:
                    if rule_of.to == "d1":
                        spec = rule_of.table_spec()
                        n = len(spec.content_columns)
                        src[_table_name(spec)].add([r[:n] for r in rule_of.rows(value)])
                    else:
                        check = checks[rule_of.destination]
                        await self._check_kv(rule_of, value, check, src, dst)
                except Unmovable:
                    continue  # reported as not copied by the migration
        for spec in self.tables:
            name = _table_name(spec)
            async for rows in self._scan_table(spec, cutoff):
                dst[name].add(rows)
        for name, check in checks.items():
            check.source_rows, check.source_checksum = src[name].rows, src[name].checksum
            check.target_rows, check.target_checksum = dst[name].rows, dst[name].checksum
        for spec in self.tables:
            check = checks[_table_name(spec)]
            if not check.ok:
                check.differences = await self._table_differences(spec, cutoff)
        return Verification(list(checks.values()))

    async def _check_kv(
        self,
        rule: Rule,
        value: RedisValue,
        check: TableCheck,
        src: dict[str, Summary],
        dst: dict[str, Summary],
    ) -> None:
        key = rule.kv_key(value.key)
        data = rule.kv_value(value)
        now = time.time()
        minimum = now + KV_MINIMUM + MARGIN + VERIFY_HORIZON_MS / 1000
        source_at = None if value.expires_at_ms is None else value.expires_at_ms / 1000
        if source_at is not None and source_at < minimum and rule.ttl_under_minimum == "skip":
            return  # may or may not have been copied, by the policy
        kv = self.bindings[rule.binding or ""]
        src[rule.destination].add([(key, data)])
        check.sampled += 1
        stored = await kv.get(key, "arrayBuffer")
        if stored is None:
            _difference(check, Difference("missing", key))
            return
        stored = bytes(stored)
        dst[rule.destination].add([(key, stored)])
        if stored != data:
            cols: dict[str, dict[str, Any]] = {
                "value": {"source": _preview(data), "target": _preview(stored)}
            }
            _difference(check, Difference("changed", key, cols))
            return
        listed = await kv.list(prefix=key, limit=1)
        target_at = next((k.expiration for k in listed.keys if k.name == key), None)
        if not _expiry_ok(source_at, target_at, minimum, rule.ttl_under_minimum):
            cols = {"expiration": {"source": source_at, "target": target_at}}
            check.sample_mismatches += 1
            _difference(check, Difference("changed", key, cols))

    async def _scan_table(
        self, spec: TableSpec, cutoff: int, with_key: bool = False
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        db = self.bindings[spec.binding]
        cols = ", ".join(quote(c) for c in spec.content_columns)
        exp = quote(spec.columns[-1])
        sql = (
            f"SELECT rowid, {cols} FROM {quote(spec.name)} WHERE rowid > ? "
            f"AND ({exp} IS NULL OR {exp} >= ?) ORDER BY rowid LIMIT 2000"
        )
        position = -(2**63)
        while True:
            rows = await db.prepare(sql).bind(position, cutoff).raw()
            if not rows:
                return
            yield [tuple(r[1:]) for r in rows]
            position = rows[-1][0]

    async def _table_differences(self, spec: TableSpec, cutoff: int) -> list[Difference]:
        """The Redis keys whose rows differ: missing, extra, or changed."""
        n = len(spec.content_columns)
        source: dict[Any, int] = defaultdict(int)
        target: dict[Any, int] = defaultdict(int)
        async for scanned, _ in self.reader.scan(0):
            keys = [k for k in scanned.keys if k[2] is None or k[2] >= cutoff]
            for entry in await self._read(keys):
                found, value = entry.rule, entry.value
                if found is None or found.to != "d1" or not isinstance(value, RedisValue):
                    continue
                if (found.binding, found.table) != (spec.binding, spec.name):
                    continue
                try:
                    rows = [r[:n] for r in found.rows(value)]
                except Unmovable:
                    continue
                key = _short_key(found, value)
                source[key] = (source[key] + sum(digests(rows))) % 2**128 if rows else source[key]
        async for rows in self._scan_table(spec, cutoff):
            for row, d in zip(rows, digests(rows), strict=True):
                target[row[0]] = (target[row[0]] + d) % 2**128
        diffs = [Difference("missing", repr(k)) for k in source if k not in target]
        diffs += [Difference("extra", repr(k)) for k in target if k not in source]
        diffs += [
            Difference("changed", repr(k), {"rows": {"source": "…", "target": "differ"}})
            for k in source
            if k in target and source[k] != target[k]
        ]
        return diffs[:SHOW]

    async def aclose(self) -> None:
        await self.client.aclose()


def _table_name(spec: TableSpec) -> str:
    return f"D1 {spec.binding}.{spec.name}"


def _short_key(rule: Rule, value: RedisValue) -> Any:
    short = rule.short_key(value.key)
    try:
        return short.decode("utf-8")
    except UnicodeDecodeError:
        return short


def _difference(check: TableCheck, difference: Difference) -> None:
    if len(check.differences) < SHOW:
        check.differences.append(difference)
    else:
        check.note = "more differences than listed"


def _expiry_ok(source: float | None, target: int | None, minimum: float, policy: str) -> bool:
    if source is None:
        return target is None
    if source < minimum:  # under KV's minimum now: the policy decided (or will have)
        if target is None:
            return policy == "drop-ttl"
        return target >= source - EXPIRY_TOLERANCE
    return target is not None and abs(target - source) <= EXPIRY_TOLERANCE


def _preview(data: bytes) -> str:
    text = data[:60].decode("utf-8", errors="backslashreplace")
    return text + ("…" if len(data) > 60 else "") + f" ({len(data):,} bytes)"
