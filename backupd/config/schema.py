"""The config schema: frozen pydantic models for every section of backupd.toml.

Models check shape only (types, ranges, known keys). Checks across sections and against the
file system or environment live in `load.py`. Relative paths resolve against the `base_dir`
given in the validation context (the directory of the config file).

Schedules are typed with the pure core objects the daemon uses: `ScheduleConfig.retry` is a
`core.backoff.RetryPolicy`, `.conditions` a `core.gate.Conditions` (windows parsed, sizes in bytes)
and `.cron_spec` the parsed `core.cron.CronSpec`. Durations ("90s", "1h30m" or seconds) become
float seconds, in attributes ending `_s` whose TOML key has no suffix (`shutdown_timeout`).
"""

from __future__ import annotations

import os
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from backupd.core.access import GROUP_PREFIX, PRINCIPAL_PATTERN
from backupd.core.backoff import RetryPolicy
from backupd.core.cron import CronSpec, parse_cron
from backupd.core.gate import Conditions
from backupd.core.units import parse_duration, parse_size
from backupd.core.windows import Window, parse_days, parse_time_of_day
from backupd.errors import NotFound, UnknownDestination, UnknownSource, UsageError

PROBLEM = "config_problem"  # error type of the checks below; load.py reports their message as is
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
GROUP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"
VALIDATION_LEVELS = ("quick", "standard", "deep")
_TIMEZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother = 100, 60
_repr.maxlevel = 2


def show_value(value: object) -> str:
    """A value as a problem message quotes it: TOML spelling for booleans, long values shortened."""
    return str(value).lower() if isinstance(value, bool) else _repr.repr(value)


def _problem(message: str) -> PydanticCustomError:
    # The message goes in as context: a literal "{" in it must not be read as a placeholder.
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": message})


def _check_path_text(value: object) -> object:
    if value == "":
        raise PydanticCustomError(PROBLEM, "must not be empty")
    if isinstance(value, str) and "\0" in value:
        raise PydanticCustomError(PROBLEM, "must not contain a NUL character")
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Make a path absolute against the config file's directory, without following symlinks.

    With no `base_dir` in the context (a destination added at run time has no config file) a relative
    path is an error."""
    context = info.context or {}
    if "base_dir" not in context and not value.is_absolute():
        raise _problem(f"must be an absolute path (got {str(value)!r}): there is no config file to be relative to")
    return Path(os.path.normpath(Path(context.get("base_dir", "/")) / value))


def _compression_level(value: int) -> int:
    if not 1 <= value <= 22:
        raise PydanticCustomError(PROBLEM, "must be 1..22 (got {got})", {"got": value})
    return value


ConfigPath = Annotated[Path, Strict(False), BeforeValidator(_check_path_text), AfterValidator(_resolve)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN)]
RESTORE_AREA = "restores"  # in the state dir: where a restore through the daemon may always write


class _Section(BaseModel):
    """Base of every config model: strict TOML types (no "3" for 3), unknown keys rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class StateConfig(_Section):
    dir: ConfigPath = Field(description="Directory for the catalog, schedules and other daemon state.")


class SourceConfig(_Section):
    name: Name = Field(description="Unique source name, used in commands and backup ids.")
    kind: Literal["sqlite"] = Field(description="Source type; only 'sqlite' for now.")
    path: ConfigPath = Field(description="Path of the SQLite database file to back up.")
    source_check: Literal["quick", "full", "off"] = Field(
        "full",
        description="Check of the source inside the snapshot: 'quick' (PRAGMA quick_check: b-tree structure),"
        " 'full' (PRAGMA integrity_check: also every index against its rows) or 'off'.",
    )


class EncryptionConfig(_Section):
    key_file: ConfigPath | None = Field(
        None, description="File holding exactly 32 random bytes, mode 0600 (create with `backupd keygen`)."
    )
    passphrase_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable holding a passphrase; the key is derived with Argon2id.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EncryptionConfig:
        if (self.key_file is None) == (self.passphrase_env is None):
            got = "neither" if self.key_file is None else "both"
            raise PydanticCustomError(
                PROBLEM, "set exactly one of key_file or passphrase_env (got {got})", {"got": got}
            )
        return self


