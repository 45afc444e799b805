"""Typed errors: every failure carries a stable code, a message naming the cause, and a hint naming the fix.

The code is the same string in `--json` output, on the control socket and in logs.
`exit_code` maps an error to the CLI contract: 2 for bad usage or config, 1 for an operation that failed.
`retryable` says whether running the same job again soon may succeed (the daemon retries only those).
"""

from __future__ import annotations

from typing import Any


class BackupdError(Exception):
    """Base of every error backupd reports to a user."""

    code = "internal_error"
    exit_code = 1
    retryable = True

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
    exit_code = 2


class ConfigError(BackupdError):
    """The config file is invalid; `problems` lists every problem as 'path: message'."""

    code = "config_invalid"
    exit_code = 2

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
    exit_code = 2


class UnknownSource(BackupdError):
    code = "unknown_source"
    exit_code = 2


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
    exit_code = 2


class StateCorrupt(BackupdError):
    """The state database (catalog.db) is damaged; `backupd catalog rebuild` moves it aside and recreates it."""

    code = "state_corrupt"


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
    retryable = False


class DestinationReadOnly(DestinationError):
    """The destination's filesystem is read-only (mounted so, or remounted after an error)."""

    code = "destination_read_only"
    retryable = False


class DestinationPermissionDenied(DestinationError):
    """The destination refuses backupd's user (owner, mode, ACL)."""

    code = "destination_permission_denied"
    retryable = False


class DestinationStale(DestinationUnavailable):
    """A stale NFS file handle: the export went away under the mount; a remount or retry may fix it."""

    code = "destination_stale_handle"


class DestinationIOError(DestinationUnavailable):
    """The destination's medium reported an I/O error; a retry may succeed, the disk may be failing."""

    code = "destination_io_error"


def _codes(cls: type[BackupdError]) -> frozenset[str]:
    return frozenset({cls.code}).union(*(_codes(sub) for sub in cls.__subclasses__()))


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


DESTINATION_CODES = _codes(DestinationError)  # every code that blames a destination, not the data
