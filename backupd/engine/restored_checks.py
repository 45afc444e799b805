"""The checks of a restored database against the manifest it was backed up with, in one place: a
restore runs them before moving the file into place (`check_restored`), the deep validation level on
its temporary restore (engine/deep_checks.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backupd.core.manifest import Manifest
from backupd.core.validation_report import MAX_LISTED
from backupd.engine.snapshot import schema_and_counts
from backupd.errors import RestoreFailed
from backupd.sqlite_uri import connect as sqlite_connect


class RestoredDatabase:
    """A restored database (`conn`) and the manifest of the backup it was restored from."""

    def __init__(self, conn: sqlite3.Connection, manifest: Manifest):
        self.conn = conn
        self.manifest = manifest
        self._shape: tuple[str, dict[str, int]] | None = None

    def integrity_problems(self) -> list[str]:
        """What PRAGMA integrity_check reports (at most 100 rows); [] when it says ok."""
        rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check(100)")]
        return [] if rows == ["ok"] else rows

    def foreign_key_violations(self) -> tuple[list[dict[str, Any]], int]:
        """The first MAX_LISTED violations PRAGMA foreign_key_check finds, and how many there are."""
        found: list[dict[str, Any]] = []
        n = 0
        for table, rowid, parent, fkid in self.conn.execute("PRAGMA foreign_key_check"):
            n += 1
            if len(found) < MAX_LISTED:
                found.append({"table": table, "rowid": rowid, "parent": parent, "fkid": fkid})
        return found, n

    def shape(self) -> tuple[str, dict[str, int]]:
        """Its schema hash and row counts (computed once)."""
        if self._shape is None:
            self._shape = schema_and_counts(self.conn)
        return self._shape

    def wrong_row_counts(self) -> dict[str, dict[str, int | None]]:
        """Every table, of the database or of the manifest, whose row count is not the one recorded."""
        return wrong_row_counts(self.shape()[1], self.manifest.tables)


def wrong_row_counts(counts: dict[str, int], recorded: dict[str, int], tables: Iterable[str] | None = None
                     ) -> dict[str, dict[str, int | None]]:
    """table -> {"rows", "recorded"} for each table whose row count (`counts`) is not the one recorded at
    backup time: of `tables` (those `recorded` knows), or of every table either side knows when None."""
    names = sorted(set(counts) | set(recorded)) if tables is None else [t for t in tables if t in recorded]
    return {t: {"rows": counts.get(t), "recorded": recorded.get(t)} for t in names if counts.get(t) != recorded.get(t)}


def check_restored(path: Path, manifest: Manifest, tables: list[str] | None) -> None:
    """A restore's checks before it installs the file: integrity_check, the schema hash (a whole
    database only) and the row counts of the tables restored; RestoreFailed naming the problems."""
    conn = sqlite_connect(path, mode="rw", isolation_level=None)
    db = RestoredDatabase(conn, manifest)
    try:
        problems = db.integrity_problems()
        schema_hash, counts = db.shape()
    except sqlite3.Error as exc:
        problems, schema_hash, counts = [f"cannot open restored database: {exc}"], "", {}
    finally:
        conn.close()
    if tables is None and schema_hash and schema_hash != manifest.schema_hash:
        problems.append("schema hash differs from the one recorded at backup time")
    wrong = wrong_row_counts(counts, manifest.tables, manifest.tables if tables is None else tables)
    problems += [f"table {name}: {w['rows']} rows, {w['recorded']} recorded at backup time" for name, w in wrong.items()]
    if problems:
        flagged = [w for w in manifest.warnings if w.startswith("source_corrupt")]
        raise RestoreFailed(
            f"restored database failed validation: {'; '.join(problems[:5])}",
            hint=(f"backup {manifest.backup_id} was taken of a source already damaged ({flagged[0]}); restore an"
                  " earlier restore point (`backupd list` shows the flagged ones)" if flagged else
                  "the backup may be corrupt; run `backupd verify --level deep` on it"),
            details={"problems": problems},
        )
