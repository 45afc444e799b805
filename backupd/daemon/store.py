"""What the daemon persists in the state database: its job history (its rows of the one job table),
schedules added at run time, paused flags, and the last fire time of every schedule (for catch-up after
a restart). The tables are the state database's (`state.migrations`); this module only reads and writes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from backupd.core.vocab import JobStatus
from backupd.state.db import StateDB
from backupd.state.jobs import JobHistory


class DaemonStore:
    """The daemon's rows of the state database at `path` (a repository over `state.db.StateDB`)."""

    def __init__(self, path: Path):
        self._db = StateDB(path)
        self._jobs = JobHistory(self._db, "daemon")

    def close(self) -> None:
        self._db.close()

    def save_job(self, job: dict[str, Any]) -> None:
        self._jobs.save(job)

    def jobs(self, *, limit: int = 100, schedule: str | None = None) -> list[dict[str, Any]]:
        return self._jobs.recent(limit=limit, schedule=schedule)

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)

    def prune_jobs(self, before: datetime) -> int:
        """Delete the finished jobs that finished (or, never started, were created) before `before`."""
        return self._jobs.prune(before.isoformat())

    def fail_unfinished(self, reason: str, now: datetime) -> list[str]:
        """Jobs a previous daemon left queued, waiting or running: they end, `now`, as failed (running) or
        cancelled (so a running one's failure is notified, as the outbox's recovery finds it)."""
        ids = []
        for job in self._jobs.unfinished():
            was_running = job["status"] == JobStatus.RUNNING
            job["status"] = JobStatus.FAILED if was_running else JobStatus.CANCELLED
            job["finished_at"] = job.get("finished_at") or now.isoformat()
            job["error"] = {"code": "interrupted" if was_running else "cancelled", "message": reason}
            job["reason"] = reason
            self.save_job(job)
            ids.append(job["job_id"])
        return ids

    # schedules -------------------------------------------------------------------------------
    def runtime_schedules(self) -> list[tuple[str, dict[str, Any], bool]]:
        rows = self._db.execute("SELECT name, spec, paused FROM schedules WHERE origin = 'runtime'").fetchall()
        return [(n, json.loads(s), bool(p)) for n, s, p in rows]

    def put_runtime_schedule(self, name: str, spec: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO schedules VALUES (?, 'runtime', ?, 0)", (name, json.dumps(spec)))

    def remove_schedule(self, name: str) -> None:
        self._db.execute("DELETE FROM schedules WHERE name = ?", (name,))
        self._db.execute("DELETE FROM schedule_fires WHERE name = ?", (name,))

    def paused(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM schedules WHERE paused = 1")}

    def set_paused(self, name: str, paused: bool, origin: str) -> None:
        self._db.execute(
            "INSERT INTO schedules (name, origin, spec, paused) VALUES (?, ?, NULL, ?)"
            " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
            (name, origin, int(paused)),
        )

    def last_fire(self, name: str) -> datetime | None:
        row = self._db.execute("SELECT last_fire FROM schedule_fires WHERE name = ?", (name,)).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def record_fire(self, name: str, at: datetime) -> None:
        self._db.execute("INSERT OR REPLACE INTO schedule_fires VALUES (?, ?)", (name, at.isoformat()))
