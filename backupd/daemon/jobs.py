"""Jobs: what the daemon runs, their statuses and the transitions allowed between them.

The supervisor is the only writer of job state; everything else reads snapshots (`to_wire`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backupd.core.backoff import RetryPolicy
from backupd.core.gate import Conditions
from backupd.core.routing import NotifyRequest
from backupd.core.vocab import FINAL_STATUSES, PENDING_STATUSES, JobKind, JobStatus, Priority
from backupd.daemon.jobspec import JobSpec

PENDING = PENDING_STATUSES
FINAL = FINAL_STATUSES  # the outcomes, timed_out among them
_STARTS = frozenset({JobStatus.WAITING, JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.SKIPPED})
ALLOWED: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: _STARTS,
    JobStatus.WAITING: _STARTS,
    JobStatus.RUNNING: FINAL | {JobStatus.WAITING},  # waiting again: a retry after a failed attempt
}


class TransitionError(RuntimeError):
    pass


@dataclass
class Job:
    job_id: str
    spec: JobSpec  # what to do; the rest is how and when
    created_at: datetime
    priority: Priority = Priority.NORMAL
    schedule: str | None = None
    conditions: Conditions | None = None
    retry: RetryPolicy | None = None
    max_staleness_s: float | None = None
    timeout_s: float | None = None  # each attempt is cancelled once it has run this long
    notify: NotifyRequest | None = None  # notifiers its outcome also goes to (a schedule's or the request's)
    status: str = "queued"
    attempt: int = 1
    reason: str | None = None
    not_before: datetime | None = None
    held_since: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: dict[str, Any] | None = None
    log_tail: list[str] = field(default_factory=list)  # the worker's last log lines, of a failed attempt

    @property
    def kind(self) -> JobKind:
        """What the job does: its spec's kind."""
        return self.spec.kind

    @property
    def source(self) -> str:
        """The source the job works on."""
        return self.spec.source

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts if self.retry else 1

    def move(self, status: str, reason: str | None = None) -> None:
        if status not in ALLOWED.get(self.status, frozenset()):
            raise TransitionError(f"job {self.job_id}: {self.status} -> {status} is not allowed")
        self.status = status
        self.reason = reason

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_wire(self) -> dict[str, Any]:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {
            "job_id": self.job_id, "kind": self.kind, "source": self.source, "status": self.status,
            "priority": self.priority, "schedule": self.schedule, "created_at": iso(self.created_at),
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "attempt": self.attempt,
            "max_attempts": self.max_attempts, "timeout_s": self.timeout_s, "reason": self.reason,
            "progress": self.progress, "result": self.result, "error": self.error, "args": self.spec.to_wire(),
            "log_tail": self.log_tail, "notify": self.notify.to_wire() if self.notify else None,
        }
