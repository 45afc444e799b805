"""The config schema: frozen pydantic models for every section of backupd.toml.

Models check shape only (types, ranges, known keys). Checks across sections and against the
file system or environment live in `load.py`. The field types and the section base are in
`fields.py`; [[destinations]] is in `destination.py`, [[schedules]] (and the retry and conditions
tables [daemon] reuses) in `schedule.py`. Durations become float seconds, in attributes ending `_s`
whose TOML key has no suffix (`shutdown_timeout`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from backupd.config.destination import DestinationConfig
from backupd.config.fields import (GROUP_PATTERN, ConfigPath, Duration, Name, PositiveDuration, Principal, Section,
                                   Size, one_of)
from backupd.config.monitoring import MonitoringConfig
from backupd.config.notifiers import NotifierConfig
from backupd.config.schedule import ConditionsTable, RetryTable, ScheduleConfig
from backupd.core.access import GROUP_PREFIX
from backupd.core.vocab import CopySelection, Severity, SourceCheck, SuccessPolicy, ValidationLevel
from backupd.errors import NotFound, UnknownDestination, UnknownSource, UsageError

RESTORE_AREA = "restores"  # in the state dir: where a restore through the daemon may always write


class StateConfig(Section):
    dir: ConfigPath = Field(description="Directory for the catalog, schedules and other daemon state.")


class SourceConfig(Section):
    name: Name = Field(description="Unique source name, used in commands and backup ids.")
    kind: Literal["sqlite"] = Field(description="Source type; only 'sqlite' for now.")
    path: ConfigPath = Field(description="Path of the SQLite database file to back up.")
    source_check: Annotated[SourceCheck, one_of(SourceCheck)] = Field(
        SourceCheck.FULL,
        description="Check of the source inside the snapshot: 'quick' (PRAGMA quick_check: b-tree structure),"
        " 'full' (PRAGMA integrity_check: also every index against its rows) or 'off'.",
    )
    max_age_s: PositiveDuration | None = Field(
        None,
        alias="max_age",
        description="The source is stale (health unhealthy, freshness.violated) when its newest restorable backup"
        " on at least `min_copies` destinations is older than this; unset: never stale.",
    )
    min_copies: int = Field(
        1, ge=1, description="Destinations a backup must have a good copy on to count for `max_age`."
    )


class StrategyPolicy(Section):
    max_chain_length: int = Field(
        30, ge=1, description="`auto` takes a full backup once a chain has this many backups."
    )
    full_change_ratio: float = Field(
        0.5, gt=0, le=1, description="`auto` takes a full backup when more than this fraction of pages changed."
    )
    differential_cost_ratio: float = Field(
        1.5,
        ge=1.0,
        description="`auto` picks differential while it is at most this many times an incremental's size.",
    )


class ValidationRule(Section):
    id: str = Field(min_length=1, description="Unique rule id, shown in validation reports.")
    sql: str = Field(min_length=1, description="Query whose first column must be true on the restored database.")
    severity: Annotated[Severity, one_of(Severity)] = Field(
        Severity.ERROR, description="How a failing rule counts in the verdict."
    )
    description: str = Field("", description="What the rule asserts, shown in reports.")
    sources: list[str] = Field(default_factory=list, description="Sources the rule applies to; empty means all.")


class ValidationConfig(Section):
    default_level: Annotated[ValidationLevel, one_of(ValidationLevel)] = Field(
        ValidationLevel.STANDARD, description="Validation level used when a command does not name one."
    )
    rules: list[ValidationRule] = Field(default_factory=list, description="Custom SQL assertions.")


class ControlConfig(Section):
    socket: ConfigPath = Field(
        Path("/run/backupd/control.sock"),
        description="Unix path of the control socket (ipc://); at most 107 bytes once made absolute.",
    )
    group: str | None = Field(
        None,
        pattern=GROUP_PATTERN,
        description="Group owning the socket and its directory, so its members may connect; omit for owner only.",
    )
    max_message_bytes: Size = Field(
        1048576, ge=1024, description="Largest request accepted; bigger ones get an error reply."
    )
    readers: list[Principal] | None = Field(
        None,
        description="Users, and groups as \"@name\", that may use the read-only ops (status, health, ls, jobs,"
        " schedule and destination listings); omit for the members of `group`.",
    )
    admins: list[Principal] = Field(
        default_factory=list,
        description="Users, and groups as \"@name\", that may use every op; root and the daemon's own user always may.",
    )
    allow_unencrypted_destinations: bool = Field(
        False,
        description="Accept a destination added at run time without [encryption] although a destination of"
        " the config file is encrypted.",
    )
    max_peers: int = Field(
        256,
        ge=1,
        description="Connections to the socket kept at once (at most a quarter of the descriptor limit); "
        "further ones are closed at once.",
    )

    def reader_principals(self) -> list[str]:
        """`readers`, or by default the members of the socket's group."""
        if self.readers is not None:
            return self.readers
        return [GROUP_PREFIX + self.group] if self.group else []


