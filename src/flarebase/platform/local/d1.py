"""Local D1: one SQLite file per database, held to D1's limits and semantics.

Limits are SQLite's own run-time limits (as workerd sets them), BEGIN/SAVEPOINT
are refused by their text, unlisted PRAGMAs by an authorizer, and a progress handler stops
a query (or a whole batch) after D1's 30 seconds. Statements run synchronously
inside the async methods: a thread hop would cost more than the query.

Durability: WAL with synchronous=NORMAL. A write that returned is in the WAL and
survives a killed process; only an OS crash can lose the last transactions.
"""

from __future__ import annotations

import gc
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from .. import invocation
from ..d1 import D1ExecResult, D1Meta, D1Result
from ..errors import D1Error
from ..limits import D1_MAX_DATABASE_BYTES, D1_QUERY_SECONDS, D1_SQLITE_LIMITS

TRANSACTION_MESSAGE = (
    "To execute a transaction, please use the state.storage.transaction() or "
    "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT "
    "statements. The JavaScript API is safer because it will automatically roll back on "
    "exceptions, and because it interacts correctly with Durable Objects' automatic atomic "
    "write coalescing."
)
TIMEOUT_MESSAGE = "D1 DB storage operation exceeded timeout which caused object to be reset."

# The PRAGMAs D1 documents as supported; any other is "not authorized".
ALLOWED_PRAGMAS = frozenset(
    """table_list table_info table_xinfo index_list index_info index_xinfo foreign_key_list
    foreign_key_check foreign_keys defer_foreign_keys case_sensitive_like
    ignore_check_constraints legacy_alter_table recursive_triggers reverse_unordered_selects
    quick_check optimize""".split()
)
# Read by FTS5 and R*Tree themselves while creating a table; reading them is harmless.
READABLE_PRAGMAS = frozenset({"data_version", "page_size"})
# Judged from the text: FTS5 and R*Tree run their own BEGIN internally, so the
# authorizer cannot tell a user's transaction from theirs.
_TRANSACTION = re.compile(
    r"\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b",
    re.IGNORECASE | re.DOTALL,
)
_BINDABLE = (type(None), int, float, str, bytes)
_PLAIN = frozenset({type(None), float, str, bytes})


