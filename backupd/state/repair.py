"""`repair`: a damaged state database moved aside for `backupd catalog rebuild`, what it held kept.

A damaged file is moved aside with its WAL, and whatever rows of its tables can still be read (run-time
destinations, schedules, job history) are copied into a new file, with its indexes and schema version,
before the catalog is recreated from the destinations.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from backupd.errors import StateCorrupt
from backupd.sqlite_uri import connect as sqlite_connect
from backupd.state.connection import is_damage
from backupd.state.db import DAEMON_LOCK, STATE_DB, schema_version

log = structlog.get_logger("backupd.state")


@dataclass(frozen=True)
class Repair:
    """What `repair` did to a damaged state database."""

    path: Path
    problem: str
    moved_to: Path
    kept: dict[str, int]  # table -> rows copied into the new file
    lost: dict[str, str]  # table -> why (some or all) of its rows could not be read

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "problem": self.problem, "moved_to": str(self.moved_to),
                "kept": self.kept, "lost": self.lost}

    def describe(self) -> str:
        parts = [f"state database {self.path} was damaged ({self.problem}): moved aside to {self.moved_to}"]
        if self.kept:
            parts.append("kept " + ", ".join(f"{t} ({n} rows)" for t, n in self.kept.items()))
        if self.lost:
            parts.append("could not read " + "; ".join(f"{t}: {why}" for t, why in self.lost.items()))
        return "; ".join(parts)


def damage(path: Path) -> str | None:
    """Why the state database at `path` is damaged (quick_check, or the error opening it); None if sound."""
    try:
        db = sqlite_connect(path, timeout=30)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    try:
        found = [r[0] for r in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    finally:
        db.close()
    return None if found == ["ok"] else "; ".join(found[:3])


def repair(state_dir: Path, now: datetime) -> Repair | None:
    """Move a damaged state database aside and start a new one with what can still be read of it.

    Returns None when the file is missing or sound. Refuses (StateCorrupt) while the daemon runs, since it
    holds the file open."""
    path = Path(state_dir) / STATE_DB
    if not path.exists():
        return None
    problem = damage(path)
    if problem is None:
        return None
    _refuse_while_the_daemon_runs(path, problem)
    moved_to = path.with_name(f"{path.name}.damaged-{now.strftime('%Y%m%dT%H%M%SZ')}")
    for suffix in ("-wal", "-shm", ""):  # the WAL may hold committed rows: it goes along
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{moved_to}{suffix}")
    kept, lost = _salvage(moved_to, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    result = Repair(path, problem, moved_to, kept, lost)
    log.warning("state_db_moved_aside", path=str(path), problem=problem, moved_to=str(moved_to), kept=kept, lost=lost)
    return result


def _refuse_while_the_daemon_runs(path: Path, problem: str) -> None:
    lock = path.with_name(DAEMON_LOCK)
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise StateCorrupt(f"the state database {path} is damaged ({problem}) and the daemon (pid {holder}) has it open",
                           hint="stop the daemon (`systemctl stop backupd`), then run `backupd catalog rebuild` again",
                           details={"path": str(path)}) from None
    finally:
        os.close(fd)


def _salvage(damaged: Path, fresh: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Copy every row that can still be read from `damaged` into a new database at `fresh`."""
    kept: dict[str, int] = {}
    lost: dict[str, str] = {}
    old = sqlite_connect(damaged)
    new = sqlite_connect(fresh, mode="rwc", isolation_level=None)
    try:
        new.execute("PRAGMA journal_mode=WAL")
        try:
            tables = old.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()
        except sqlite3.DatabaseError as exc:
            return kept, {"the file": str(exc)}
        new.execute("BEGIN")
        for name, sql in tables:
            new.execute(sql)
            kept[name] = 0
            try:
                for row in old.execute(f'SELECT * FROM "{name}"'):
                    new.execute(f'INSERT OR IGNORE INTO "{name}" VALUES ({", ".join("?" * len(row))})', row)
                    kept[name] += 1
            except sqlite3.DatabaseError as exc:
                lost[name] = f"rows after the first {kept[name]} ({exc})"
        for (sql,) in old.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"):
            new.execute(sql)
        new.execute(f"PRAGMA user_version = {schema_version(old)}")  # the tables are in that version's shape
        new.execute("COMMIT")
    finally:
        old.close()
        new.close()
    return kept, lost
