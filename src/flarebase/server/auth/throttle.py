"""Fixed-window counters in D1 (`auth_throttle`), without Redis.

A rule allows `limit` events per `window` seconds for one key (an account, an
IP). The window opens with the first event and closes `window` seconds later;
while a key has used up its window, `blocked` answers how many seconds remain,
which becomes 429 with Retry-After. Counting is one atomic upsert per key, so
concurrent requests cannot lose a count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    limit: int
    window: int  # seconds


_HIT = (
    "INSERT INTO auth_throttle (key, count, reset_at) VALUES (?, 1, ?) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN auth_throttle.reset_at <= ? THEN 1 ELSE auth_throttle.count + 1 END, "
    "reset_at = CASE WHEN auth_throttle.reset_at <= ? THEN excluded.reset_at "
    "ELSE auth_throttle.reset_at END"
)


async def blocked(db: Any, rules: Sequence[Rule], now: float | None = None) -> int:
    """Seconds until every rule allows another event; 0 when they all do."""
    if not rules:
        return 0
    now = time.time() if now is None else now
    marks = ", ".join("?" for _ in rules)
    rows = (
        await db.prepare(
            "SELECT key, count, reset_at FROM auth_throttle "
            f"WHERE key IN ({marks}) AND reset_at > ?"
        )
        .bind(*(r.key for r in rules), int(now))
        .all()
    ).results
    limits = {r.key: r.limit for r in rules}
    waits = [row["reset_at"] - now for row in rows if row["count"] >= limits[row["key"]]]
    return max(1, math.ceil(max(waits))) if waits else 0


async def hit(db: Any, rules: Sequence[Rule], now: float | None = None) -> None:
    """Count one event against every rule (and drop counters whose window closed)."""
    if not rules:
        return
    t = int(time.time() if now is None else now)
    statements = [db.prepare("DELETE FROM auth_throttle WHERE reset_at <= ?").bind(t - 3600)]
    statements += [db.prepare(_HIT).bind(r.key, t + r.window, t, t) for r in rules]
    await db.batch(statements)


async def reset(db: Any, keys: Sequence[str]) -> None:
    """Forget the counts of these keys (an account after a successful sign-in)."""
    if keys:
        marks = ", ".join("?" for _ in keys)
        await db.prepare(f"DELETE FROM auth_throttle WHERE key IN ({marks})").bind(*keys).run()
