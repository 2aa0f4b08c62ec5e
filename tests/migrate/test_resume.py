"""kill -9 in the middle of a migration, run the same command again: it continues
where it stopped, and verification finds every row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .conftest import FLAREBASE, Project, make_project, pg_rows

TABLES = ["members", "chats", "chat_tags", "events", "messages"]


def start(project: Project, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(FLAREBASE), *args],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


def checkpoint(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def kill_when(
    proc: subprocess.Popen[bytes], path: Path, ready: Any, timeout: float = 60
) -> dict[str, Any]:
    """kill -9 the process a moment after its checkpoint satisfies `ready` (so that the
    target is ahead of the checkpoint file, as after a real crash); return the file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = checkpoint(path)
        if state and ready(state["stages"]):
            time.sleep(0.3)  # more batches reach the target; the file lags behind
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return checkpoint(path)
        if proc.poll() is not None:
            raise AssertionError(
                f"finished before the kill: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no progress in the checkpoint")


def copied(stages: dict[str, Any]) -> int:
    return sum(s["rows"] for name, s in stages.items() if name.startswith("copy:"))


def migrate_args(project: Project, url: str, *extra: str) -> list[str]:
    return [
        "migrate",
        "postgres",
        url,
        "--config",
        str(project.config),
        "--state-dir",
        str(project.state),
        "--checkpoint",
        str(project.root / "ck.json"),
        "--no-auth",
        *extra,
    ]


def test_kill_during_copy_and_second_pass_then_resume(chat_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ck = project.root / "ck.json"
    slow = migrate_args(project, chat_url, "--d1", "DB", "--batch-rows", "40")
    slow += ["--max-rows-per-second", "3000"]
    # 1: in the middle of the rows (events: no key at all; messages: a self-reference)
    first = kill_when(start(project, slow), ck, lambda s: copied(s) >= 1700)
    assert not first["finished"]
    assert project.sql("SELECT count(*) FROM _flarebase_migrate")[0][0] > 0
    # 2: in the second pass, which sets messages.parent_id once every row is there
    second = kill_when(
        start(project, slow), ck, lambda s: s.get("fixup:messages", {}).get("rows", 0) > 0
    )
    assert second["stages"]["copy:messages"]["done"]
    # 3: to the end
    done = subprocess.run(
        [str(FLAREBASE), *migrate_args(project, chat_url, "--d1", "DB", "--report", "r.json")],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((project.root / "r.json").read_text())
    assert report["status"] == "verified" and report["resumed"]
    assert report["rows_copied_this_run"] < 5500  # continued, did not start over
    for check in report["verification"]["tables"]:
        assert check["source_rows"] == check["target_rows"], check
        assert check["source_checksum"] == check["target_checksum"], check
    for table in TABLES:
        assert project.sql(f"SELECT count(*) FROM {table}") == pg_rows(
            chat_url, f"SELECT count(*) FROM {table}"
        )
    # no duplicated row in the keyless table: same multiset as the source
    query = "SELECT kind, {g}, count(*) FROM events GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2"
    ours = project.sql(query.format(g="payload->>'g'"))
    assert ours == pg_rows(chat_url, query.format(g="(payload->>'g')::int"))
    assert len(ours) < 1200  # the table does hold duplicate rows
    assert project.sql("SELECT count(*) FROM messages WHERE parent_id IS NOT NULL") == [(2989,)]
    assert project.sql("SELECT name FROM sqlite_master WHERE name = '_flarebase_migrate'") == []
    # and once more: nothing left to do, still verified
    again = subprocess.run(
        [str(FLAREBASE), *migrate_args(project, chat_url, "--d1", "DB", "--report", "r2.json")],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((project.root / "r2.json").read_text())["rows_copied_this_run"] == 0


def test_a_checkpoint_of_other_options_is_refused(chat_url: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    project.cli(*migrate_args(project, chat_url, "--d1", "DB"))
    other = migrate_args(project, chat_url, "--d1", "DB", "--timestamps", "epoch-ms")
    result = project.cli(*other, code=1)
    assert "belongs to another migration" in result.output
    replaced = project.cli(*other, "--restart", code=1)  # the tables are there
    assert "--replace" in replaced.output
    project.cli(*other, "--restart", "--replace")
    assert project.sql("SELECT typeof(created_at) FROM members WHERE id = 1") == [("integer",)]
