"""Typed errors: every failure carries a stable code, a message naming the cause, and a hint naming the fix.

The code is the same string in `--json` output, on the control socket and in logs.

The catalogue: every code a user can see, defined once, with its exit code, whether a retry may
succeed, and a one-line meaning; docs/ERRORS.md is generated from it (`python -m backupd.errors >
docs/ERRORS.md`). A class names only its code and takes `exit_code` (2 for bad usage or config, 1 for
an operation that failed) and `retryable` (running the same job again soon may succeed; the daemon
retries a failed job on it alone) from its entry, so an uncatalogued code fails at import. The client
(`backupd_client.protocol.ErrorCode`) cannot import backupd: a test checks its codes are the WIRE and
CLIENT ones here.

Scopes: WIRE codes reach a client on the control socket (an error reply or a job's `error.code`) and
`--json` output; CLIENT codes are made by `backupctl` itself; LOCAL ones only by `backupd` on this
machine; CHECK codes name why a validation check failed (its `details.code`); WARNING codes prefix a
backup's `warnings`; ALERT codes name a problem `health` reports (its `problems[].code`). Check, warning
and alert codes do not end a command by themselves (no exit code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

WIRE, CLIENT, LOCAL, CHECK, WARNING, ALERT = "wire", "client", "local", "check", "warning", "alert"
SCOPES = (WIRE, CLIENT, LOCAL, CHECK, WARNING, ALERT)
EXIT_USAGE, EXIT_FAILED = 2, 1  # the CLI contract: 2 bad usage or config, 1 the operation failed


@dataclass(frozen=True)
class Code:
    """One catalogued code. `copy_damage` is False for errors that say nothing about the copy being read
    (the destination failed, the key is wrong, the format is newer): validation does not blame the copy."""

    code: str
    scope: str
    exit_code: int | None
    retryable: bool
    meaning: str
    copy_damage: bool = True


_ALL = (
    # requests and the daemon
    Code("bad_request", WIRE, EXIT_USAGE, False,
         "a malformed message, or an argument of the wrong name, type or value"),
    Code("unknown_op", WIRE, EXIT_FAILED, False, "the daemon does not know the op (it is older than the client)"),
    Code("unsupported_protocol_version", WIRE, EXIT_FAILED, False,
         "the request's protocol version is not one the daemon speaks"),
    Code("not_found", WIRE, EXIT_FAILED, False, "no such job, schedule, backup or stored object"),
    Code("conflict", WIRE, EXIT_FAILED, False,
         "the request clashes with the current state (a name in use, a sole copy)"),
    Code("shutting_down", WIRE, EXIT_FAILED, False, "the daemon is stopping and accepts no new work"),
    Code("forbidden", WIRE, EXIT_FAILED, False,
         "refused by policy: the peer's role, or a restore target outside the allowed dirs"),
    # usage and config
    Code("bad_usage", WIRE, EXIT_USAGE, False, "a command or request that cannot be carried out as given"),
    Code("config_invalid", WIRE, EXIT_USAGE, False,
         "the config file (or a run-time destination or schedule) is invalid"),
    Code("unknown_source", WIRE, EXIT_USAGE, False, "no source of that name is configured"),
    Code("unknown_destination", WIRE, EXIT_USAGE, False, "no destination of that name is configured"),
    Code("target_exists", WIRE, EXIT_USAGE, False, "the restore target exists and --overwrite was not given"),
    Code("key_unusable", WIRE, EXIT_USAGE, False,
         "the key file or passphrase cannot be used (missing, bad size or mode)"),
    # the data
    Code("wrong_key", WIRE, EXIT_FAILED, False, "the backup was encrypted with another key", copy_damage=False),
    Code("corrupt_artifact", WIRE, EXIT_FAILED, False, "a stored artifact or sidecar failed its checks"),
    Code("unsupported_format_version", WIRE, EXIT_FAILED, False, "the artifact was written by a newer backupd",
       copy_damage=False),
    Code("missing_chain_member", WIRE, EXIT_FAILED, False, "a backup the chain needs is missing"),
    Code("no_restore_point", WIRE, EXIT_FAILED, False, "no backup of the source at or before the time asked for"),
    Code("restore_failed", WIRE, EXIT_FAILED, False,
         "the restore could not be completed; the target is left untouched"),
    Code("verification_failed", WIRE, EXIT_FAILED, True, "the backup failed validation (a new backup may pass)"),
    Code("state_corrupt", WIRE, EXIT_FAILED, False, "catalog.db is damaged; run `backupd catalog rebuild`"),
    Code("state_too_new", WIRE, EXIT_FAILED, False,
         "catalog.db was written by a newer backupd; run that release (nothing was changed)"),
    # the source
    Code("snapshot_failed", WIRE, EXIT_FAILED, True, "the source database could not be snapshotted"),
    Code("source_busy", WIRE, EXIT_FAILED, True, "another process holds the source's lock"),
    # destinations
    Code("destination_error", WIRE, EXIT_FAILED, False, "a destination failed in a way a retry will not fix",
       copy_damage=False),
    Code("destination_unavailable", WIRE, EXIT_FAILED, True, "a destination could not be reached (connection, timeout)",
       copy_damage=False),
    Code("destination_full", WIRE, EXIT_FAILED, False, "no space left on the destination, or its quota is exhausted",
       copy_damage=False),
    Code("destination_read_only", WIRE, EXIT_FAILED, False,
         "the destination's file system is read-only", copy_damage=False),
    Code("destination_permission_denied", WIRE, EXIT_FAILED, False, "the destination refuses backupd's user",
       copy_damage=False),
    Code("destination_stale_handle", WIRE, EXIT_FAILED, True,
         "a stale NFS handle: the export went away under the mount",
       copy_damage=False),
    Code("destination_io_error", WIRE, EXIT_FAILED, True, "the destination's medium reported an I/O error",
       copy_damage=False),
    # how a job ended
    Code("partial", WIRE, EXIT_FAILED, False, "stored, but some copies failed; a resync job retries those copies"),
    Code("cancelled", WIRE, EXIT_FAILED, False, "cancelled by a user, or interrupted (Ctrl-C)"),
    Code("timed_out", WIRE, EXIT_FAILED, True, "the job ran longer than its timeout and was cancelled"),
    Code("worker_died", WIRE, EXIT_FAILED, True, "the job's process died (killed, out of memory)"),
    Code("interrupted", WIRE, EXIT_FAILED, False, "the daemon stopped while the job ran; it is not resumed"),
    Code("internal_error", WIRE, EXIT_FAILED, True,
         "a bug; reported, the daemon keeps running, a job is retried per its policy"),
    # backupctl itself
    Code("daemon_unreachable", CLIENT, EXIT_FAILED, True, "no daemon answers on the control socket"),
    Code("timeout", CLIENT, EXIT_FAILED, True, "the daemon gave no answer in time"),
    # backupd on this machine
    Code("already_running", LOCAL, EXIT_FAILED, False, "another daemon already uses this config's state dir or socket"),
    # why a validation check failed
    Code("catalog_mismatch", CHECK, None, False, "the catalog and the stored manifest disagree"),
    Code("source_flagged", CHECK, None, False, "the backup is of a source that looked damaged at the snapshot"),
    Code("corrupt_database", CHECK, None, False, "the restored database fails SQLite's integrity check"),
    Code("sql_error", CHECK, None, False, "a validation rule's SQL failed on the restored database"),
    # a backup's warnings
    Code("source_corrupt", WARNING, None, False, "the source check found damage in the snapshot"),
    Code("source_shrunk", WARNING, None, False, "the source is empty or under half its previous pages or rows"),
    # problems health reports (alerts)
    Code("source_stale", ALERT, None, False,
         "the source's newest restorable backup (on min_copies destinations) is older than its max_age"),
    Code("schedule_last_run_failed", ALERT, None, False, "the schedule's last run failed"),
    Code("schedule_failing", ALERT, None, False, "at least [alerts] failure_rate of the schedule's last runs failed"),
    Code("run_too_long", ALERT, None, False,
         "the schedule's latest run took over [alerts] duration_factor times its mean"),
    Code("storage_nearly_full", ALERT, None, False,
         "backups take at least [alerts] storage_usage of the space a destination has"),
    Code("destination_unhealthy", ALERT, None, False, "a destination's probe failed (unreachable, not writable)"),
    Code("destination_degraded", ALERT, None, False, "a destination answers but has a problem (little free space)"),
    Code("daemon_stopping", ALERT, None, False, "the daemon is stopping"),
    Code("notifier_gone", ALERT, None, False,
         "a notifier's receiver answered 410 Gone: it is down until a reload or restart"),
    Code("notifier_unavailable", ALERT, None, False,
         "a notifier could not be set up (a file it names changed since the config was loaded)"),
)

CATALOGUE: dict[str, Code] = {c.code: c for c in _ALL}
WIRE_CODES = frozenset(c.code for c in _ALL if c.scope == WIRE)
CLIENT_CODES = frozenset(c.code for c in _ALL if c.scope == CLIENT)
NOT_THE_COPY = frozenset(c.code for c in _ALL if not c.copy_damage)  # failures that do not blame a copy


def entry(code: str) -> Code:
    """The catalogue entry of `code`; KeyError for a code nobody catalogued."""
    return CATALOGUE[code]


def code_retryable(code: str | None) -> bool:
    """Whether a job that failed with `code` may be retried; an unknown code is not."""
    known = CATALOGUE.get(code or "")
    return known is not None and known.retryable


_TITLES = {WIRE: "Errors (`backupd`, `backupctl`, the control socket)", CLIENT: "Made by `backupctl` itself",
           LOCAL: "Made by `backupd` on this machine only", CHECK: "Why a validation check failed (`details.code`)",
           WARNING: "A backup's warnings (prefix of each entry of `warnings`)",
           ALERT: "Problems `health` reports (`problems[].code`)"}


def render_markdown() -> str:
    """docs/ERRORS.md."""
    out = ["# Error codes", "",
           "Generated from the catalogue in `backupd/errors.py` (`python -m backupd.errors > docs/ERRORS.md`); "
           "a test checks it is current.", "",
           "Exit codes: 0 success, 1 the operation failed, 2 bad usage or config. *Retried*: a scheduled job "
           "that fails with the code is run again (with backoff, up to its `retry.max_attempts`); a backup "
           "that failed on every destination is retried if any destination's failure is."]
    for scope in SCOPES:
        out += ["", f"## {_TITLES[scope]}", ""]
        rows = [c for c in _ALL if c.scope == scope]
        if scope in (CHECK, WARNING, ALERT):
            out += ["| code | meaning |", "|---|---|"] + [f"| `{c.code}` | {c.meaning} |" for c in rows]
            continue
        out += ["| code | exit | retried | meaning |", "|---|---|---|---|"]
        for c in rows:
            retried = "yes" if c.retryable else "no"
            out.append(f"| `{c.code}` | {c.exit_code} | {retried} | {c.meaning} |")
    return "\n".join(out) + "\n"


class BackupdError(Exception):
    """Base of every error backupd reports to a user."""

    code = "internal_error"
    exit_code: int = 1
    retryable: bool = entry("internal_error").retryable

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        known = entry(cls.code)
        cls.exit_code, cls.retryable = known.exit_code or 1, known.retryable

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self), "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


class UsageError(BackupdError):
    code = "bad_usage"


class ConfigError(BackupdError):
    """The config file is invalid; `problems` lists every problem as 'path: message'."""

    code = "config_invalid"

    def __init__(self, problems: list[str], *, source: str | None = None):
        self.problems = problems
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}invalid config: " + "; ".join(problems), details={"problems": problems}
        )


class PathTooLong(UsageError):
    """A path given to backupd is longer than the file system allows (NAME_MAX per name, PATH_MAX in all)."""


class TargetExists(BackupdError):
    code = "target_exists"


class UnknownSource(BackupdError):
    code = "unknown_source"


class UnknownDestination(BackupdError):
    """A destination name the config does not have: bad usage, like an unknown source."""

    code = "unknown_destination"


class NotFound(BackupdError):
    """A backup, restore point or object that does not exist."""

    code = "not_found"


class NoRestorePoint(BackupdError):
    code = "no_restore_point"


class WrongKey(BackupdError):
    code = "wrong_key"


class KeyUnusable(BackupdError):
    """A key file or passphrase that cannot be used (missing, bad size, bad permissions)."""

    code = "key_unusable"


class StateCorrupt(BackupdError):
    """The state database (catalog.db) is damaged; `backupd catalog rebuild` moves it aside and recreates it."""

    code = "state_corrupt"


class StateTooNew(BackupdError):
    """The state database was written by a newer backupd (its schema version is past the known ones);
    it is refused before anything is written."""

    code = "state_too_new"


class CorruptArtifact(BackupdError):
    code = "corrupt_artifact"


class UnsupportedVersion(BackupdError):
    code = "unsupported_format_version"


class MissingChainMember(BackupdError):
    code = "missing_chain_member"


class SnapshotFailed(BackupdError):
    code = "snapshot_failed"


class SourceBusy(BackupdError):
    code = "source_busy"


class DestinationError(BackupdError):
    """A destination failed permanently (permissions, no space, bad path)."""

    code = "destination_error"


class DestinationUnavailable(DestinationError):
    """A destination failed in a way a retry may fix (network drop, timeout)."""

    code = "destination_unavailable"


class DestinationFull(DestinationError):
    """No space left on the destination, or its quota is exhausted."""

    code = "destination_full"


class DestinationReadOnly(DestinationError):
    """The destination's filesystem is read-only (mounted so, or remounted after an error)."""

    code = "destination_read_only"


