"""Typed errors: every failure carries a stable code, a message naming the cause, and a hint naming the fix.

The code is the same string in `--json` output, on the control socket and in logs.
`exit_code` maps an error to the CLI contract: 2 for bad usage or config, 1 for an operation that failed.
"""

from __future__ import annotations

from typing import Any


class BackupdError(Exception):
    """Base of every error backupd reports to a user."""

    code = "internal_error"
    exit_code = 1

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
