"""The catalog: the index of backups and their copies per destination, in the state database.

It is a cache of what the destinations hold (`rebuild` recreates it from their sidecars alone), plus
the deletion intents of prune and the history of one-shot jobs (kept across a rebuild). Every write is
one transaction, so a crash leaves it consistent. The tables are the state database's
(`state.migrations`); this module only reads and writes them.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from backupd.core.manifest import Manifest, Sidecar
from backupd.core.vocab import JobStatus
from backupd.state.db import StateDB
from backupd.state.jobs import JobHistory


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
    """The catalog in the state database at `path` (a repository over `state.db.StateDB`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = StateDB(self.path)
        self._jobs = JobHistory(self._db, "process")

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[None]:
        return self._db.transaction()

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

    # jobs of one-shot commands (the daemon's are its store's) ----------------------------------
    def job_started(self, kind: str, source: str | None) -> str:
        """Record a job this process runs; returns its id."""
        job_id = datetime.now(timezone.utc).strftime("j%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        now = utcnow_iso()
        self._jobs.save({"job_id": job_id, "kind": kind, "source": source, "schedule": None, "status": JobStatus.RUNNING,
                         "pid": os.getpid(), "created_at": now, "started_at": now, "finished_at": None,
                         "error": None, "result": None})
        return job_id

    def job_finished(self, job_id: str, status: str, *, error: str | None = None, result: Any = None) -> None:
        with self._tx():
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs.save({**job, "status": status, "finished_at": utcnow_iso(), "error": error,
                                 "result": result})

    def fail_interrupted_jobs(self) -> list[str]:
        """Jobs left 'running' by a process that no longer exists become failed; returns their ids."""
        with self._tx():
            stale = [j for j in self._jobs.unfinished()
                     if j["status"] == JobStatus.RUNNING and (j["pid"] is None or not pid_alive(j["pid"]))]
            for job in stale:
                self._jobs.save({**job, "status": JobStatus.FAILED, "finished_at": utcnow_iso(),
                                 "error": "interrupted: the process running it died"})
        return [j["job_id"] for j in stale]

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The records of one-shot jobs, newest first: job_id, kind, source, status, pid, started_at,
        finished_at, error (the message), result."""
        return self._jobs.recent(limit=limit)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