class Guard:
    """Per-connection state for the authorizer and the query deadline."""

    def __init__(self) -> None:
        self.internal = False  # our own BEGIN/COMMIT/PRAGMA are allowed
        self.refused: str | None = None
        self.deadline = float("inf")
        self.timed_out = False
        # A random tag keeps our cached internal statements out of users' reach.
        self.tag = f"/* flarebase {secrets.token_hex(8)} */"

    def authorize(self, action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if self.internal or action != sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK
        pragma = (arg1 or "").lower()
        if pragma in ALLOWED_PRAGMAS or (pragma in READABLE_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        self.refused = "not authorized"
        return sqlite3.SQLITE_DENY

    def arm(self) -> None:
        self.refused = None
        self.timed_out = False
        self.deadline = time.monotonic() + D1_QUERY_SECONDS

    def check_deadline(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1  # non-zero interrupts the statement
        return 0


def configure_connection(
    conn: sqlite3.Connection,
    max_size: int = D1_MAX_DATABASE_BYTES,
    synchronous: Literal["NORMAL", "OFF"] = "NORMAL",
) -> Guard:
    """Give a connection D1's pragmas, limits, authorizer and deadline."""
    conn.execute(f"PRAGMA synchronous={synchronous}")  # first: it also governs the WAL switch
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={max(1, max_size // page_size)}")
    for limit, value in D1_SQLITE_LIMITS.items():
        conn.setlimit(limit, value)
    guard = Guard()
    conn.set_authorizer(guard.authorize)
    conn.set_progress_handler(guard.check_deadline, 100_000)
    return guard


def is_transaction(sql: str) -> bool:
    """True for BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE/END, which D1 refuses."""
    return _TRANSACTION.match(sql) is not None


def transaction_error() -> D1Error:
    return D1Error(f"D1_ERROR: {TRANSACTION_MESSAGE}: SQLITE_AUTH")


def to_d1_error(exc: BaseException, guard: Guard) -> D1Error:
    """Translate a sqlite3 error into D1's wording: `D1_ERROR: <message>: SQLITE_<CODE>`."""
    if isinstance(exc, OverflowError):
        return D1Error(f"D1_TYPE_ERROR: {exc}", code="D1_TYPE_ERROR")
    if guard.timed_out:
        return D1Error(f"D1_ERROR: {TIMEOUT_MESSAGE}")
    if guard.refused:
        return D1Error(f"D1_ERROR: {guard.refused}: SQLITE_AUTH")
    text = str(exc)
    if "Incorrect number of bindings" in text:
        text, name = "Wrong number of parameter bindings for SQL query.", "SQLITE_RANGE"
    elif "query string is too large" in text:
        text, name = "statement too long", "SQLITE_TOOBIG"
    elif "one statement at a time" in text:
        text, name = "A prepared SQL statement must contain only one statement.", "SQLITE_ERROR"
    else:
        name = getattr(exc, "sqlite_errorname", None) or "SQLITE_ERROR"
    return D1Error(f"D1_ERROR: {text}: {name}")


def check_bindable(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """D1 binds null, numbers, strings, booleans and ArrayBuffers; nothing else."""
    for value in values:  # fast path: nothing to convert or refuse
        kind = type(value)
        if kind is int:
            if not -(2**63) <= value < 2**63:
                break
        elif kind not in _PLAIN:
            break
    else:
        return values
    return tuple(_bindable(value) for value in values)


def _bindable(value: Any) -> Any:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, _BINDABLE):
        raise D1Error(
            f"D1_TYPE_ERROR: Type '{type(value).__name__}' not supported for value {value!r}",
            code="D1_TYPE_ERROR",
        )
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        message = f"D1_TYPE_ERROR: integer {value} does not fit in 64 bits"
        raise D1Error(message, code="D1_TYPE_ERROR")
    return value


_COMMENT = re.compile(r"--[^\n]*|/\*.*?(?:\*/|$)", re.DOTALL)
NO_STATEMENT = "SQL code did not contain a statement."


def exec_lines(query: str) -> list[tuple[int, str]]:
    """The non-blank lines of an `exec` query, numbered from 1 (D1 runs each line)."""
    lines = [(n, line) for n, line in enumerate(query.strip().split("\n"), 1) if line.strip()]
    if not lines:
        raise exec_error(1, "", "No SQL statements detected.")
    return lines


def line_statements(line: str) -> list[str]:
    """The statements of one line; an empty one (`;;`, a comment alone) is an error,
    as in D1. An unfinished statement is returned: SQLite says "incomplete input"."""
    statements, pending = [], ""
    pieces = line.split(";")
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        pending += piece if last else piece + ";"
        if not (last or sqlite3.complete_statement(pending)):
            continue
        if _COMMENT.sub("", pending).strip(" \t\r;"):
            statements.append(pending)
        elif not last or pending.strip():
            raise D1Error(NO_STATEMENT)
        pending = ""
    return statements


def exec_error(number: int, line: str, message: str) -> D1Error:
    where = f"Error in line {number}: {line[:200]}"
    return D1Error(f"D1_EXEC_ERROR: {where}: {message}", code="D1_EXEC_ERROR")


class LocalD1:
    """The `D1Database` binding on a local SQLite file."""

    def __init__(self, path: str | Path, max_size: int = D1_MAX_DATABASE_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        self._guard = configure_connection(self._conn, max_size)
        self._checked: set[str] = set()
        self._page_size = int(self._internal(f"PRAGMA page_size {self._guard.tag}")[0])
        self._size = self._current_size()

    # -- the binding API -------------------------------------------------------------
    def prepare(self, query: str) -> LocalStatement:
        if not isinstance(query, str):
            raise D1Error(f"D1_TYPE_ERROR: query must be a string, not {type(query).__name__}")
        return LocalStatement(self, query, ())

    async def batch(self, statements: Iterable[LocalStatement]) -> list[D1Result]:
        """Run statements in one transaction; any failure rolls back all of them."""
        statements = list(statements)
        for stmt in statements:
            if not isinstance(stmt, LocalStatement) or stmt._db is not self:
                raise D1Error("D1_TYPE_ERROR: batch() takes statements prepared on this database")
        invocation.count("d1", len(statements))
        self._guard.arm()
        self._internal(f"BEGIN IMMEDIATE {self._guard.tag}")
        # A few objects per statement (its run, rows, meta and result) would set off
        # collections that scan the whole batch again and again; none can form a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            try:
                runs = self._run_batch(statements)
                try:  # deferred foreign keys are checked here
                    self._internal(f"COMMIT {self._guard.tag}")
                except sqlite3.Error as e:
                    raise to_d1_error(e, self._guard) from None
            except BaseException:
                if self._conn.in_transaction:
                    self._internal(f"ROLLBACK {self._guard.tag}")
                raise
            # One transaction, so one size: what the database measures once it committed.
            self._size = size = self._current_size()
            return [
                D1Result(
                    rows, True, D1Meta(ms, changes, row_id, changes > 0, size, len(rows), changes)
                )
                for ms, changes, row_id, rows in runs
            ]
        finally:
            if collecting:
                gc.enable()

    def _run_batch(self, statements: list[LocalStatement]) -> list[_Run]:
        """Execute a batch's statements: the hot loop of a large batch, so it reads the
        clock and the change counter once per statement (each statement's share is the
        difference from the previous reading) and builds no result objects yet."""
        conn, checked, clock = self._conn, self._checked, time.perf_counter
        execute = conn.execute
        runs: list[_Run] = []
        total, start = conn.total_changes, clock()
        try:
            for stmt in statements:
                sql = stmt.sql
                if sql not in checked:
                    self._check_text(sql)
                cur = execute(sql, stmt.params)
                rows = self._rows(cur) if cur.description else []
                changes = conn.total_changes - total
                total += changes
                end = clock()
                runs.append(((end - start) * 1000, changes, cur.lastrowid or 0, rows))
                start = end
        except (sqlite3.Error, OverflowError, D1Error) as e:
            error = e if isinstance(e, D1Error) else to_d1_error(e, self._guard)
            failed = len(runs)  # the statement after the last that ran
            where = f"(statement {failed + 1} of batch: {statements[failed].sql[:200]})"
            raise D1Error(f"{error} {where}", code=error.code) from None
        return runs

    async def exec(self, query: str) -> D1ExecResult:
        """Run queries without bindings, a line at a time, as D1's `exec` does: a
        statement cannot span lines. All lines run, or none (as Miniflare's D1)."""
        start = time.perf_counter()
        lines = exec_lines(query)
        invocation.count("d1", len(lines))
        self._guard.arm()
        self._internal(f"BEGIN IMMEDIATE {self._guard.tag}")
        try:
            for number, line in lines:
                try:
                    for sql in line_statements(line):
                        if is_transaction(sql):
                            raise transaction_error()
                        self._conn.execute(sql)
                except (sqlite3.Error, OverflowError, D1Error) as e:
                    err = e if isinstance(e, D1Error) else to_d1_error(e, self._guard)
                    message = str(err).removeprefix("D1_ERROR: ")
                    raise exec_error(number, line, message) from None
            try:
                self._internal(f"COMMIT {self._guard.tag}")
            except sqlite3.Error as e:
                raise exec_error(lines[-1][0], lines[-1][1], str(e)) from None
        except BaseException:
            if self._conn.in_transaction:
                self._internal(f"ROLLBACK {self._guard.tag}")
            raise
        self._size = self._current_size()
        return D1ExecResult(count=len(lines), duration=_ms_since(start))

    async def dump(self) -> bytes:
        """The database as an SQLite file image (D1's deprecated `dump()`)."""
        copy = sqlite3.connect(":memory:")
        try:
            self._conn.backup(copy)  # serialize() refuses a WAL database; a copy is fine
            return copy.serialize()
        finally:
            copy.close()

    async def aclose(self) -> None:
        self._conn.close()

    # -- internals ---------------------------------------------------------------------
    def _internal(self, sql: str) -> Any:
        self._guard.internal = True
        try:
            return self._conn.execute(sql).fetchone()
        finally:
            self._guard.internal = False

    def _current_size(self) -> int:
        return int(self._internal(f"PRAGMA page_count {self._guard.tag}")[0]) * self._page_size

    def _check_text(self, sql: str) -> None:
        """Refuse transaction statements by their text, judging each distinct text once."""
        if is_transaction(sql):
            raise transaction_error()
        if len(self._checked) > 4096:
            self._checked.clear()
        self._checked.add(sql)

    def _cursor(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Execute one statement outside a batch."""
        if sql not in self._checked:
            self._check_text(sql)
        invocation.count("d1")
        self._guard.arm()
        try:
            return self._conn.execute(sql, params)
        except (sqlite3.Error, OverflowError) as e:
            raise to_d1_error(e, self._guard) from None

    def _rows(self, cur: sqlite3.Cursor) -> list[dict[str, Any]]:
        """Fetch a statement's rows as dicts (only asked when it has result columns)."""
        cols = [d[0] for d in cur.description]
        try:
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        except (sqlite3.Error, OverflowError) as e:
            raise to_d1_error(e, self._guard) from None

    def _result(self, sql: str, params: tuple[Any, ...]) -> D1Result:
        start = time.perf_counter()
        conn = self._conn
        before = conn.total_changes
        cur = self._cursor(sql, params)
        # Statements without result columns ran to completion already.
        results = self._rows(cur) if cur.description else []
        changes = conn.total_changes - before
        if changes:
            self._size = self._current_size()
        meta = D1Meta(
            (time.perf_counter() - start) * 1000,
            changes,
            cur.lastrowid or 0,
            changes > 0,
            self._size,
            len(results),
            changes,
        )
        return D1Result(results, True, meta)


# What `_run_batch` keeps of a statement: duration (ms), changes, last row id, rows.
_Run = tuple[float, int, int, list[dict[str, Any]]]


class LocalStatement:
    """A `D1PreparedStatement`: immutable; `bind` returns a new statement."""

    __slots__ = ("_db", "params", "sql")

    def __init__(self, db: LocalD1, sql: str, params: tuple[Any, ...]) -> None:
        self._db = db
        self.sql = sql
        self.params = params

    def bind(self, *values: Any) -> LocalStatement:
        return LocalStatement(self._db, self.sql, check_bindable(values))

    async def first(self, column: str | None = None) -> Any:
        cur = self._db._cursor(self.sql, self.params)
        try:
            row = cur.fetchone()
        except sqlite3.Error as e:
            raise to_d1_error(e, self._db._guard) from None
        if row is None:
            return None
        cols = _names(cur)
        if column is None:
            return dict(zip(cols, row, strict=True))
        if column not in cols:
            raise D1Error(
                f"D1_COLUMN_NOTFOUND: Column not found ({column})", code="D1_COLUMN_NOTFOUND"
            )
        return row[cols.index(column)]

    async def all(self) -> D1Result:
        return self._db._result(self.sql, self.params)

    async def run(self) -> D1Result:
        return self._db._result(self.sql, self.params)

    async def raw(self, column_names: bool = False) -> list[list[Any]]:
        cur = self._db._cursor(self.sql, self.params)
        try:
            rows = [list(row) for row in cur.fetchall()]
        except sqlite3.Error as e:
            raise to_d1_error(e, self._db._guard) from None
        return [_names(cur), *rows] if column_names else rows


def _names(cur: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cur.description] if cur.description else []


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
