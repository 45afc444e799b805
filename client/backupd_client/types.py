"""Shapes of the objects the daemon returns (docs/PROTOCOL.md, Objects). For type checkers only:
replies are plain dicts, and a newer daemon may add keys."""

from __future__ import annotations

from typing import Any, TypedDict


class JobProgress(TypedDict, total=False):
    phase: str
    done_bytes: int
    total_bytes: int | None
    percent: float | None
    rate: float | None  # bytes per second
    eta_s: float | None


class JobError(TypedDict, total=False):
    code: str
    message: str


class Job(TypedDict, total=False):
    job_id: str
    kind: str  # backup | restore | validate | prune
    source: str | None
    status: str  # a JobStatus value
    priority: str
    schedule: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempt: int
    max_attempts: int
    timeout_s: float | None
    reason: str | None
    progress: JobProgress
    result: dict[str, Any] | None
    error: JobError | None
    args: dict[str, Any]  # what the job was asked to do (docs/PROTOCOL.md lists them by kind)


class Backup(TypedDict, total=False):
    """What `backupd list --json` prints for one restore point."""

    id: str
    source: str
    strategy: str
    parent_id: str | None
    base_id: str | None
    created_at: str
    logical_bytes: int
    stored_bytes: int
    changed_pages: int
    page_count: int
    warnings: list[str]  # "source_corrupt: ...", "source_shrunk: ..."; empty for a good source


class Nearest(TypedDict):
    backup: Backup
    gap_s: float


class Schedule(TypedDict, total=False):
    name: str
    job: str  # backup | prune
    source: str
    cron: str
    strategy: str
    timezone: str
    enabled: bool
    paused: bool
    origin: str  # config | runtime
    next_run: str | None
    description: str
    tags: list[str]
    destinations: list[str]  # empty: every enabled destination
    retry: dict[str, Any]
    conditions: dict[str, Any]
    validate_after_backup: str | None  # the validation level, or None
    max_staleness_s: float | None
    timeout_s: float | None


class ScheduleStats(TypedDict, total=False):
    name: str
    runs: int
    completed: int
    failed: int
    skipped: int
    success_rate: float | None
    reliability: float | None
    mean_duration_s: float | None
    last_run: str | None
    next_run: str | None


class Destination(TypedDict, total=False):
    name: str
    kind: str
    enabled: bool
    priority: int
    encrypted: bool
    compression_level: int
    origin: str  # "config" (the config file) or "runtime" (added through the control socket)
    warning: str  # disable: the schedules that still send backups to it


class DestinationHealth(TypedDict, total=False):
    name: str
    kind: str
    enabled: bool
    status: str  # ok, degraded, unhealthy, unknown (not probed yet) or disabled
    reachable: bool | None
    writable: bool | None
    free_bytes: int | None
    latency_ms: float | None
    problems: list[str]
    used_bytes: int
    last_backup_at: str | None
    last_backup_age_s: float | None
    checked_at: str | None  # when the latest probe answered
    probing: bool  # a probe is in flight


class Status(TypedDict, total=False):
    version: str
    protocol: int
    pid: int
    uptime_s: float
    state: str  # running | stopping
    jobs: dict[str, int]  # queued, waiting, running
    schedules: Any
    config: Any


class Problem(TypedDict, total=False):
    code: str  # an alert code (docs/ERRORS.md): source_stale, schedule_last_run_failed, destination_unhealthy...
    message: str
    source: str  # the one subject it names, if any: source, schedule or destination
    schedule: str
    destination: str


class Health(TypedDict, total=False):
    status: str  # ok | degraded | unhealthy
    problems: list[Problem]
    destinations: list[Any]


class StreamedEvent(TypedDict, total=False):
    """An event of `events.subscribe` (docs/PROTOCOL.md, Objects), with `dropped`: how many events
    the daemon dropped for this subscriber (its queue was full) since the one delivered before it."""

    id: str
    type: str  # backup.started, backup.failed, ... (`subject.state`)
    at: str
    source: str | None
    schedule: str | None
    job_id: str | None
    backup_id: str | None
    destinations: list[str]
    error_code: str | None
    message: str | None
    duration_s: float | None
    bytes: int | None
    log_tail: list[str]
    details: dict[str, Any]
    dropped: int