class DaemonConfig(Section):
    max_concurrent_jobs: int = Field(2, ge=1, description="Jobs that may run at the same time, over all sources.")
    shutdown_timeout_s: Duration = Field(
        60.0, alias="shutdown_timeout", description="On SIGTERM, how long running jobs may take to finish."
    )
    catch_up_grace_s: Duration = Field(
        3600.0,
        alias="catch_up_grace",
        description="At start, a run missed within this long is caught up once; 0 catches up nothing.",
    )
    recheck_interval_s: PositiveDuration = Field(
        30.0, alias="recheck_interval", description="How often a held job checks its conditions again."
    )
    max_hold_s: PositiveDuration = Field(
        21600.0, alias="max_hold", description="A job held longer than this is skipped, with the reason logged."
    )
    conditions: ConditionsTable = Field(
        default_factory=dict,
        validate_default=True,
        description="When manual jobs (backupctl backup, priority normal) may start: a schedule's conditions, in UTC.",
    )
    health_interval_s: PositiveDuration = Field(
        60.0, alias="health_interval", description="How often each destination is probed (reachable, writable, space)."
    )
    health_timeout_s: PositiveDuration = Field(
        30.0, alias="health_timeout", description="A probe that has not answered after this long reports unhealthy."
    )
    job_timeout_s: PositiveDuration | None = Field(
        None,
        alias="job_timeout",
        description="A job still running after this long is cancelled and ends timed_out (retried like a failure); "
        "a schedule's timeout overrides it; unset: no limit.",
    )
    cancel_grace_s: PositiveDuration = Field(
        15.0,
        alias="cancel_grace",
        description="A job that has not stopped this long after a cancel or its timeout is killed.",
    )
    job_history_days: Annotated[int, Field(ge=0)] = Field(
        90, description="Finished jobs older than this many days are deleted from the job history; 0 keeps them all."
    )
    retry: RetryTable = Field(
        default_factory=lambda: {"max_attempts": 1},
        validate_default=True,
        description="Retries of a failed manual backup (backupctl backup); by default it is not retried.",
    )


class RetentionConfig(Section):
    """Global retention, applied per source; a backup any rule keeps is kept, with its chain."""

    keep_last: Annotated[int, Field(ge=0)] | None = Field(None, description="Keep the newest this many backups.")
    keep_daily: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Keep the newest backup of each of the last this many days that have one."
    )
    keep_weekly: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Keep the newest backup of each of the last this many weeks that have one."
    )
    keep_monthly: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Keep the newest backup of each of the last this many months that have one."
    )
    keep_yearly: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Keep the newest backup of each of the last this many years that have one."
    )


class FanoutConfig(Section):
    max_parallel_destinations: int = Field(
        2, ge=1, description="Destinations a backup is sent to at the same time, highest priority first."
    )
    success_policy: Annotated[SuccessPolicy, one_of(SuccessPolicy)] = Field(
        SuccessPolicy.ALL, description="Which outcome counts as success: every copy, a majority, or at least one."
    )


class RestoreConfig(Section):
    copy_selection: Annotated[CopySelection, one_of(CopySelection)] = Field(
        CopySelection.PRIORITY,
        description="Which copy a restore reads first: by destination priority, or the most recently verified one.",
    )
    allowed_dirs: list[ConfigPath] | None = Field(
        None,
        description="Directories a restore through the daemon may write in (or below; symlinks resolved);"
        " omit for each source's own directory and `restores` in the state dir.",
    )


