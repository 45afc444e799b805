"""A connection to the state database on which a damaged file raises StateCorrupt, never DatabaseError."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

from backupd.errors import StateCorrupt

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite reports a damaged file (not a lock, a full disk or a bad statement)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def corrupt_error(path: Path, exc: sqlite3.Error) -> StateCorrupt:
    """The StateCorrupt for damage `exc` met in the state database at `path`, naming the fix."""
    return StateCorrupt(
        f"the state database {path} is damaged ({exc})",
        hint="run `backupd catalog rebuild -c CONFIG` (with the daemon stopped): it moves the damaged file aside,"
             " keeps what can still be read and recreates the catalog from the destinations",
        details={"path": str(path)},
    )


class Rows:
    """The rows of one statement, read at once, so that damage met on any row raises at `execute`."""

    def __init__(self, cursor: sqlite3.Cursor):
        self._rows = cursor.fetchall()
        self.rowcount = cursor.rowcount  # rows a DELETE, INSERT or UPDATE changed
        self.lastrowid = cursor.lastrowid

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def fetchall(self) -> list[Any]:
        """Every row."""
        return self._rows

    def fetchone(self) -> Any:
        """The first row, or None when there is none."""
        return self._rows[0] if self._rows else None


class StateConnection(sqlite3.Connection):
    """A connection to the state database; a damaged file raises StateCorrupt instead of DatabaseError."""

    path: Path

    def _guarded(self, run: Callable[[], Rows]) -> Rows:
        try:
            return run()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise corrupt_error(self.path, exc) from None
            raise

    def execute(self, sql: str, parameters: Any = ()) -> Rows:  # type: ignore[override]
        return self._guarded(lambda: Rows(super(StateConnection, self).execute(sql, parameters)))

    def executemany(self, sql: str, seq: Any) -> Rows:  # type: ignore[override]
        return self._guarded(lambda: Rows(super(StateConnection, self).executemany(sql, seq)))
