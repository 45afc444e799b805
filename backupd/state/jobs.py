"""`JobHistory`: the one job table of the state database, as one runner of jobs sees it.

Every job run is a row: the daemon's jobs (runner `daemon`, the record its supervisor writes) and the
runs of one-shot `backupd` commands (runner `process`, with the pid running it). Each runner reads and
writes only its own rows, so that each recovers only its own jobs after a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from backupd.core.vocab import ACTIVE_STATUSES, JOB_STATUSES
from backupd.state.db import StateDB

Runner = Literal["daemon", "process"]
UNFINISHED = tuple(s for s in JOB_STATUSES if s in ACTIVE_STATUSES)  # in a fixed order, for the SQL


class JobHistory:
    """The job records of one runner in the state database, newest first."""

    def __init__(self, state: StateDB, runner: Runner):
        self._state = state
        self._runner = runner

    def save(self, record: Mapping[str, Any]) -> None:
        """Write a job's whole record (a dict with at least job_id, kind, source, status, created_at)."""
        self._state.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record["job_id"], self._runner, record["kind"], record["source"], record.get("schedule"),
             record["status"], record.get("pid"), record["created_at"], record.get("started_at"),
             record.get("finished_at"), json.dumps(record, default=str)),
        )

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The record of job `job_id` of this runner, or None."""
        row = self._state.execute("SELECT job FROM jobs WHERE job_id = ? AND runner = ?",
                                  (job_id, self._runner)).fetchone()
        return json.loads(row[0]) if row else None

    def recent(self, *, limit: int = 100, schedule: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` records (of `schedule`'s runs only, if given)."""
        q = "SELECT job FROM jobs WHERE runner = ?"
        args: list[str] = [self._runner]
        if schedule is not None:
            q += " AND schedule = ?"
            args.append(schedule)
        rows = self._state.execute(q + " ORDER BY created_at DESC LIMIT ?", (*args, limit))
        return [json.loads(r[0]) for r in rows]

    def unfinished(self) -> list[dict[str, Any]]:
        """The records still queued, waiting or running."""
        rows = self._state.execute(
            f"SELECT job FROM jobs WHERE runner = ? AND status IN ({', '.join('?' * len(UNFINISHED))})",
            (self._runner, *UNFINISHED))
        return [json.loads(r[0]) for r in rows]

    def prune(self, before: str) -> int:
        """Delete the finished records that finished (or, never started, were created) before `before` (ISO)."""
        return self._state.execute(
            f"DELETE FROM jobs WHERE runner = ? AND status NOT IN ({', '.join('?' * len(UNFINISHED))})"
            " AND COALESCE(finished_at, created_at) < ?", (self._runner, *UNFINISHED, before)).rowcount
