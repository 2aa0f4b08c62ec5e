"""The checkpoint file: where a migration stands, so that re-running it continues.

A migration is a list of stages ("schema", "copy:<table>", "fixup:<table>",
"finish"); each stage has a keyset position (the key of the last row written), a
row count and a done flag. The file is JSON, replaced atomically (write, fsync,
rename), and written only after the target holds what it records:

- D1 targets also record each stage's state in the same atomic batch as the rows
  (table `_flarebase_migrate`); after a kill -9 between that batch and the file
  write, the target's record wins, so no batch is ever written twice.
- File targets (`--sql-out`) record the byte offset of the synced SQL file; a
  resumed run cuts the file back to it and continues from the recorded positions.

`fingerprint` ties a checkpoint to its source, target and options: resuming with
different options is refused rather than producing a mixed result.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..platform.errors import FlarebaseError

VERSION = 1


class CheckpointError(FlarebaseError):
    code = "MIGRATE_CHECKPOINT"


@dataclass
class StageState:
    position: list[Any] | None = None
    rows: int = 0
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "rows": self.rows, "done": self.done}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageState:
        return cls(data.get("position"), int(data.get("rows", 0)), bool(data.get("done")))


@dataclass
class Checkpoint:
    path: Path
    fingerprint: str
    description: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, StageState] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)  # e.g. {"offset": n} for files
    finished: bool = False
    saved_at: float = 0.0

    @classmethod
    def open(
        cls,
        path: str | Path,
        fingerprint: str,
        description: dict[str, Any] | None = None,
        restart: bool = False,
    ) -> Checkpoint:
        """The checkpoint at `path` if it belongs to this migration, else a fresh one.

        A checkpoint of a different migration (other source, target or options) is
        an error unless `restart` is given.
        """
        path = Path(path)
        fresh = cls(path, fingerprint, description or {})
        if restart or not path.exists():
            return fresh
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
        if data.get("version") != VERSION or data.get("fingerprint") != fingerprint:
            was = data.get("description", {})
            raise CheckpointError(
                f"checkpoint {path} belongs to another migration ({json.dumps(was)}); "
                "run with --restart to start over, or name another --checkpoint"
            )
        return cls(
            path,
            fingerprint,
            data.get("description", {}),
            {k: StageState.from_json(v) for k, v in data.get("stages", {}).items()},
            data.get("target", {}),
            bool(data.get("finished")),
        )

    @property
    def resumed(self) -> bool:
        return bool(self.stages)

    def stage(self, name: str) -> StageState:
        return self.stages.setdefault(name, StageState())

    def save(self) -> None:
        """Replace the file atomically; after a crash it holds this state or the last."""
        data = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "description": self.description,
            "stages": {k: v.to_json() for k, v in self.stages.items()},
            "target": self.target,
            "finished": self.finished,
            "saved_at": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self.saved_at = time.monotonic()

    def rows(self) -> int:
        return sum(s.rows for name, s in self.stages.items() if name.startswith("copy:"))


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_path(root: Path, kind: str, *identity: Any) -> Path:
    """`.flarebase/migrate/<kind>-<hash>.checkpoint.json`: the same command finds it again."""
    return root / ".flarebase" / "migrate" / f"{kind}-{fingerprint(*identity)[:12]}.checkpoint.json"
