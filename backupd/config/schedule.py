"""The [[schedules]] table and the tables inside it ([schedules.retry], [schedules.conditions] and its
windows), which [daemon] reuses for manual jobs.

Schedules are typed with the pure core objects the daemon uses: `ScheduleConfig.retry` is a
`core.backoff.RetryPolicy`, `.conditions` a `core.gate.Conditions` (windows parsed, sizes in bytes)
and `.cron_spec` the parsed `core.cron.CronSpec`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import time
from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from backupd.config.fields import (Duration, FromSection, Name, PositiveDuration, Section, Size, converter, one_of,
                                   problem, show_value)
from backupd.core.backoff import RetryPolicy
from backupd.core.cron import CronSpec, parse_cron
from backupd.core.gate import Conditions
from backupd.core.vocab import VALIDATION_LEVELS, NotifyOn, RequestedStrategy, ScheduleJob, ValidationLevel
from backupd.core.windows import Window, parse_days, parse_time_of_day

_TIMEZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


def _window(section: WindowSection) -> Window:
    return Window(section.days, section.start, section.end)


class WindowSection(Section):
    days: Annotated[frozenset[int], BeforeValidator(converter(parse_days, "an array of days", (list,)))] = Field(
        frozenset(range(7)), description='Days the window opens on: names, ranges such as "mon-fri", or "*".'
    )
    start: Annotated[time, BeforeValidator(converter(parse_time_of_day, "a time HH:MM", (str,)))] = Field(
        description="Wall-clock time (HH:MM) the window opens, in the schedule's timezone."
    )
    end: Annotated[
        time, BeforeValidator(converter(lambda text: parse_time_of_day(text, allow_24=True), "a time HH:MM", (str,)))
    ] = Field(description="Wall-clock time (HH:MM, or 24:00) it closes; earlier than start means the next day.")


WindowTable = Annotated[Window, FromSection(WindowSection, _window)]


def _conditions(section: ConditionsSection) -> Conditions:
    return Conditions(
        blackout=tuple(section.blackout),
        maintenance=tuple(section.maintenance),
        max_cpu_percent=section.max_cpu_percent,
        max_load_per_core=section.max_load_per_core,
        min_free_memory=section.min_free_memory,
        max_concurrent_jobs=section.max_concurrent_jobs,
    )


class ConditionsSection(Section):
    blackout: list[WindowTable] = Field(
        default_factory=list, description="Windows in which no job of this schedule starts (never bypassed)."
    )
    maintenance: list[WindowTable] = Field(
        default_factory=list, description="If set, jobs start only inside one of these windows."
    )
    max_cpu_percent: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description="Hold the job while CPU use is above this percentage."
    )
    max_load_per_core: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Hold the job while the 1-minute load average per CPU core is above this."
    )
    min_free_memory: Size | None = Field(None, description="Hold the job while less memory than this is available.")
    max_concurrent_jobs: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Hold the job while this many jobs (of any schedule) are running."
    )


def _retry(section: RetrySection) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=section.max_attempts,
        base_delay=section.base_delay,
        max_delay=section.max_delay,
        multiplier=section.multiplier,
        jitter=section.jitter,
    )


class RetrySection(Section):
    max_attempts: int = Field(3, ge=1, description="Attempts in all, the first included; 1 never retries.")
    base_delay: Duration = Field(30.0, description="Wait before the first retry.")
    max_delay: Duration = Field(900.0, description="Longest wait between attempts, before jitter.")
    multiplier: float = Field(2.0, ge=1, description="Each wait is this many times the previous one.")
    jitter: float = Field(0.2, ge=0, le=1, description="Waits vary at random by up to this fraction.")


RetryTable = Annotated[RetryPolicy, FromSection(RetrySection, _retry)]
ConditionsTable = Annotated[Conditions, FromSection(ConditionsSection, _conditions)]


def _cron(expression: str) -> str:
    try:
        parse_cron(expression)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return expression


def _timezone(name: str) -> str:
    message = f"unknown timezone {show_value(name)} (expected an IANA name such as 'UTC' or 'Europe/Berlin')"
    if not _TIMEZONE_NAME.fullmatch(name):
        raise problem(message)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise problem(message) from None
    return name


def _validation_level(value: object, info: ValidationInfo) -> ValidationLevel | None:
    if value is False or value is None:
        return None
    if value is True:
        return ValidationLevel((info.context or {}).get("default_validation_level", ValidationLevel.STANDARD))
    if isinstance(value, str) and value in VALIDATION_LEVELS:
        return ValidationLevel(value)
    raise problem(f"expected true, false or a level: {', '.join(VALIDATION_LEVELS)} (got {show_value(value)})")


_BACKUP_ONLY_KEYS = frozenset({"strategy", "tags", "destinations", "validate_after_backup", "max_staleness_s"})


class ScheduleConfig(Section):
    """One [[schedules]] table; `cron_spec` is the parsed `cron`."""

    name: Name = Field(description="Unique schedule name, shown in jobs, logs and statistics.")
    job: Annotated[ScheduleJob, one_of(ScheduleJob)] = Field(
        ScheduleJob.BACKUP, description="What it runs: a backup of the source, or retention (prune) of its backups."
    )
    source: Name = Field(description="Name of the source to back up (or prune).")
    cron: Annotated[str, AfterValidator(_cron)] = Field(
        description="When to run: 5 fields (minute hour day month weekday), 6 with leading seconds, or an alias"
        " (@hourly, @daily, @weekly, @monthly, @yearly)."
    )
    strategy: Annotated[RequestedStrategy, one_of(RequestedStrategy)] = Field(
        RequestedStrategy.AUTO,
        description="Backup strategy; auto picks one from the chain's state and the change rate.",
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        "UTC", description="IANA time zone of the cron fields and the windows."
    )
    enabled: bool = Field(True, description="Set to false to keep the schedule without running it.")
    description: str = Field("", description="Free text shown with the schedule.")
    tags: list[str] = Field(default_factory=list, description="Tags recorded on every backup this schedule takes.")
    destinations: list[Name] = Field(
        default_factory=list, description="Destinations its backups go to; empty means every enabled one."
    )
    validate_after_backup: Annotated[ValidationLevel | None, BeforeValidator(_validation_level)] = Field(
        None, description="Validate each new backup: false, true (validation.default_level) or a level."
    )
    max_staleness_s: PositiveDuration | None = Field(
        None,
        alias="max_staleness",
        description="Once the last good backup is older than this, run despite load limits (never in a blackout).",
    )
    timeout_s: PositiveDuration | None = Field(
        None,
        alias="timeout",
        description="Cancel a job of this schedule still running after this long (it ends timed_out and is retried "
        "per retry); unset: [daemon] job_timeout.",
    )
    notify: list[Name] = Field(
        default_factory=list, description="Notifiers its jobs' outcomes are also sent to (per `notify_on`)."
    )
    notify_on: list[Annotated[NotifyOn, one_of(NotifyOn)]] = Field(
        default_factory=lambda: [NotifyOn.FAILURE],
        description="Which outcomes go to `notify`: failure, success and/or completion (any outcome).",
    )
    retry: RetryTable = Field(
        default_factory=dict, validate_default=True, description="Retries of a failed job."
    )
    conditions: ConditionsTable = Field(
        default_factory=dict, validate_default=True, description="When the schedule's jobs may start."
    )

    @field_validator("conditions", mode="after")
    @classmethod
    def _in_schedule_timezone(cls, conditions: Conditions, info: ValidationInfo) -> Conditions:
        return replace(conditions, timezone=info.data.get("timezone", "UTC"))

    @model_validator(mode="after")
    def _prune_takes_no_backup_keys(self) -> ScheduleConfig:
        if self.job == ScheduleJob.PRUNE:
            fields = type(self).model_fields
            given = sorted(fields[k].alias or k for k in self.model_fields_set & _BACKUP_ONLY_KEYS)
            if given:
                raise problem(f"{', '.join(given)}: not used by a prune schedule (job = \"prune\"); remove them")
        return self

    @cached_property
    def cron_spec(self) -> CronSpec:
        return parse_cron(self.cron)

