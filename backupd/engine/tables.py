"""Selective restore: copy chosen tables (with their indexes and AUTOINCREMENT counters) into a new database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from backupd.errors import RestoreFailed, UsageError
from backupd.sqlite_uri import connect as sqlite_connect, sqlite_uri


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_tables(src: Path, dst: Path, tables: list[str]) -> None:
    """Create `dst` holding only `tables` of `src`, with their rows and indexes."""
    conn = sqlite_connect(dst, mode="rwc", isolation_level=None)
    try:
        probe = sqlite_connect(src, mode="ro")
        try:
            page_size = probe.execute("PRAGMA page_size").fetchone()[0]
        finally:
            probe.close()
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("ATTACH DATABASE ? AS s", (sqlite_uri(src, mode="ro"),))
        conn.execute("BEGIN")
        for table in tables:
            row = conn.execute("SELECT sql FROM s.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
            if row is None:
                raise UsageError(f"table {table!r} does not exist in the backup")
            if row[0].upper().startswith("CREATE VIRTUAL"):
                raise UsageError(f"table {table!r} is a virtual table; restore the whole database instead")
            conn.execute(row[0])
            cols = [r[1] for r in conn.execute(f"PRAGMA s.table_xinfo({_q(table)})") if r[6] in (0, 1)]
            col_list = ", ".join(_q(c) for c in cols)
            conn.execute(f"INSERT INTO main.{_q(table)} ({col_list}) SELECT {col_list} FROM s.{_q(table)}")
            for (sql,) in conn.execute(
                "SELECT sql FROM s.sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
            ).fetchall():
                conn.execute(sql)
            has_seq = conn.execute("SELECT 1 FROM s.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
            main_seq = conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
            if has_seq and main_seq:
                # Copying the rows already made SQLite record max(rowid) for this table; the source's counter
                # (higher when its newest rows were deleted) replaces that row rather than joining it.
                conn.execute("DELETE FROM main.sqlite_sequence WHERE name = ?", (table,))
                conn.execute("INSERT INTO main.sqlite_sequence SELECT * FROM s.sqlite_sequence WHERE name = ?", (table,))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise RestoreFailed(f"copying tables {', '.join(tables)} failed: {exc}") from None
    finally:
        conn.close()
