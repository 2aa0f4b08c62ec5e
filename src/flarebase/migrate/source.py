"""What the engine needs from a source (Postgres, SQLite; Redis and others later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from .model import Key, Plan, Row, TablePlan

Batch = tuple[list[Row], Key]  # rows, and the keyset position after the last of them


class Source(Protocol):
    """A readable database. Rows come as D1 values, in key order, in batches.

    `rows(table, after)` continues after a keyset position (None: from the start);
    `deferred_rows` yields `(key..., deferred columns...)` for the second pass of a
    table in a foreign-key cycle. Both must yield exactly the values `rows` would give
    for the same row, since verification compares them with the target.
    """

    description: str

    async def plan(self) -> Plan: ...

    def rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]: ...

    def deferred_rows(self, table: TablePlan, after: Key | None = None) -> AsyncIterator[Batch]: ...

    async def aclose(self) -> None: ...
