"""Typed client errors: one class per protocol ErrorCode, so callers catch what they can handle.

An error reply from the daemon becomes `error_for(code, message, details)`; an unknown code (from a
newer daemon) becomes a plain ClientError that still carries it. `exit_code` follows the `backupd`
CLI: 2 for bad usage or config, 1 for an operation that failed.
"""

from __future__ import annotations

from typing import Any

from .protocol import ErrorCode

FIX_DAEMON = "is backupd running? start it with: systemctl start backupd"


class ClientError(Exception):
    """Base of every client error: `code` is the protocol's ErrorCode string (or an unknown one)."""

    exit_code = 1

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The object `backupctl --json` writes to stderr, shaped like `backupd --json` errors."""
        out: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


class _Coded(ClientError):
    """A subclass per code: raise NotFoundError("no job j1")."""

    code: str = ""  # each public subclass names its ErrorCode

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(type(self).code, message, details)


class _UsageLike(_Coded):
    exit_code = 2


class BadRequestError(_UsageLike):
    code = ErrorCode.BAD_REQUEST.value


class UnknownOpError(_Coded):
    """The daemon does not know the op: it is older than this client."""
    code = ErrorCode.UNKNOWN_OP.value


class UnsupportedProtocolVersionError(_Coded):
    code = ErrorCode.UNSUPPORTED_PROTOCOL_VERSION.value


class NotFoundError(_Coded):
    code = ErrorCode.NOT_FOUND.value


class ConflictError(_Coded):
    code = ErrorCode.CONFLICT.value


class ShuttingDownError(_Coded):
    code = ErrorCode.SHUTTING_DOWN.value


class UnknownSourceError(_UsageLike):
    code = ErrorCode.UNKNOWN_SOURCE.value


class UnknownDestinationError(_UsageLike):
    code = ErrorCode.UNKNOWN_DESTINATION.value


class ConfigInvalidError(_UsageLike):
    code = ErrorCode.CONFIG_INVALID.value


class BadUsageError(_UsageLike):
    code = ErrorCode.BAD_USAGE.value


class WrongKeyError(_Coded):
    code = ErrorCode.WRONG_KEY.value


class KeyUnusableError(_UsageLike):
    """The daemon's key file or passphrase for a destination cannot be used (missing, bad size or mode)."""

    code = ErrorCode.KEY_UNUSABLE.value


class CorruptArtifactError(_Coded):
    code = ErrorCode.CORRUPT_ARTIFACT.value


class UnsupportedFormatVersionError(_Coded):
    code = ErrorCode.UNSUPPORTED_FORMAT_VERSION.value


class MissingChainMemberError(_Coded):
    code = ErrorCode.MISSING_CHAIN_MEMBER.value


class NoRestorePointError(_Coded):
    code = ErrorCode.NO_RESTORE_POINT.value


class TargetExistsError(_UsageLike):
    code = ErrorCode.TARGET_EXISTS.value


class RestoreFailedError(_Coded):
    code = ErrorCode.RESTORE_FAILED.value


class VerificationFailedError(_Coded):
    code = ErrorCode.VERIFICATION_FAILED.value


class SnapshotFailedError(_Coded):
    code = ErrorCode.SNAPSHOT_FAILED.value


class SourceBusyError(_Coded):
    code = ErrorCode.SOURCE_BUSY.value


class DestinationError(_Coded):
    code = ErrorCode.DESTINATION_ERROR.value


class DestinationUnavailableError(DestinationError):
    code = ErrorCode.DESTINATION_UNAVAILABLE.value


class DestinationFullError(DestinationError):
    code = ErrorCode.DESTINATION_FULL.value


class DestinationReadOnlyError(DestinationError):
    code = ErrorCode.DESTINATION_READ_ONLY.value


class DestinationPermissionDeniedError(DestinationError):
    code = ErrorCode.DESTINATION_PERMISSION_DENIED.value


class DestinationStaleHandleError(DestinationUnavailableError):
    code = ErrorCode.DESTINATION_STALE_HANDLE.value


class DestinationIOErrorError(DestinationUnavailableError):
    code = ErrorCode.DESTINATION_IO_ERROR.value


class CancelledError(_Coded):
    code = ErrorCode.CANCELLED.value


class ForbiddenError(_Coded):
    """The daemon refused the request for who sent it (see `[control] readers`/`admins`) or for what it
    asks (a restore outside `[restore] allowed_dirs`, an unencrypted destination)."""
    code = ErrorCode.FORBIDDEN.value


class TimedOutError(_Coded):
    """A job ran longer than its timeout and was cancelled (not the client's own wait: that is `timeout`)."""
    code = ErrorCode.TIMED_OUT.value


class StateCorruptError(_Coded):
    """The daemon's state database is damaged; `backupd catalog rebuild` repairs it."""

    code = ErrorCode.STATE_CORRUPT.value


class StateTooNewError(_Coded):
    """The daemon's state database was written by a newer backupd; run that release."""

    code = ErrorCode.STATE_TOO_NEW.value


class PartialError(_Coded):
    """A job stored its work but some copies failed (a job's error, not a reply's)."""

    code = ErrorCode.PARTIAL.value


class WorkerDiedError(_Coded):
    """A job's process died (a job's error, not a reply's)."""

    code = ErrorCode.WORKER_DIED.value


class JobInterruptedError(_Coded):
    """The daemon stopped while the job ran (a job's error, not a reply's)."""

    code = ErrorCode.INTERRUPTED.value


class InternalError(_Coded):
    """A bug in the daemon (or a reply this client cannot read)."""
    code = ErrorCode.INTERNAL_ERROR.value


class DaemonUnreachable(_Coded):
    """No daemon on the socket: the path is missing, nothing listens on it, or we may not connect."""
    code = ErrorCode.DAEMON_UNREACHABLE.value


class RequestTimeout(DaemonUnreachable):
    """Something listens on the socket but gave no answer in time, after the allowed retries."""
    code = ErrorCode.TIMEOUT.value


def _subclasses(cls: type[_Coded]) -> list[type[_Coded]]:
    out: list[type[_Coded]] = []
    for sub in cls.__subclasses__():
        out.extend([sub, *_subclasses(sub)])
    return out


ERROR_CLASSES: dict[str, type[_Coded]] = {
    cls.code: cls for cls in _subclasses(_Coded) if not cls.__name__.startswith("_")
}


def error_for(code: str, message: str, details: dict[str, Any] | None = None) -> ClientError:
    """The typed exception for an error code; an unknown code gives a ClientError carrying it."""
    cls = ERROR_CLASSES.get(code)
    return cls(message, details) if cls else ClientError(code, message, details)