class DestinationPermissionDenied(DestinationError):
    """The destination refuses backupd's user (owner, mode, ACL)."""

    code = "destination_permission_denied"


class DestinationStale(DestinationUnavailable):
    """A stale NFS file handle: the export went away under the mount; a remount or retry may fix it."""

    code = "destination_stale_handle"


class DestinationIOError(DestinationUnavailable):
    """The destination's medium reported an I/O error; a retry may succeed, the disk may be failing."""

    code = "destination_io_error"


class RestoreFailed(BackupdError):
    code = "restore_failed"


class VerificationFailed(BackupdError):
    code = "verification_failed"


class Cancelled(BackupdError):
    code = "cancelled"


class Forbidden(BackupdError):
    """Refused by policy: the peer's role does not allow the op, or its arguments leave what is allowed
    (a restore outside `[restore] allowed_dirs`, an unencrypted destination)."""

    code = "forbidden"


def aggregate(errors: Sequence[BackupdError]) -> BackupdError:
    """One error for several causes (every destination of a backup failed): the first, so its code and
    message are what the user sees, but retryable if any cause is, since a retry may then succeed where
    a transient failure was; its details name every cause's code."""
    first = errors[0]
    if len(errors) > 1:
        first.retryable = any(e.retryable for e in errors)
        first.details = {**first.details, "causes": [e.code for e in errors]}
    return first


if __name__ == "__main__":
    print(render_markdown(), end="")
