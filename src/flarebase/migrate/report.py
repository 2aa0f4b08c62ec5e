"""The migration report: what was planned, copied, left out and verified.

`Report.to_json()` is the machine-readable form (`--report FILE`); `render()` the
human one. Status: "dry-run", "copied" (verification off), "verified", or
"mismatch" (verification found differences: the command exits non-zero).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .model import Issue, Plan
from .verify import Verification


@dataclass
class Report:
    plan: Plan
    target: str
    status: str = "planned"
    copied: dict[str, int] = field(default_factory=dict)  # stage -> rows written this run
    skipped: list[Issue] = field(default_factory=list)  # rows D1 cannot hold
    verification: Verification | None = None
    resumed: bool = False
    seconds: float = 0.0
    checkpoint: str | None = None
    started_at: float = field(default_factory=time.time)
    unit: str = "rows"  # what `copied` counts: rows, keys, vectors, objects

    @property
    def ok(self) -> bool:
        if self.verification is not None and not self.verification.ok:
            return False
        return not self.skipped

    @property
    def issues(self) -> list[Issue]:
        return self.plan.issues + self.skipped

    def rows_copied(self) -> int:
        return sum(n for stage, n in self.copied.items() if stage.startswith("copy:"))

    @property
    def _unit(self) -> str:
        return "objects" if self.unit == "bytes" else self.unit

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "source": self.plan.source,
            "target": self.target,
            "resumed": self.resumed,
            "checkpoint": self.checkpoint,
            "seconds": round(self.seconds, 3),
            "rows_copied_this_run": self.rows_copied(),
            "unit": self.unit,
            "copied": self.copied,
            "plan": self.plan.to_json(),
            "issues": [i.to_json() for i in self.issues],
            "verification": self.verification.to_json() if self.verification else None,
        }

    def write(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=repr) + "\n", encoding="utf-8")

    def render(self, schema: bool = False) -> RenderableType:
        parts: list[RenderableType] = []
        tables = Table("table", "from", "rows", "key", title=f"{self.plan.source} -> {self.target}")
        for t in self.plan.tables:
            key = ", ".join(t.key) or "(none: ctid order)"
            if t.create_sql is None:
                key += " (existing table, upsert)"
            tables.add_row(t.name, t.source, f"{t.rows:,}", key)
        parts.append(tables)
        if schema:
            sql = [*self.plan.schema_sql(), *self.plan.finish_sql]
            parts.append(Text(";\n\n".join(sql) + ";", style="cyan"))
        if self.issues:
            issues = Table("object", "not carried over as it was", title="issues")
            for issue in self.issues:
                style = "red" if issue.severity == "error" else "yellow"
                issues.add_row(Text(issue.object, style=style), issue.reason)
            parts.append(issues)
        if self.verification is not None:
            parts.append(render_verification(self.verification))
        summary = (
            f"{self.status}: {self.rows_copied():,} {self._unit} copied in {self.seconds:.1f} s"
        )
        if self.resumed:
            summary += " (resumed from the checkpoint)"
        parts.append(Text(summary, style="green" if self.ok else "red bold"))
        return Group(*parts)


def render_verification(v: Verification) -> RenderableType:
    table = Table(
        "table",
        "source rows",
        "target rows",
        "checksum",
        "sampled",
        "result",
        title="verification",
    )
    notes: list[RenderableType] = []
    for t in v.tables:
        same = t.source_checksum == t.target_checksum
        checksum = t.source_checksum[:12] + ("" if same else f" != {t.target_checksum[:12]}")
        result = Text("ok", style="green") if t.ok else Text("DIFFERENT", style="red bold")
        table.add_row(
            t.table, f"{t.source_rows:,}", f"{t.target_rows:,}", checksum, str(t.sampled), result
        )
        for d in t.differences:
            notes.append(Text(f"  {t.table}: {d.describe()}", style="red"))
        if t.note and not t.ok:
            notes.append(Text(f"  {t.table}: {t.note}", style="red"))
    return Group(table, *notes)


def print_report(report: Report, console: Console | None = None, schema: bool = False) -> None:
    (console or Console()).print(report.render(schema))
