"""Typed errors: every failure carries a stable code, a message naming the cause, and a hint naming the fix.

The code is the same string in `--json` output, on the control socket and in logs. A class names only
its code: its `exit_code` (2 for bad usage or config, 1 for an operation that failed) and `retryable`
(running the same job again soon may succeed; the daemon retries on it alone) come from the catalogue,
`backupd.core.codes`, so an uncatalogued code fails at import.

`python -m backupd.errors > docs/ERRORS.md` regenerates the catalogue's page.
"""

from __future__ import annotations

from typing import Any, Sequence

from backupd.core.codes import entry


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
    from backupd.core.codes import render_markdown

    print(render_markdown(), end="")