class AlertsConfig(Section):
    """Alert thresholds, each off when unset; an alert is raised once and cleared once."""

    failure_rate: float | None = Field(
        None, ge=0, le=1,
        description="A schedule is failing (alert schedule_failing) when at least this share of its last"
        " `window` runs failed.",
    )
    window: int = Field(5, ge=1, description="The runs of a schedule `failure_rate` and `duration_factor` look at.")
    duration_factor: float | None = Field(
        None, gt=1,
        description="A run is too long (alert run_too_long) when it takes more than this many times the mean of"
        " its schedule's last `window` successful runs.",
    )
    storage_usage: float | None = Field(
        None, gt=0, le=1,
        description="A destination is nearly full (alert storage_nearly_full) when backups take at least this"
        " share of the space they have there (their bytes plus the probe's free bytes).",
    )
    check_interval_s: PositiveDuration = Field(
        30.0, alias="check_interval",
        description="How often freshness and alerts are evaluated (also after every job).",
    )


class ConfigDocument(Section):
    """The TOML document as written; `Config` adds where it was loaded from."""

    state: StateConfig = Field(description="Where the daemon keeps its state.")
    sources: list[SourceConfig] = Field(description="Databases to back up.")
    destinations: list[DestinationConfig] = Field(description="Where backups are stored.")
    strategy: StrategyPolicy = Field(default_factory=StrategyPolicy, description="How `auto` picks a strategy.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Backup validation.")
    control: ControlConfig = Field(default_factory=ControlConfig, description="The control socket backupctl talks to.")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="Limits and timings of the daemon.")
    schedules: list[ScheduleConfig] = Field(default_factory=list, description="When to back up which source.")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="Which backups to keep; per destination: max_age_days, max_count."
    )
    fanout: FanoutConfig = Field(default_factory=FanoutConfig, description="How a backup goes to several destinations.")
    restore: RestoreConfig = Field(default_factory=RestoreConfig, description="Which copies a restore reads.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert thresholds and how often they are checked.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Metrics exposition and the heartbeat.")
    notifiers: list[NotifierConfig] = Field(default_factory=list, description="Where events are sent (webhook, email, ...).")


class Config(ConfigDocument):
    """A validated config; build it with `load_config`."""

    path: Path = Field(description="Absolute path of the config file (set by load_config, not a TOML key).")

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise UnknownSource(f"unknown source {name!r} (configured: {_names(self.sources)})")

    def destination(self, name: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.name == name:
                return destination
        raise UnknownDestination(f"unknown destination {name!r} (configured: {_names(self.destinations)})")

    def schedule(self, name: str) -> ScheduleConfig:
        for schedule in self.schedules:
            if schedule.name == name:
                return schedule
        raise NotFound(f"unknown schedule {name!r} (configured: {_names(self.schedules) or 'none'})")

    def chosen_destinations(self, names: list[str] | tuple[str, ...]) -> list[DestinationConfig]:
        """The named destinations for a backup sent to chosen ones: each must be configured and enabled."""
        chosen = [self.destination(name) for name in names]
        for d in chosen:
            if not d.enabled:
                raise UsageError(f"destination {d.name!r} is disabled",
                                 hint=f"enable it (`backupctl dest enable {d.name}`) or choose other destinations")
        return chosen

    def restore_dirs(self) -> list[Path]:
        """Where a restore through the daemon may write: `[restore] allowed_dirs`, or each source's own
        directory and the restore area in the state dir."""
        if self.restore.allowed_dirs is not None:
            return list(self.restore.allowed_dirs)
        return [*dict.fromkeys(s.path.parent for s in self.sources), self.state.dir / RESTORE_AREA]

    def enabled_destinations(self) -> list[DestinationConfig]:
        """Enabled destinations, priority 1 first, ties in config order."""
        return sorted((d for d in self.destinations if d.enabled), key=lambda d: d.priority)


def _names(items: list[SourceConfig] | list[DestinationConfig] | list[ScheduleConfig]) -> str:
    return ", ".join(item.name for item in items)