"""The one event model: every job and watchdog outcome as an `Event` of one `EventType`.

Notifiers, metrics and the event stream read events; the structlog events stay as they are. Pure:
ids and times are given by the caller (the daemon), never read here. A job's events are derived from
its wire form (`job_events`), a destination's from its health change (`destination_event`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from backupd.core.vocab import HealthStatus, JobKind, JobStatus, Verdict, Word


class EventType(Word):
    """Every event's `type.state`."""

    BACKUP_STARTED = "backup.started"
    BACKUP_SUCCEEDED = "backup.succeeded"
    BACKUP_SUCCEEDED_WITH_WARNINGS = "backup.succeeded_with_warnings"
    BACKUP_PARTIAL = "backup.partial"
    BACKUP_FAILED = "backup.failed"
    BACKUP_SKIPPED = "backup.skipped"
    VALIDATION_PASSED = "validation.passed"
    VALIDATION_WARNED = "validation.warned"
    VALIDATION_FAILED = "validation.failed"
    RESTORE_SUCCEEDED = "restore.succeeded"
    RESTORE_FAILED = "restore.failed"
    PRUNE_FAILED = "prune.failed"
    DESTINATION_DEGRADED = "destination.degraded"
    DESTINATION_UNHEALTHY = "destination.unhealthy"
    DESTINATION_RECOVERED = "destination.recovered"
    FRESHNESS_VIOLATED = "freshness.violated"
    FRESHNESS_RESTORED = "freshness.restored"
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    NOTIFIER_TEST = "notifier.test"  # `backupctl notify test NAME`
    NOTIFIER_DISABLED = "notifier.disabled"  # a receiver answered HTTP 410 Gone

    @property
    def subject(self) -> str:
        """What the event is about: `backup` of `backup.failed`."""
        return self.value.partition(".")[0]

    @property
    def state(self) -> str:
        """What happened to it: `failed` of `backup.failed`."""
        return self.value.partition(".")[2]


EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
# Events that report something wrong (notifiers' default, the stream's `*.failed` and friends).
PROBLEM_TYPES = frozenset({EventType.BACKUP_PARTIAL, EventType.BACKUP_FAILED, EventType.VALIDATION_FAILED,
                           EventType.RESTORE_FAILED, EventType.PRUNE_FAILED, EventType.DESTINATION_UNHEALTHY,
                           EventType.FRESHNESS_VIOLATED, EventType.ALERT_RAISED, EventType.NOTIFIER_DISABLED})
# What a notifier without `events` is sent: failures, partials, freshness and alerts (and their ends).
DEFAULT_NOTIFY_PATTERNS: tuple[str, ...] = (
    "backup.failed", "backup.partial", "validation.failed", "restore.failed", "prune.failed",
    "destination.unhealthy", "destination.recovered", "freshness.*", "alert.*", "notifier.disabled")
# A ping notifier's default: every backup outcome and start (its check goes up and down with them).
DEFAULT_PING_PATTERNS: tuple[str, ...] = ("backup.started", "backup.succeeded", "backup.succeeded_with_warnings",
                                          "backup.partial", "backup.failed", "freshness.*")
LOG_TAIL_LINES = 20

_BACKUP_OUTCOME = {
    JobStatus.COMPLETED: EventType.BACKUP_SUCCEEDED,
    JobStatus.COMPLETED_WITH_WARNINGS: EventType.BACKUP_SUCCEEDED_WITH_WARNINGS,
    JobStatus.PARTIAL: EventType.BACKUP_PARTIAL,
    JobStatus.FAILED: EventType.BACKUP_FAILED,
    JobStatus.TIMED_OUT: EventType.BACKUP_FAILED,
    JobStatus.SKIPPED: EventType.BACKUP_SKIPPED,
}
_VERDICT = {Verdict.PASS: EventType.VALIDATION_PASSED, Verdict.WARN: EventType.VALIDATION_WARNED,
            Verdict.FAIL: EventType.VALIDATION_FAILED}
_FAILING = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.PARTIAL})


@dataclass(frozen=True)
class Event:
    """One event. `id` is stable and unique (receivers deduplicate on it); `at` is ISO 8601 UTC."""

    id: str
    type: EventType
    at: str
    source: str | None = None
    schedule: str | None = None
    job_id: str | None = None
    backup_id: str | None = None
    destinations: tuple[str, ...] = ()
    error_code: str | None = None
    message: str | None = None
    duration_s: float | None = None
    bytes: int | None = None
    log_tail: tuple[str, ...] = ()  # failures only
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """Plain data (JSON and msgpack), every field present."""
        return {"id": self.id, "type": str(self.type), "at": self.at, "source": self.source,
                "schedule": self.schedule, "job_id": self.job_id, "backup_id": self.backup_id,
                "destinations": list(self.destinations), "error_code": self.error_code, "message": self.message,
                "duration_s": self.duration_s, "bytes": self.bytes, "log_tail": list(self.log_tail),
                "details": dict(self.details)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Event:
        """The inverse of `to_wire`; raises ValueError for an unknown type, KeyError without id/type/at."""
        return cls(id=wire["id"], type=EventType(wire["type"]), at=wire["at"], source=wire.get("source"),
                   schedule=wire.get("schedule"), job_id=wire.get("job_id"), backup_id=wire.get("backup_id"),
                   destinations=tuple(wire.get("destinations") or ()), error_code=wire.get("error_code"),
                   message=wire.get("message"), duration_s=wire.get("duration_s"), bytes=wire.get("bytes"),
                   log_tail=tuple(wire.get("log_tail") or ()), details=dict(wire.get("details") or {}))


def matches(pattern: str, event_type: str) -> bool:
    """Whether `event_type` matches a filter: exact (`backup.failed`), `backup.*`, `*.failed` or `*`."""
    return fnmatchcase(event_type, pattern)


def check_pattern(pattern: str) -> str:
    """`pattern` if it can match some event type, else ValueError naming the types there are."""
    if not any(matches(pattern, t) for t in EVENT_TYPES):
        raise ValueError(f"event pattern {pattern!r} matches no event type (e.g. backup.failed, backup.*, *.failed)")
    return pattern


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants: any of `types` (patterns; none: all) and, if given, one source."""

    types: tuple[str, ...] = ()
    source: str | None = None

    def __call__(self, event: Event) -> bool:
        return ((not self.types or any(matches(p, event.type) for p in self.types))
                and (self.source is None or event.source == self.source))


def event_id(job_id: str, attempt: int, event_type: EventType) -> str:
    """The stable id of a job's event: the same job, attempt and type always give the same id."""
    return f"{job_id}.{attempt}.{event_type}"


def _duration(job: Mapping[str, Any]) -> float | None:
    started, finished = job.get("started_at"), job.get("finished_at")
    if not started or not finished:
        return None
    return round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 3)


