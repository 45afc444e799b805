"""The catalog: a SQLite (WAL) index of backups, their copies per destination, and jobs.

It is a cache of what the destinations hold (`rebuild` recreates it from their sidecars alone), plus
the job history and the deletion intents of prune (kept across a rebuild). Every write is one
transaction, so a crash leaves it consistent.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from backupd.core.manifest import Manifest, Sidecar
from backupd.statedb import StateConnection, open_state_db

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS backups (
    backup_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    strategy TEXT NOT NULL,
    parent_id TEXT,
    base_id TEXT,
    created_at TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backups_by_source ON backups (source, created_at);
CREATE TABLE IF NOT EXISTS copies (
    backup_id TEXT NOT NULL REFERENCES backups (backup_id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    artifact_size INTEGER NOT NULL,
    sidecar_size INTEGER NOT NULL,
    artifact_digest TEXT NOT NULL,
    compression_level INTEGER NOT NULL,
    encrypted INTEGER NOT NULL,
    stored_at TEXT NOT NULL,
    verified_at TEXT,
    failed_at TEXT,
    sample_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (backup_id, destination)
);
CREATE TABLE IF NOT EXISTS deletions (
    backup_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    source TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    PRIMARY KEY (backup_id, destination)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT,
    status TEXT NOT NULL,
    pid INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    error TEXT,
    result TEXT
);
"""


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class Copy:
    destination: str
    artifact_key: str
    artifact_size: int
    sidecar_size: int
    artifact_digest: str
    compression_level: int
    encrypted: bool
    verified_at: str | None = None
    failed_at: str | None = None  # its latest validation found it damaged (see core.copy_order)
    sample_offset: int = 0  # where the next sampled validation starts (see core.sampling)

    @property
    def stored_bytes(self) -> int:
        return self.artifact_size + self.sidecar_size

    @classmethod
    def from_sidecar(cls, destination: str, sc: Sidecar, sidecar_size: int) -> "Copy":
        return cls(destination, sc.artifact_key, sc.artifact_size, sidecar_size, sc.artifact_digest,
                   sc.compression_level, sc.encrypted)


@dataclass(frozen=True)
class Deletion:
    """The intent to delete one copy: recorded before its files are touched, ended once they are gone."""

    backup_id: str
    destination: str
    source: str
    artifact_key: str


@dataclass(frozen=True)
class CatalogBackup:
    manifest: Manifest
    copies: tuple[Copy, ...]

    # BackupLike, for core.chain
    @property
    def backup_id(self) -> str:
        return self.manifest.backup_id

    @property
    def strategy(self) -> str:
        return self.manifest.strategy

    @property
    def parent_id(self) -> str | None:
        return self.manifest.parent_id

    @property
    def created_at(self) -> str:
        return self.manifest.created_at

    @property
    def stored_bytes(self) -> int:
        return sum(c.stored_bytes for c in self.copies)

    def to_json(self) -> dict[str, Any]:
        """The object `backupd list --json` prints."""
        m = self.manifest
        return {
            "id": m.backup_id,
            "source": m.source,
            "strategy": m.strategy,
            "parent_id": m.parent_id,
            "base_id": m.base_id,
            "created_at": m.created_at,
            "logical_bytes": m.logical_bytes,
            "stored_bytes": self.stored_bytes,
            "changed_pages": m.changed_pages,
            "page_count": m.page_count,
            "page_size": m.page_size,
            "schema_hash": m.schema_hash,
            "tables": m.tables,
            "strategy_reason": m.strategy_reason,
            "tags": list(m.tags),
            "description": m.description,
            "metadata": m.metadata,
            "destinations": [c.destination for c in self.copies],
            "warnings": list(m.warnings),
        }