DESTINATION_KINDS = ("local", "share", "sftp", "smb")
# Keys only some kinds take: key -> the kinds that allow it, and the kinds that require it.
_KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mount_point": (("share",), ()),
    "host": (("sftp",), ("sftp",)),
    "port": (("sftp", "smb"), ()),
    "user": (("sftp", "smb"), ("sftp", "smb")),
    "key_file": (("sftp",), ()),
    "known_hosts": (("sftp",), ("sftp",)),
    "server": (("smb",), ("smb",)),
    "share": (("smb",), ("smb",)),
    "password_env": (("smb",), ()),
    "credentials_file": (("smb",), ()),
    "require_encryption": (("smb",), ()),
}
DEFAULT_PORTS = {"sftp": 22, "smb": 445}
_LOCAL_PATH_KINDS = ("local", "share")


def _kind_key(description: str) -> Any:
    """A key only some kinds take (see _KIND_KEYS); validated even when absent, to report it missing."""
    return Field(None, validate_default=True, description=description)


class DestinationConfig(_Section):
    """One [[destinations]] table. Keys of other kinds are errors; `port` and `require_encryption`
    get their kind's default (22 for sftp, 445 for smb; false) and stay None for kinds without them."""

    name: Name = Field(description="Unique destination name.")
    kind: Literal["local", "share", "sftp", "smb"] = Field(
        description="Destination type: 'local' directory, mounted 'share', 'sftp' server or 'smb' server."
    )
    path: Annotated[Path, Strict(False), BeforeValidator(_check_path_text)] = Field(
        description="local/share: directory on this machine (resolved against the config's directory);"
        " sftp: directory on the server; smb: directory inside the share."
    )
    compression_level: Annotated[int, AfterValidator(_compression_level)] = Field(
        3, description="zstd compression level, 1..22."
    )
    enabled: bool = Field(True, description="Whether backups are sent to this destination.")
    priority: int = Field(
        1, ge=1, description="1 is the most preferred; larger numbers are used after smaller ones."
    )
    encryption: EncryptionConfig | None = Field(None, description="Encrypt artifacts; omit to store them unencrypted.")
    max_age_days: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Retention: delete backups older than this many days here (chains permitting)."
    )
    max_count: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Retention: keep at most this many backups here (chains permitting)."
    )
    mount_point: ConfigPath | None = _kind_key(
        "share: the mount point that must be mounted before anything is written there."
    )
    host: Annotated[str, Field(min_length=1)] | None = _kind_key("sftp: server host name or address.")
    port: Annotated[int, Field(ge=1, le=65535)] | None = _kind_key("sftp/smb: server TCP port (sftp 22, smb 445).")
    user: Annotated[str, Field(min_length=1)] | None = _kind_key("sftp/smb: user name to log in as.")
    key_file: ConfigPath | None = _kind_key("sftp: private key file (mode 0600); omit to use the ssh-agent.")
    known_hosts: ConfigPath | None = _kind_key(
        "sftp: known_hosts file holding the server's host key; unknown or changed keys are refused."
    )
    server: Annotated[str, Field(min_length=1)] | None = _kind_key("smb: server host name or address.")
    share: Annotated[str, Field(min_length=1)] | None = _kind_key("smb: name of the share.")
    password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = _kind_key(
        "smb: environment variable holding the password."
    )
    credentials_file: ConfigPath | None = _kind_key("smb: file (mode 0600) holding the password.")
    require_encryption: bool | None = _kind_key(
        "smb: refuse a server that does not encrypt (encryption is used whenever the server offers it)."
    )

    @field_validator("path", mode="after")
    @classmethod
    def _resolve_local_path(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) if info.data.get("kind") in _LOCAL_PATH_KINDS else value

    @field_validator(*_KIND_KEYS, mode="after")
    @classmethod
    def _kind_allows(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        allowed, required = _KIND_KEYS[info.field_name or ""]
        if kind is None:  # the kind itself is wrong: reported on its own
            return value
        if value is not None and kind not in allowed:
            raise _problem(f"not allowed for kind {kind!r}")
        if value is None and kind in required:
            raise _problem("required key missing")
        return value

    @model_validator(mode="after")
    def _kind_defaults(self) -> DestinationConfig:
        if self.kind == "smb" and (self.password_env is None) == (self.credentials_file is None):
            got = "neither" if self.password_env is None else "both"
            raise _problem(f"set exactly one of password_env or credentials_file (got {got})")
        # defaults that depend on the kind; the model is frozen, so set them the way pydantic does
        if self.kind in DEFAULT_PORTS and self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.kind])
        if self.kind == "smb" and self.require_encryption is None:
            object.__setattr__(self, "require_encryption", False)
        return self


