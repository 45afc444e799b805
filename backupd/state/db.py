"""`StateDB`: the one opener of the state database, and the versioned migration of its schema.

The schema version is `PRAGMA user_version`: the number of steps of `migrations.MIGRATIONS` the file has
been through. Opening a file behind runs the missing steps in one `BEGIN IMMEDIATE` transaction, the
version read again once the write lock is held: two processes opening an old file at once migrate it
once (the other waits, then finds it current), and a step that fails leaves the file as it was. A file
ahead of this code (a newer backupd wrote it) is refused with `StateTooNew` before anything is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from backupd.errors import StateTooNew
from backupd.sqlite_uri import connect as sqlite_connect
from backupd.state.connection import Rows, StateConnection
from backupd.state.migrations import MIGRATIONS, Step

STATE_DB = "catalog.db"
DAEMON_LOCK = "daemon.lock"  # held by `backupd run` for as long as it runs (see daemon.main)


def state_db_path(state_dir: str | Path) -> Path:
    """Where the state database of `state_dir` is: the one place that names the file."""
    return Path(state_dir) / STATE_DB


log = structlog.get_logger("backupd.state")


def too_new(path: Path, version: int, known: int) -> StateTooNew:
    """The refusal of a state database whose schema version is past `known`."""
    return StateTooNew(
        f"the state database {path} has schema version {version}; this backupd knows versions up to {known}"
        " (a newer backupd wrote it)",
        hint="run the backupd release that wrote it (or a newer one); to start over with this one, move"
             " the file aside and run `backupd catalog rebuild -c CONFIG`, which recreates the catalog from"
             " the destinations (run-time destinations, schedules and job history are not kept)",
        details={"path": str(path), "version": version, "known": known})


class StateDB:
    """An open handle on the state database, its schema current; usable from any thread, one at a time.

    Opening creates the file if it is missing (`created`). `upgraded` is (from, to) when this open
    migrated a file an older backupd wrote."""

    def __init__(self, path: Path, *, steps: Sequence[Step] = MIGRATIONS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_connect(self.path, mode="rwc", timeout=30, isolation_level=None, check_same_thread=False,
                            factory=StateConnection)
        assert isinstance(db, StateConnection)
        db.path = self.path
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=FULL")
            self.created, self.upgraded = _migrate(db, steps)
        except BaseException:
            db.close()
            raise
        if self.created:
            log.info("state_db_created", path=str(self.path), version=len(steps))
        elif self.upgraded:
            log.info("state_db_upgraded", path=str(self.path), from_version=self.upgraded[0],
                     to_version=self.upgraded[1])

    def execute(self, sql: str, parameters: Any = ()) -> Rows:
        return self._db.execute(sql, parameters)

    def executemany(self, sql: str, seq: Any) -> Rows:
        return self._db.executemany(sql, seq)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (taken at once, BEGIN IMMEDIATE): committed, or rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def schema_version(db: sqlite3.Connection) -> int:
    """The schema version of the state database on `db` (0: never migrated, as every release before them)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _migrate(db: StateConnection, steps: Sequence[Step]) -> tuple[bool, tuple[int, int] | None]:
    """Apply the missing steps in one transaction: (whether the file was new, (from, to) if an older one
    was migrated)."""
    known = len(steps)
    if schema_version(db) == known:
        return False, None
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)  # again, under the write lock: another process may have done it
        fresh = version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if version > known:
            raise too_new(db.path, version, known)
        for step in steps[version:]:
            step(db)
        db.execute(f"PRAGMA user_version = {known}")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    if fresh:
        return True, None
    return False, ((version, known) if version < known else None)