class Catalog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = open_state_db(self.path)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        _add_missing_columns(self._db)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    def _tx(self):
        return _Tx(self._db)

    # backups -------------------------------------------------------------------------------
    def record_backup(self, manifest: Manifest, copies: Iterable[Copy]) -> None:
        """Record a backup with these copies; the copies it already has elsewhere stay."""
        with self._tx():
            self._db.execute(  # an upsert: INSERT OR REPLACE would delete the row, and its copies with it
                "INSERT INTO backups VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (backup_id) DO UPDATE SET"
                " source = excluded.source, strategy = excluded.strategy, parent_id = excluded.parent_id,"
                " base_id = excluded.base_id, created_at = excluded.created_at, manifest = excluded.manifest",
                (manifest.backup_id, manifest.source, manifest.strategy, manifest.parent_id, manifest.base_id,
                 manifest.created_at, manifest.to_json().decode()),
            )
            for c in copies:
                self._put_copy(manifest.backup_id, c)

    def _put_copy(self, backup_id: str, c: Copy) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO copies (backup_id, destination, artifact_key, artifact_size, sidecar_size,"
            " artifact_digest, compression_level, encrypted, stored_at, verified_at, failed_at, sample_offset)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (backup_id, c.destination, c.artifact_key, c.artifact_size, c.sidecar_size, c.artifact_digest,
             c.compression_level, int(c.encrypted), utcnow_iso(), c.verified_at, c.failed_at, c.sample_offset),
        )

    def remove_copy(self, backup_id: str, destination: str) -> None:
        """Forget a copy (and its deletion intent); the backup goes too when it was its last copy."""
        with self._tx():
            self._db.execute("DELETE FROM copies WHERE backup_id = ? AND destination = ?", (backup_id, destination))
            self._db.execute("DELETE FROM deletions WHERE backup_id = ? AND destination = ?", (backup_id, destination))
            self._db.execute(
                "DELETE FROM backups WHERE backup_id = ? AND NOT EXISTS (SELECT 1 FROM copies WHERE backup_id = ?)",
                (backup_id, backup_id),
            )

    def forget_destination(self, destination: str) -> list[str]:
        """Drop every copy on `destination` (no longer configured); returns the backups left without a
        copy, which are dropped too. The files stay where they are: `catalog rebuild` finds them again."""
        with self._tx():
            orphaned = [r[0] for r in self._db.execute(
                "SELECT backup_id FROM copies c WHERE destination = ? AND NOT EXISTS"
                " (SELECT 1 FROM copies o WHERE o.backup_id = c.backup_id AND o.destination != ?)",
                (destination, destination))]
            self._db.execute("DELETE FROM copies WHERE destination = ?", (destination,))
            self._db.execute("DELETE FROM deletions WHERE destination = ?", (destination,))
            self._db.executemany("DELETE FROM backups WHERE backup_id = ?", [(b,) for b in orphaned])
        return orphaned

    # deletion intents ----------------------------------------------------------------------
    def mark_deleting(self, intents: Iterable[Deletion]) -> None:
        """Record, in one transaction, that these copies are being deleted: from now on no listing,
        restore or chain offers them, whatever a crash leaves on the destinations. `remove_copy`
        ends an intent once its files are gone."""
        with self._tx():
            self._db.executemany(
                "INSERT OR IGNORE INTO deletions VALUES (?, ?, ?, ?, ?)",
                [(d.backup_id, d.destination, d.source, d.artifact_key, utcnow_iso()) for d in intents],
            )

    def pending_deletions(self, source: str) -> list[Deletion]:
        """The copies of `source` marked for deletion and not yet deleted, newest backup first."""
        rows = self._db.execute(
            "SELECT backup_id, destination, source, artifact_key FROM deletions WHERE source = ?"
            " ORDER BY backup_id DESC, destination", (source,))
        return [Deletion(*r) for r in rows]

    def mark_verified(self, backup_id: str, destination: str) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE copies SET verified_at = ?, failed_at = NULL WHERE backup_id = ? AND destination = ?",
                (utcnow_iso(), backup_id, destination),
            )

    def mark_failed(self, backup_id: str, destination: str) -> None:
        """The copy failed a validation: forget its last good one, and read it after every other copy."""
        with self._tx():
            self._db.execute(
                "UPDATE copies SET verified_at = NULL, failed_at = ? WHERE backup_id = ? AND destination = ?",
                (utcnow_iso(), backup_id, destination),
            )

    def set_sample_offset(self, backup_id: str, destination: str, offset: int) -> None:
        """Where the next sampled validation of this copy starts (core.sampling)."""
        with self._tx():
            self._db.execute("UPDATE copies SET sample_offset = ? WHERE backup_id = ? AND destination = ?",
                             (offset, backup_id, destination))

    def newest_per_source(self) -> dict[str, str]:
        """source -> creation time (ISO, UTC) of its newest backup, without reading the manifests."""
        return dict(self._db.execute(
            "SELECT source, max(created_at) FROM backups b WHERE EXISTS (SELECT 1 FROM copies c WHERE"
            " c.backup_id = b.backup_id AND NOT EXISTS (SELECT 1 FROM deletions d"
            " WHERE d.backup_id = c.backup_id AND d.destination = c.destination)) GROUP BY source").fetchall())

    def backups(self, source: str | None = None) -> list[CatalogBackup]:
        """Backups oldest first, each with its copies; copies being deleted are left out, and so is a backup
        with no other copy."""
        q = "SELECT backup_id, manifest FROM backups"
        args: tuple = ()
        if source is not None:
            q += " WHERE source = ?"
            args = (source,)
        rows = self._db.execute(q + " ORDER BY created_at, backup_id", args).fetchall()
        copies: dict[str, list[Copy]] = {}
        for r in self._db.execute(
            "SELECT backup_id, destination, artifact_key, artifact_size, sidecar_size, artifact_digest,"
            " compression_level, encrypted, verified_at, failed_at, sample_offset FROM copies c WHERE NOT EXISTS"
            " (SELECT 1 FROM deletions d WHERE d.backup_id = c.backup_id AND d.destination = c.destination)"
            " ORDER BY destination"
        ):
            copies.setdefault(r[0], []).append(Copy(r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10]))
        return [CatalogBackup(Manifest.from_dict(json.loads(m)), tuple(copies[b])) for b, m in rows if b in copies]

    def get(self, backup_id: str) -> CatalogBackup | None:
        return next((b for b in self.backups() if b.backup_id == backup_id), None)

    def replace_all(self, entries: Iterable[tuple[Manifest, list[Copy]]]) -> int:
        """Replace every backup and copy (used by rebuild); returns the number of backups."""
        n = 0
        with self._tx():
            self._db.execute("DELETE FROM copies")
            self._db.execute("DELETE FROM backups")
            for manifest, copies in entries:
                self._db.execute(
                    "INSERT OR REPLACE INTO backups VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (manifest.backup_id, manifest.source, manifest.strategy, manifest.parent_id,
                     manifest.base_id, manifest.created_at, manifest.to_json().decode()),
                )
                for c in copies:
                    self._put_copy(manifest.backup_id, c)
                n += 1
        return n

    # jobs ----------------------------------------------------------------------------------
    def job_started(self, kind: str, source: str | None) -> str:
        job_id = datetime.now(timezone.utc).strftime("j%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        with self._tx():
            self._db.execute(
                "INSERT INTO jobs (job_id, kind, source, status, pid, started_at) VALUES (?, ?, ?, 'running', ?, ?)",
                (job_id, kind, source, os.getpid(), utcnow_iso()),
            )
        return job_id

    def job_finished(self, job_id: str, status: str, *, error: str | None = None, result: Any = None) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, result = ? WHERE job_id = ?",
                (status, utcnow_iso(), error, json.dumps(result) if result is not None else None, job_id),
            )

    def fail_interrupted_jobs(self) -> list[str]:
        """Jobs left 'running' by a process that no longer exists become failed; returns their ids."""
        stale = []
        for job_id, pid in self._db.execute("SELECT job_id, pid FROM jobs WHERE status = 'running'").fetchall():
            if pid is None or not pid_alive(pid):
                stale.append(job_id)
        with self._tx():
            for job_id in stale:
                self._db.execute(
                    "UPDATE jobs SET status = 'failed', finished_at = ?, error = ? WHERE job_id = ?",
                    (utcnow_iso(), "interrupted: the process running it died", job_id),
                )
        return stale

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        cols = ("job_id", "kind", "source", "status", "pid", "started_at", "finished_at", "error", "result")
        rows = self._db.execute(f"SELECT {', '.join(cols)} FROM jobs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [dict(zip(cols, r)) for r in rows]


# Columns added to `copies` after catalogs were first written; CREATE TABLE IF NOT EXISTS leaves an
# existing table as it is, so they are added here.
_COPY_COLUMNS_ADDED = {"failed_at": "TEXT", "sample_offset": "INTEGER NOT NULL DEFAULT 0"}


def _add_missing_columns(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(copies)")}
    for name, decl in _COPY_COLUMNS_ADDED.items():
        if name not in have:
            db.execute(f"ALTER TABLE copies ADD COLUMN {name} {decl}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Tx:
    def __init__(self, db: StateConnection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