class StrategyPolicy(_Section):
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


class ValidationRule(_Section):
    id: str = Field(min_length=1, description="Unique rule id, shown in validation reports.")
    sql: str = Field(min_length=1, description="Query whose first column must be true on the restored database.")
    severity: Literal["info", "warning", "error", "critical"] = Field(
        "error", description="How a failing rule counts in the verdict."
    )
    description: str = Field("", description="What the rule asserts, shown in reports.")
    sources: list[str] = Field(default_factory=list, description="Sources the rule applies to; empty means all.")


class ValidationConfig(_Section):
    default_level: Literal["quick", "standard", "deep"] = Field(
        "standard", description="Validation level used when a command does not name one."
    )
    rules: list[ValidationRule] = Field(default_factory=list, description="Custom SQL assertions.")


def _converter(parse: Callable[[Any], Any], expected: str, types: tuple[type, ...]) -> Callable[[Any], Any]:
    """A before-validator running a core parser; its ValueError becomes the problem message."""

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            raise _problem(f"expected {expected} (got {show_value(value)})")
        try:
            return parse(value)
        except ValueError as exc:
            raise _problem(str(exc)) from None

    return convert


def _bounded(low: float, *, inclusive: bool, shown: Callable[[float], str]) -> Callable[[float], float]:
    def check(value: float) -> float:
        if value < low or (value == low and not inclusive):
            raise _problem(f"must be {'>=' if inclusive else '>'} {shown(low)} (got {shown(value)})")
        return value

    return check


def _seconds(value: float) -> str:
    return f"{value:g}s"


_DURATION_TEXT = 'a duration such as "90s", "15m" or "1h30m"'
Duration = Annotated[
    float, BeforeValidator(_converter(parse_duration, _DURATION_TEXT, (str, int, float))), AfterValidator(
        _bounded(0, inclusive=True, shown=_seconds)
    )
]
PositiveDuration = Annotated[Duration, AfterValidator(_bounded(0, inclusive=False, shown=_seconds))]
_SIZE_TEXT = 'a size such as "256MiB" or a number of bytes'
Size = Annotated[int, BeforeValidator(_converter(parse_size, _SIZE_TEXT, (str, int)))]


@dataclass(frozen=True)
class FromSection:
    """Annotated marker: validate a TOML table with `section` (errors keep their key paths), then
    turn the validated section into a core object with `convert` (a ValueError there is reported
    at the table's path)."""

    section: type[BaseModel]
    convert: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source_type: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def convert(section: Any) -> Any:
            try:
                return self.convert(section)
            except ValueError as exc:
                raise _problem(str(exc)) from None

        return core_schema.chain_schema(
            [handler.generate_schema(self.section), core_schema.no_info_plain_validator_function(convert)]
        )


class ControlConfig(_Section):
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


def _window(section: WindowSection) -> Window:
    return Window(section.days, section.start, section.end)