def log_tail(job: Mapping[str, Any]) -> tuple[str, ...]:
    """A failed job's short tail: its last progress, the worker's last log lines, why it waited, its error."""
    lines: list[str] = []
    progress = job.get("progress") or {}
    if progress:
        lines.append("last progress: " + ", ".join(f"{k}={v}" for k, v in progress.items() if v is not None))
    lines.extend(str(line) for line in job.get("log_tail") or ())
    if job.get("reason"):
        lines.append(f"reason: {job['reason']}")
    error = job.get("error") or {}
    if error:
        lines.append(f"error {error.get('code')}: {error.get('message')}")
    return tuple(lines[-LOG_TAIL_LINES:])


def _base(job: Mapping[str, Any], event_type: EventType, at: str, **fields: Any) -> Event:
    return Event(id=event_id(job["job_id"], int(job.get("attempt") or 1), event_type), type=event_type, at=at,
                 source=job.get("source"), schedule=job.get("schedule"), job_id=job["job_id"],
                 details={"kind": str(job.get("kind")), "status": str(job.get("status")),
                          "attempt": job.get("attempt")}, **fields)


def started_event(job: Mapping[str, Any], at: str) -> Event | None:
    """`backup.started` for a backup job that starts running (each attempt), else None."""
    if job.get("kind") != JobKind.BACKUP or job.get("status") != JobStatus.RUNNING:
        return None
    args = job.get("args") or {}
    return _base(job, EventType.BACKUP_STARTED, at, destinations=tuple(args.get("destinations") or ()))


def job_events(job: Mapping[str, Any], at: str) -> list[Event]:
    """The outcome events of a finished job (its wire form), in the order they happened."""
    kind, status = job.get("kind"), job.get("status")
    raw = job.get("result")
    result: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    error = job.get("error") or {}
    failing = status in _FAILING
    common = dict(error_code=error.get("code") if failing else None,
                  message=error.get("message") if error else job.get("reason"),
                  duration_s=_duration(job), log_tail=log_tail(job) if failing else ())
    if kind == JobKind.BACKUP:
        return _backup_events(job, at, result, common)
    if kind == JobKind.VALIDATE:
        verdict = result.get("verdict") if result else (Verdict.FAIL if failing else None)
        if verdict not in _VERDICT:
            return []
        args = job.get("args") or {}
        return [_base(job, _VERDICT[verdict], at, backup_id=args.get("backup_id"), **common)]
    if kind == JobKind.RESTORE and status in (JobStatus.COMPLETED, *_FAILING):
        args = job.get("args") or {}
        restored = EventType.RESTORE_SUCCEEDED if status == JobStatus.COMPLETED else EventType.RESTORE_FAILED
        return [_base(job, restored, at, backup_id=result.get("backup_id") or args.get("backup_id"),
                      bytes=result.get("bytes_written"), **common)]
    if kind == JobKind.PRUNE and failing:
        return [_base(job, EventType.PRUNE_FAILED, at, **common)]
    return []


def _backup_events(job: Mapping[str, Any], at: str, result: Mapping[str, Any],
                   common: dict[str, Any]) -> list[Event]:
    outcome = _BACKUP_OUTCOME.get(JobStatus(job["status"]))
    if outcome is None:  # cancelled
        return []
    facts = dict(backup_id=result.get("id"), destinations=tuple(result.get("destinations") or ()),
                 bytes=result.get("stored_bytes"), **common)
    events = []
    report = result.get("validation")
    if isinstance(report, Mapping) and report.get("verdict") in _VERDICT:
        events.append(_base(job, _VERDICT[report["verdict"]], at, **facts))
    events.append(_base(job, outcome, at, **facts))
    return events


_HEALTH_EVENT = {HealthStatus.DEGRADED: EventType.DESTINATION_DEGRADED,
                 HealthStatus.UNHEALTHY: EventType.DESTINATION_UNHEALTHY}
_WELL = frozenset({HealthStatus.OK, HealthStatus.UNKNOWN})


def destination_event(name: str, before: str, after: str, *, id: str, at: str,
                      problems: Iterable[str] = ()) -> Event | None:
    """The event of a destination's health change from `before` to `after`, or None (no change, or a
    first probe that found it ok)."""
    if before == after:
        return None
    if after == HealthStatus.OK:
        if before in _WELL:
            return None
        kind = EventType.DESTINATION_RECOVERED
    elif after in _HEALTH_EVENT:
        kind = _HEALTH_EVENT[HealthStatus(after)]
    else:
        return None
    return Event(id=id, type=kind, at=at, destinations=(name,), message="; ".join(problems) or None,
                 details={"destination": name, "was": str(before), "status": str(after)})
