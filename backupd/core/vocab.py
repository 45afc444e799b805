"""The one vocabulary: every closed set of words that config, engine, daemon and the wire share.

Each set is a `Word` enum (a `StrEnum`): a member *is* its string, so it compares, hashes, formats,
serializes (JSON, msgpack, SQLite) and even `repr`s like the plain value, and wire, manifests and
messages stay exactly as they were. The tuples beside each enum keep its members in their documented
order (levels and severities are ordered: a later one includes or outranks an earlier one) and are
what `in` checks use: `"full" in STRATEGIES`.

The client (`backupd_client.protocol`) installs alone and keeps its own copy of the wire words;
`tests/test_vocabulary.py` checks that it, the docs, the config schema and both CLIs agree with this.
"""

from __future__ import annotations

from enum import StrEnum


class Word(StrEnum):
    """A member of a closed set of words; it prints and `repr`s as its plain string value."""

    def __repr__(self) -> str:
        return repr(self.value)


class Strategy(Word):
    """How a backup is stored: a new chain, a delta on the previous backup, or on the last full."""

    FULL = "full"
    INCREMENTAL = "incremental"
    DIFFERENTIAL = "differential"


class RequestedStrategy(Word):
    """A strategy as asked for: one of `Strategy`, or `auto` (chosen from the chain and the change)."""

    FULL = "full"
    INCREMENTAL = "incremental"
    DIFFERENTIAL = "differential"
    AUTO = "auto"


class ValidationLevel(Word):
    """How deep a validation reads; cumulative, so a quick check also runs at standard and deep."""

    QUICK = "quick"
    STANDARD = "standard"
    DEEP = "deep"


class Severity(Word):
    """How a failing validation rule counts, least severe first."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class CheckStatus(Word):
    """The outcome of one validation check."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


class Verdict(Word):
    """A validation report's verdict."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class JobKind(Word):
    """What a job of the daemon does."""

    BACKUP = "backup"
    RESTORE = "restore"
    VALIDATE = "validate"
    PRUNE = "prune"
    RESYNC = "resync"


class ScheduleJob(Word):
    """What a schedule runs: a subset of `JobKind`."""

    BACKUP = "backup"
    PRUNE = "prune"


class JobStatus(Word):
    """Where a job is: active (queued, waiting, running) or one of the final outcomes."""

    QUEUED = "queued"  # accepted, not yet examined
    WAITING = "waiting"  # held by a window, load or concurrency limit; re-checked
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_WARNINGS = "completed_with_warnings"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"  # ran longer than its timeout; cancelled (and retried, per its policy)
    SKIPPED = "skipped"  # by policy: the window it was held for closed


class Priority(Word):
    """A job's priority: `high` starts over the load limits (never in a blackout)."""

    NORMAL = "normal"
    HIGH = "high"


class CopySelection(Word):
    """Which copy a restore reads first: by destination priority, or the most recently verified."""

    PRIORITY = "priority"
    MOST_RELIABLE = "most_reliable"


class DestinationKind(Word):
    """Where copies are stored: a local directory, a mounted share, an SFTP or an SMB server."""

    LOCAL = "local"
    SHARE = "share"
    SFTP = "sftp"
    SMB = "smb"


class HealthStatus(Word):
    """A destination's health: from its probe (ok, degraded, unhealthy), or why there is none."""

    OK = "ok"
    DEGRADED = "degraded"  # reachable and writable, with problems (e.g. low space)
    UNHEALTHY = "unhealthy"  # unreachable or not writable
    UNKNOWN = "unknown"  # not probed yet
    DISABLED = "disabled"  # not probed: no backups go to it


class SourceCheck(Word):
    """The check of a source inside its snapshot: PRAGMA quick_check, integrity_check, or none."""

    QUICK = "quick"
    FULL = "full"
    OFF = "off"


class SuccessPolicy(Word):
    """Which fan-out outcome counts as success: every copy, a majority, or at least one."""

    ALL = "all"
    QUORUM = "quorum"
    ANY = "any"


class NotifierKind(Word):
    """How a notifier delivers: a signed webhook, an email, a Healthchecks-style ping, an ntfy topic, a
    local command, a line in the daemon's own log (journald), or apprise (an optional extra)."""

    WEBHOOK = "webhook"
    EMAIL = "email"
    PING = "ping"
    NTFY = "ntfy"
    COMMAND = "command"
    LOG = "log"
    APPRISE = "apprise"


class NotifyOn(Word):
    """Which of its jobs' outcomes a schedule or a manual backup sends to the notifiers it names."""

    FAILURE = "failure"  # failed, partial, timed out
    SUCCESS = "success"  # succeeded, with or without warnings
    COMPLETION = "completion"  # any outcome


STRATEGIES: tuple[Strategy, ...] = tuple(Strategy)
REQUESTED_STRATEGIES: tuple[RequestedStrategy, ...] = tuple(RequestedStrategy)
VALIDATION_LEVELS: tuple[ValidationLevel, ...] = tuple(ValidationLevel)
SEVERITIES: tuple[Severity, ...] = tuple(Severity)
VERDICTS: tuple[Verdict, ...] = tuple(Verdict)
JOB_KINDS: tuple[JobKind, ...] = tuple(JobKind)
SCHEDULE_JOBS: tuple[ScheduleJob, ...] = tuple(ScheduleJob)
JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
PRIORITIES: tuple[Priority, ...] = tuple(Priority)
COPY_SELECTIONS: tuple[CopySelection, ...] = tuple(CopySelection)
DESTINATION_KINDS: tuple[DestinationKind, ...] = tuple(DestinationKind)
HEALTH_STATUSES: tuple[HealthStatus, ...] = tuple(HealthStatus)
SOURCE_CHECKS: tuple[SourceCheck, ...] = tuple(SourceCheck)
SUCCESS_POLICIES: tuple[SuccessPolicy, ...] = tuple(SuccessPolicy)
NOTIFIER_KINDS: tuple[NotifierKind, ...] = tuple(NotifierKind)
NOTIFY_ON: tuple[NotifyOn, ...] = tuple(NotifyOn)

PENDING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.WAITING})  # not started yet
ACTIVE_STATUSES = PENDING_STATUSES | {JobStatus.RUNNING}
FINAL_STATUSES = frozenset(JobStatus) - ACTIVE_STATUSES
SUCCESS_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_WARNINGS})
FAILED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.PARTIAL, JobStatus.TIMED_OUT})  # a CLI waiting on one exits 1
BACKUP_OUTCOMES = SUCCESS_STATUSES | {JobStatus.PARTIAL}  # what a backup that stored a restore point ends as
PROBE_STATUSES = frozenset({HealthStatus.OK, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY})  # a probe's verdicts
BLOCKING_SEVERITIES = frozenset({Severity.ERROR, Severity.CRITICAL})  # a failed check of these fails the verdict
