"""The control protocol's error codes (docs/PROTOCOL.md, Error codes): every code a client can meet in an
error reply or a job's `error.code`, plus the two `backupctl` makes itself. backupd's catalogue
(in `backupd/errors.py`, docs/ERRORS.md) defines each one's exit code and retryability; a test checks
the two sets agree."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNSUPPORTED_PROTOCOL_VERSION = "unsupported_protocol_version"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    SHUTTING_DOWN = "shutting_down"
    UNKNOWN_SOURCE = "unknown_source"
    UNKNOWN_DESTINATION = "unknown_destination"
    CONFIG_INVALID = "config_invalid"
    BAD_USAGE = "bad_usage"
    WRONG_KEY = "wrong_key"
    KEY_UNUSABLE = "key_unusable"
    CORRUPT_ARTIFACT = "corrupt_artifact"
    UNSUPPORTED_FORMAT_VERSION = "unsupported_format_version"
    MISSING_CHAIN_MEMBER = "missing_chain_member"
    NO_RESTORE_POINT = "no_restore_point"
    TARGET_EXISTS = "target_exists"
    RESTORE_FAILED = "restore_failed"
    VERIFICATION_FAILED = "verification_failed"
    SNAPSHOT_FAILED = "snapshot_failed"
    SOURCE_BUSY = "source_busy"
    DESTINATION_ERROR = "destination_error"
    DESTINATION_UNAVAILABLE = "destination_unavailable"
    DESTINATION_FULL = "destination_full"
    DESTINATION_READ_ONLY = "destination_read_only"
    DESTINATION_PERMISSION_DENIED = "destination_permission_denied"
    DESTINATION_STALE_HANDLE = "destination_stale_handle"
    DESTINATION_IO_ERROR = "destination_io_error"
    CANCELLED = "cancelled"
    FORBIDDEN = "forbidden"
    TIMED_OUT = "timed_out"  # a job ran longer than its timeout and was cancelled
    STATE_CORRUPT = "state_corrupt"
    STATE_TOO_NEW = "state_too_new"
    PARTIAL = "partial"  # a job's error: some copies failed
    WORKER_DIED = "worker_died"  # a job's error: its process died
    INTERRUPTED = "interrupted"  # a job's error: the daemon stopped while it ran
    INTERNAL_ERROR = "internal_error"
    # Client side only: never on the wire.
    DAEMON_UNREACHABLE = "daemon_unreachable"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


CLIENT_SIDE_CODES = frozenset({ErrorCode.DAEMON_UNREACHABLE, ErrorCode.TIMEOUT})
