"""The control protocol's wire vocabulary, version 1: the one definition of docs/PROTOCOL.md in code.

Owns the job statuses and their groups, the closed sets of argument values, the arguments each op
takes and their check, and re-exports the ops (`ops`), the error codes (`errorcodes`) and the frame
codec (`codec`), so `from backupd_client.protocol import ...` names everything. `backupctl`, the
`Client` and the daemon (`backupd.daemon.control`) all import it from here, so the two sides cannot
drift apart.

These modules must not depend on anything but the stdlib, msgpack and each other: no zmq, no
backupd, no I/O, no clock. Every decoder raises `ProtocolError` and nothing else, whatever the bytes.

    >>> frame = encode_request("r1", Op.JOB_GET, {"job_id": "j7"})
    >>> decode_request(frame)
    Request(id='r1', op=<Op.JOB_GET: 'job.get'>, args={'job_id': 'j7'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .codec import (MAX_DEPTH, MAX_ID_LENGTH, MAX_ITEMS, MAX_MESSAGE_BYTES, MAX_REPLY_BYTES, PROTOCOL_VERSION,
                    SUPPORTED_VERSIONS, Event, ProtocolError, Reply, ReplyError, Request, decode_envelope,
                    decode_reply, encode_event, encode_reply_error, encode_reply_ok, encode_request, kind_of,
                    valid_id)
from .errorcodes import CLIENT_SIDE_CODES, ErrorCode
from .ops import RESEND_UNSAFE_OPS, STREAMING_OPS, Op

__all__ = [
    "MAX_DEPTH", "MAX_ID_LENGTH", "MAX_ITEMS", "MAX_MESSAGE_BYTES", "MAX_REPLY_BYTES", "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS", "Event", "ProtocolError", "Reply", "ReplyError", "Request", "decode_envelope",
    "decode_reply", "encode_event", "encode_reply_error", "encode_reply_ok", "encode_request", "valid_id",
    "CLIENT_SIDE_CODES", "ErrorCode", "RESEND_UNSAFE_OPS", "STREAMING_OPS", "Op",
    "DEFAULT_SOCKET", "SOCKET_ENV", "EVENT_PROGRESS", "EVENT_EVENT", "JobStatus", "ACTIVE_STATUSES", "FINAL_STATUSES",
    "SUCCESS_STATUSES", "FAILED_STATUSES", "JOB_KINDS", "PRIORITIES", "STRATEGIES", "VALIDATION_LEVELS",
    "COPY_SELECTIONS", "SCHEDULE_JOBS", "NOTIFY_ON", "OpArgs", "OP_ARGS", "ARG_MINIMUM", "ARG_CHOICES", "check_args",
    "decode_request",
]  # fmt: skip

DEFAULT_SOCKET = "/run/backupd/control.sock"
SOCKET_ENV = "BACKUPD_SOCKET"

EVENT_PROGRESS = "progress"
EVENT_EVENT = "event"  # a streamed event of events.subscribe: {"event": <event>, "dropped": n}


class JobStatus(str, Enum):
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

    def __str__(self) -> str:
        return self.value


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING})
FINAL_STATUSES = frozenset(JobStatus) - ACTIVE_STATUSES
SUCCESS_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_WARNINGS})
FAILED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.PARTIAL, JobStatus.TIMED_OUT})  # a CLI waiting on one exits 1

JOB_KINDS = ("backup", "restore", "validate", "prune", "resync")
PRIORITIES = ("normal", "high")
STRATEGIES = ("auto", "full", "incremental", "differential")
VALIDATION_LEVELS = ("quick", "standard", "deep")
COPY_SELECTIONS = ("priority", "most_reliable")
SCHEDULE_JOBS = ("backup", "prune")
NOTIFY_ON = ("failure", "success", "completion")  # which outcomes a job's own notifiers get


# ---------------------------------------------------------------------------------------------------
# Arguments of each op: name -> (required, accepted types). None for an optional argument means absent.

_STR = (str,)
_INT = (int,)
_NUM = (int, float)
_BOOL = (bool,)
_STRS = (list,)  # a list of strings
_MAP = (dict,)


@dataclass(frozen=True)
class OpArgs:
    """The arguments an op takes: name -> (required, accepted types)."""

    fields: dict[str, tuple[bool, tuple[type, ...]]] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()  # exactly one of these must be given
    open: bool = False  # other arguments are allowed (checked by the daemon)


OP_ARGS: dict[Op, OpArgs] = {
    Op.STATUS: OpArgs(),
    Op.HEALTH: OpArgs(),
    Op.METRICS: OpArgs(),
    Op.BACKUP_CREATE: OpArgs({"source": (True, _STR), "strategy": (False, _STR), "priority": (False, _STR),
                             "tags": (False, _STRS), "description": (False, _STR), "destinations": (False, _STRS),
                             "metadata": (False, _MAP), "validate_level": (False, _STR),
                             "notify": (False, _STRS), "notify_on": (False, _STRS)}),
    Op.JOB_GET: OpArgs({"job_id": (True, _STR)}),
    Op.JOB_LIST: OpArgs({"status": (False, _STR), "source": (False, _STR), "kind": (False, _STR),
                        "limit": (False, _INT)}),
    Op.JOB_CANCEL: OpArgs({"job_id": (True, _STR)}),
    Op.JOB_WAIT: OpArgs({"job_id": (True, _STR), "timeout_s": (False, _NUM), "progress": (False, _BOOL)}),
    Op.RESTORE_POINTS: OpArgs({"source": (False, _STR)}),
    Op.RESTORE_NEAREST: OpArgs({"source": (True, _STR), "at": (True, _STR)}),
    Op.RESTORE_CREATE: OpArgs({"source": (True, _STR), "backup_id": (False, _STR), "at": (False, _STR),
                              "to": (True, _STR), "tables": (False, _STRS), "overwrite": (False, _BOOL),
                              "copy_selection": (False, _STR)},
                             one_of=("backup_id", "at")),
    Op.VALIDATE: OpArgs({"backup_id": (True, _STR), "level": (False, _STR), "destination": (False, _STR),
                        "all_copies": (False, _BOOL), "sample_percent": (False, _NUM)}),
    Op.SCHEDULE_ADD: OpArgs({"name": (True, _STR), "job": (False, _STR), "source": (True, _STR), "cron": (True, _STR),
                            "strategy": (False, _STR), "timezone": (False, _STR), "description": (False, _STR),
                            "tags": (False, _STRS), "destinations": (False, _STRS), "enabled": (False, _BOOL),
                            "retry": (False, _MAP),
                            "conditions": (False, _MAP), "validate_after_backup": (False, (bool, str)),
                            "max_staleness_s": (False, _NUM), "timeout": (False, (str, int, float))}, open=True),
    Op.SCHEDULE_LIST: OpArgs(),
    Op.SCHEDULE_REMOVE: OpArgs({"name": (True, _STR)}),
    Op.SCHEDULE_PAUSE: OpArgs({"name": (True, _STR)}),
    Op.SCHEDULE_RESUME: OpArgs({"name": (True, _STR)}),
    Op.SCHEDULE_STATS: OpArgs({"name": (False, _STR)}),
    Op.DESTINATION_LIST: OpArgs(),
    Op.DESTINATION_HEALTH: OpArgs({"name": (False, _STR), "refresh": (False, _BOOL)}),
    Op.DESTINATION_RESYNC: OpArgs({"source": (False, _STR)}),
    Op.DESTINATION_ADD: OpArgs({"destination": (True, _MAP)}),
    Op.DESTINATION_ENABLE: OpArgs({"name": (True, _STR)}),
    Op.DESTINATION_DISABLE: OpArgs({"name": (True, _STR)}),
    Op.DESTINATION_REMOVE: OpArgs({"name": (True, _STR), "force": (False, _BOOL)}),
    Op.PRUNE: OpArgs({"dry_run": (True, _BOOL)}),
    Op.CONFIG_RELOAD: OpArgs(),
    Op.INVENTORY: OpArgs({"days": (False, _INT)}),
    Op.EVENTS_SUBSCRIBE: OpArgs({"types": (False, _STRS), "source": (False, _STR), "history": (False, _INT),
                                "follow": (False, _BOOL), "timeout_s": (False, _NUM), "max_events": (False, _INT),
                                "queue_size": (False, _INT), "subscription": (False, _STR)}),
    Op.NOTIFY_LIST: OpArgs(),
    Op.NOTIFY_TEST: OpArgs({"name": (True, _STR)}),
}

# Numeric arguments with a floor (and never NaN or infinite).
ARG_MINIMUM: dict[str, float] = {"limit": 1, "days": 1, "timeout_s": 0, "max_staleness_s": 0, "history": 0,
                                 "max_events": 1, "queue_size": 1}
# Arguments with a closed set of values.
ARG_CHOICES: dict[str, tuple[str, ...]] = {
    "strategy": STRATEGIES,
    "priority": PRIORITIES,
    "level": VALIDATION_LEVELS,
    "validate_level": VALIDATION_LEVELS,
    "kind": JOB_KINDS,
    "status": tuple(s.value for s in JobStatus),
    "copy_selection": COPY_SELECTIONS,
    "job": SCHEDULE_JOBS,
    "notify_on": NOTIFY_ON,  # each item of the list
}


def check_args(op: Op, args: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """`args` checked against OP_ARGS[op]; returns them without the optional ones given as nil."""
    spec = OP_ARGS[op]

    def bad(message: str, arg: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_REQUEST, f"{op.value}: {message}", request_id, {"arg": arg})

    out: dict[str, Any] = {}
    for name, value in args.items():
        if name not in spec.fields:
            if not spec.open:
                raise bad(f"unexpected argument {name[:80]!r}", name[:80])
            out[name] = value
            continue
        required, types = spec.fields[name]
        if value is None and not required:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join("list of strings" if t is list else t.__name__ for t in types)
            raise bad(f"argument {name!r} must be {want}, not {kind_of(value)}", name)
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise bad(f"argument {name!r} must be a list of strings", name)
        if (name in ARG_MINIMUM and isinstance(value, (int, float))
                and not (math.isfinite(value) and value >= ARG_MINIMUM[name])):
            raise bad(f"argument {name!r} must be a finite number >= {ARG_MINIMUM[name]:g}, not {value!r}", name)
        for item in value if isinstance(value, list) else [value]:
            if name in ARG_CHOICES and item not in ARG_CHOICES[name]:
                raise bad(f"argument {name!r} must be one of {', '.join(ARG_CHOICES[name])}, not {str(item)[:80]!r}",
                          name)
        out[name] = value
    for name, (required, _) in spec.fields.items():
        if required and name not in out:
            raise bad(f"missing argument {name!r}", name)
    if spec.one_of and sum(name in out for name in spec.one_of) != 1:
        raise bad(f"give exactly one of {', '.join(repr(n) for n in spec.one_of)}", spec.one_of[0])
    return out


def decode_request(frame: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Request:
    """Parse and check one request frame: the envelope, the op, and its arguments' names and types.
    Optional arguments sent as nil are dropped. Raises ProtocolError (bad_request, unknown_op,
    unsupported_protocol_version), carrying the request id whenever it was readable."""
    request = decode_envelope(frame, max_bytes)
    return Request(request.id, request.op, check_args(request.op, request.args, request.id))
