"""What the daemon persists in the catalog database: job history, schedules added at run time, paused
flags, and the last fire time of every schedule (for catch-up after a restart)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from backupd.statedb import open_state_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS daemon_jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT,
    schedule TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    job TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS daemon_jobs_by_schedule ON daemon_jobs (schedule, created_at);
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    origin TEXT NOT NULL,          -- 'config' or 'runtime'
    spec TEXT,                     -- the schedule as added at run time (JSON); NULL for config ones
    paused INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS schedule_fires (name TEXT PRIMARY KEY, last_fire TEXT NOT NULL);
"""


class DaemonStore:
    def __init__(self, path: Path):
        self._db = open_state_db(path)
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def save_job(self, job: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO daemon_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job["job_id"], job["kind"], job["source"], job["schedule"], job["status"], job["created_at"],
             job["started_at"], job["finished_at"], json.dumps(job, default=str)),
        )

    def jobs(self, *, limit: int = 100, schedule: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT job FROM daemon_jobs", []
        if schedule is not None:
            q += " WHERE schedule = ?"
            args.append(schedule)
        rows = self._db.execute(q + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT job FROM daemon_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def prune_jobs(self, before: datetime) -> int:
        """Delete the finished jobs that finished (or, never started, were created) before `before`."""
        cur = self._db.execute(
            "DELETE FROM daemon_jobs WHERE status NOT IN ('queued', 'waiting', 'running')"
            " AND COALESCE(finished_at, created_at) < ?", (before.isoformat(),))
        return cur.rowcount

    def fail_unfinished(self, reason: str) -> list[str]:
        """Jobs a previous daemon left queued, waiting or running: they end as failed (running) or cancelled."""
        ids = []
        for (raw,) in self._db.execute(
            "SELECT job FROM daemon_jobs WHERE status IN ('queued', 'waiting', 'running')"
        ).fetchall():
            job = json.loads(raw)
            was_running = job["status"] == "running"
            job["status"] = "failed" if was_running else "cancelled"
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