class WindowSection(_Section):
    days: Annotated[frozenset[int], BeforeValidator(_converter(parse_days, "an array of days", (list,)))] = Field(
        frozenset(range(7)), description='Days the window opens on: names, ranges such as "mon-fri", or "*".'
    )
    start: Annotated[time, BeforeValidator(_converter(parse_time_of_day, "a time HH:MM", (str,)))] = Field(
        description="Wall-clock time (HH:MM) the window opens, in the schedule's timezone."
    )
    end: Annotated[
        time, BeforeValidator(_converter(lambda text: parse_time_of_day(text, allow_24=True), "a time HH:MM", (str,)))
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


class ConditionsSection(_Section):
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


class RetrySection(_Section):
    max_attempts: int = Field(3, ge=1, description="Attempts in all, the first included; 1 never retries.")
    base_delay: Duration = Field(30.0, description="Wait before the first retry.")
    max_delay: Duration = Field(900.0, description="Longest wait between attempts, before jitter.")
    multiplier: float = Field(2.0, ge=1, description="Each wait is this many times the previous one.")
    jitter: float = Field(0.2, ge=0, le=1, description="Waits vary at random by up to this fraction.")


class DaemonConfig(_Section):
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
    conditions: Annotated[Conditions, FromSection(ConditionsSection, _conditions)] = Field(
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
    retry: Annotated[RetryPolicy, FromSection(RetrySection, _retry)] = Field(
        default_factory=lambda: {"max_attempts": 1},
        validate_default=True,
        description="Retries of a failed manual backup (backupctl backup); by default it is not retried.",
    )


def _cron(expression: str) -> str:
    try:
        parse_cron(expression)
    except ValueError as exc:
        raise _problem(str(exc)) from None
    return expression


def _timezone(name: str) -> str:
    problem = f"unknown timezone {show_value(name)} (expected an IANA name such as 'UTC' or 'Europe/Berlin')"
    if not _TIMEZONE_NAME.fullmatch(name):
        raise _problem(problem)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _problem(problem) from None
    return name


Level = Literal["quick", "standard", "deep"]


def _validation_level(value: object, info: ValidationInfo) -> str | None:
    if value is False or value is None:
        return None
    if value is True:
        return (info.context or {}).get("default_validation_level", "standard")
    if isinstance(value, str) and value in VALIDATION_LEVELS:
        return value
    raise _problem(f"expected true, false or a level: {', '.join(VALIDATION_LEVELS)} (got {show_value(value)})")


_BACKUP_ONLY_KEYS = frozenset({"strategy", "tags", "destinations", "validate_after_backup", "max_staleness_s"})


class ScheduleConfig(_Section):
    """One [[schedules]] table; `cron_spec` is the parsed `cron`."""

    name: Name = Field(description="Unique schedule name, shown in jobs, logs and statistics.")
    job: Literal["backup", "prune"] = Field(
        "backup", description="What it runs: a backup of the source, or retention (prune) of its backups."
    )
    source: Name = Field(description="Name of the source to back up (or prune).")
    cron: Annotated[str, AfterValidator(_cron)] = Field(
        description="When to run: 5 fields (minute hour day month weekday) or 6 with leading seconds."
    )
    strategy: Literal["full", "incremental", "differential", "auto"] = Field(
        "auto", description="Backup strategy; auto picks one from the chain's state and the change rate."
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
    validate_after_backup: Annotated[Level | None, BeforeValidator(_validation_level)] = Field(
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
    retry: Annotated[RetryPolicy, FromSection(RetrySection, _retry)] = Field(
        default_factory=dict, validate_default=True, description="Retries of a failed job."
    )
    conditions: Annotated[Conditions, FromSection(ConditionsSection, _conditions)] = Field(
        default_factory=dict, validate_default=True, description="When the schedule's jobs may start."
    )

    @field_validator("conditions", mode="after")
    @classmethod
    def _in_schedule_timezone(cls, conditions: Conditions, info: ValidationInfo) -> Conditions:
        return replace(conditions, timezone=info.data.get("timezone", "UTC"))

    @model_validator(mode="after")
    def _prune_takes_no_backup_keys(self) -> ScheduleConfig:
        if self.job == "prune":
            fields = type(self).model_fields
            given = sorted(fields[k].alias or k for k in self.model_fields_set & _BACKUP_ONLY_KEYS)
            if given:
                raise _problem(f"{', '.join(given)}: not used by a prune schedule (job = \"prune\"); remove them")
        return self

    @cached_property
    def cron_spec(self) -> CronSpec:
        return parse_cron(self.cron)


class RetentionConfig(_Section):
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


class FanoutConfig(_Section):
    max_parallel_destinations: int = Field(
        2, ge=1, description="Destinations a backup is sent to at the same time, highest priority first."
    )
    success_policy: Literal["all", "quorum", "any"] = Field(
        "all", description="Which outcome counts as success: every copy, a majority, or at least one."
    )


class RestoreConfig(_Section):
    copy_selection: Literal["priority", "most_reliable"] = Field(
        "priority",
        description="Which copy a restore reads first: by destination priority, or the most recently verified one.",
    )
    allowed_dirs: list[ConfigPath] | None = Field(
        None,
        description="Directories a restore through the daemon may write in (or below; symlinks resolved);"
        " omit for each source's own directory and `restores` in the state dir.",
    )


class ConfigDocument(_Section):
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
