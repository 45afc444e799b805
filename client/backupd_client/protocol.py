"""The control protocol's wire vocabulary, version 1: the one definition of docs/PROTOCOL.md in code.

Owns the version, the ops and the arguments each takes, the error codes, the job statuses and their
groups, and the pure encode/decode pair for requests, replies and streamed events. `backupctl`, the
`Client` and the daemon (`backupd.daemon.control`) all import it from here, so the two sides cannot
drift apart.

This module must not depend on anything but the stdlib and msgpack (like supervisor's `states.py`):
no zmq, no backupd, no I/O, no clock. Every decoder raises `ProtocolError` and nothing else, whatever
the bytes, and decodes at most `max_bytes` of them with bounded container sizes and nesting.

    >>> frame = encode_request("r1", Op.JOB_GET, {"job_id": "j7"})
    >>> decode_request(frame)
    Request(id='r1', op=<Op.JOB_GET: 'job.get'>, args={'job_id': 'j7'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
DEFAULT_SOCKET = "/run/backupd/control.sock"
SOCKET_ENV = "BACKUPD_SOCKET"
# Requests: the daemon's default `[control] max_message_bytes`; bigger ones are dropped by ZMQ_MAXMSGSIZE.
MAX_MESSAGE_BYTES = 1 << 20
# Replies come from the daemon and can list many backups or jobs; still bounded.
MAX_REPLY_BYTES = 64 << 20
MAX_ID_LENGTH = 64
MAX_ITEMS = 1 << 16  # per array or map
MAX_DEPTH = 32  # nesting of arrays and maps

EVENT_PROGRESS = "progress"


class Op(str, Enum):
    STATUS = "status"
    HEALTH = "health"
    BACKUP_CREATE = "backup.create"
    JOB_GET = "job.get"
    JOB_LIST = "job.list"
    JOB_CANCEL = "job.cancel"
    JOB_WAIT = "job.wait"
    RESTORE_POINTS = "restore.points"
    RESTORE_NEAREST = "restore.nearest"
    RESTORE_CREATE = "restore.create"
    VALIDATE = "validate"
    SCHEDULE_ADD = "schedule.add"
    SCHEDULE_LIST = "schedule.list"
    SCHEDULE_REMOVE = "schedule.remove"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    SCHEDULE_STATS = "schedule.stats"
    DESTINATION_LIST = "destination.list"
    DESTINATION_HEALTH = "destination.health"
    DESTINATION_RESYNC = "destination.resync"
    DESTINATION_ADD = "destination.add"
    DESTINATION_ENABLE = "destination.enable"
    DESTINATION_DISABLE = "destination.disable"
    DESTINATION_REMOVE = "destination.remove"
    PRUNE = "prune"
    CONFIG_RELOAD = "config.reload"

    def __str__(self) -> str:
        return self.value


# A client must not resend these after a timeout (PROTOCOL.md, Transport): each starts a new job, or
# (adding, removing a schedule or destination) would answer a resend with an error although the first
# one worked.
RESEND_UNSAFE_OPS = frozenset({Op.BACKUP_CREATE, Op.RESTORE_CREATE, Op.VALIDATE, Op.DESTINATION_RESYNC,
                               Op.SCHEDULE_ADD, Op.SCHEDULE_REMOVE, Op.DESTINATION_ADD, Op.DESTINATION_REMOVE})
# Ops whose reply may be preceded by streamed events.
STREAMING_OPS = frozenset({Op.JOB_WAIT})


class ErrorCode(str, Enum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNSUPPORTED_PROTOCOL_VERSION = "unsupported_protocol_version"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    SHUTTING_DOWN = "shutting_down"
    UNKNOWN_SOURCE = "unknown_source"
    CONFIG_INVALID = "config_invalid"
    BAD_USAGE = "bad_usage"
    WRONG_KEY = "wrong_key"
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
    INTERNAL_ERROR = "internal_error"
    # Client side only: never on the wire.
    DAEMON_UNREACHABLE = "daemon_unreachable"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


CLIENT_SIDE_CODES = frozenset({ErrorCode.DAEMON_UNREACHABLE, ErrorCode.TIMEOUT})


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
    Op.BACKUP_CREATE: OpArgs({"source": (True, _STR), "strategy": (False, _STR), "priority": (False, _STR),
                             "tags": (False, _STRS), "description": (False, _STR), "destinations": (False, _STRS),
                             "metadata": (False, _MAP), "validate_level": (False, _STR)}),
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
}

# Numeric arguments with a floor (and never NaN or infinite).
ARG_MINIMUM: dict[str, float] = {"limit": 1, "timeout_s": 0, "max_staleness_s": 0}
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
}


# ---------------------------------------------------------------------------------------------------
# Messages


class ProtocolError(Exception):
    """A frame that is not a valid message. `request_id` is set when the frame's id could be read,
    so the daemon can still answer the right request: `frame = exc.reply()`."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.request_id = request_id
        self.details = details or {}

    def reply(self) -> bytes:
        return encode_reply_error(self.request_id, self.code, self.message, self.details)


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    op: Op
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplyError:
    code: str  # an ErrorCode value, or a code from a newer daemon
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    id: str | None  # None only on an error reply to a frame whose id was unreadable
    ok: bool
    result: Any = None
    error: ReplyError | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    event: str
    data: Any


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID_LENGTH


def _pack(obj: dict[str, Any], limit: int, code: ErrorCode) -> bytes:
    rid = obj["id"] if valid_id(obj["id"]) else None
    try:
        _check_plain(obj)
        frame = msgpack.packb(obj, use_bin_type=True)
    except ProtocolError as exc:
        raise ProtocolError(code, f"not encodable: {exc.message}", rid) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(code, f"not encodable: {exc}", rid) from None
    if len(frame) > limit:
        raise ProtocolError(code, f"message of {len(frame)} bytes exceeds the limit of {limit}", rid)
    return frame


def _unpack(frame: bytes, limit: int) -> Any:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame is {type(frame).__name__}, not bytes")
    if len(frame) > limit:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"message of {len(frame)} bytes exceeds the limit of {limit}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True,
                              max_str_len=limit, max_bin_len=limit, max_ext_len=limit,
                              max_array_len=MAX_ITEMS, max_map_len=MAX_ITEMS)
    except Exception as exc:  # msgpack raises ValueError subclasses, UnicodeDecodeError, TypeError...
        why = f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"not a msgpack message ({why})") from None
    try:
        _check_plain(obj)
    except ProtocolError as exc:
        # answer the right request when its id is readable, even if its arguments are not plain data
        rid = obj.get("id") if isinstance(obj, dict) else None
        exc.request_id = rid if valid_id(rid) else None
        raise
    return obj


def _check_plain(obj: Any) -> None:
    """JSON's data model only: nil, bool, int, float, str, arrays and maps with str keys, nested at most
    MAX_DEPTH deep (iterative: a hostile frame can be nested deeper than Python's recursion limit)."""
    stack = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ProtocolError(ErrorCode.BAD_REQUEST, f"map key {key!r} is not a string")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"{type(value).__name__} values are not part of the protocol")


def encode_request(id: str, op: Op | str, args: dict[str, Any] | None = None) -> bytes:
    """One request frame. Raises ProtocolError(bad_request) for an invalid id or op, or an oversized request."""
    if not valid_id(id):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"request id must be a string of 1..{MAX_ID_LENGTH} chars")
    try:
        op = Op(op)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {op!r}", id) from None
    return _pack({"v": PROTOCOL_VERSION, "id": id, "op": op.value, "args": dict(args or {})},
                 MAX_MESSAGE_BYTES, ErrorCode.BAD_REQUEST)


def decode_request(frame: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Request:
    """Parse and check one request frame: the envelope, the op, and its arguments' names and types.
    Optional arguments sent as nil are dropped. Raises ProtocolError (bad_request, unknown_op,
    unsupported_protocol_version), carrying the request id whenever it was readable."""
    msg = _unpack(frame, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a request is a map, not {_kind(msg)}")
    rid = msg.get("id") if valid_id(msg.get("id")) else None

    def bad(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST, **details: Any) -> ProtocolError:
        return ProtocolError(code, message, rid, details)

    if "v" not in msg:
        raise bad("missing field 'v' (protocol version)")
    if not _is_version(msg["v"]):
        raise bad(f"protocol version {_short(msg['v'])} is not supported (this side speaks {PROTOCOL_VERSION})",
                  ErrorCode.UNSUPPORTED_PROTOCOL_VERSION, supported=list(SUPPORTED_VERSIONS))
    if rid is None:
        raise bad(f"field 'id' must be a string of 1..{MAX_ID_LENGTH} chars")
    extra = sorted(set(msg) - {"v", "id", "op", "args"})
    if extra:
        raise bad(f"unexpected field(s): {', '.join(extra)}", fields=extra)
    if not isinstance(msg.get("op"), str):
        raise bad("field 'op' must be a string")
    try:
        op = Op(msg["op"])
    except ValueError:
        raise bad(f"unknown op {msg['op'][:80]!r}", ErrorCode.UNKNOWN_OP, op=msg["op"][:80]) from None
    if not isinstance(msg.get("args"), dict):
        raise bad("field 'args' must be a map")
    return Request(rid, op, check_args(op, msg["args"], rid))


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
            raise bad(f"argument {name!r} must be {want}, not {_kind(value)}", name)
        if types is _STRS and not all(isinstance(item, str) for item in value):
            raise bad(f"argument {name!r} must be a list of strings", name)
        if name in ARG_MINIMUM and not (math.isfinite(value) and value >= ARG_MINIMUM[name]):
            raise bad(f"argument {name!r} must be a finite number >= {ARG_MINIMUM[name]:g}, not {value!r}", name)
        if name in ARG_CHOICES and value not in ARG_CHOICES[name]:
            raise bad(f"argument {name!r} must be one of {', '.join(ARG_CHOICES[name])}, not {value[:80]!r}", name)
        out[name] = value
    for name, (required, _) in spec.fields.items():
        if required and name not in out:
            raise bad(f"missing argument {name!r}", name)
    if spec.one_of and sum(name in out for name in spec.one_of) != 1:
        raise bad(f"give exactly one of {', '.join(repr(n) for n in spec.one_of)}", spec.one_of[0])
    return out


def encode_reply_ok(id: str, result: Any) -> bytes:
    """The final, successful reply. Raises ProtocolError(internal_error) if `result` is not plain data."""
    _check_reply_id(id)
    return _pack({"v": PROTOCOL_VERSION, "id": id, "ok": True, "result": result}, MAX_REPLY_BYTES,
                 ErrorCode.INTERNAL_ERROR)


def encode_reply_error(id: str | None, code: ErrorCode | str, message: str,
                       details: dict[str, Any] | None = None) -> bytes:
    """An error reply; `id` is None only when the request's id could not be read."""
    if id is not None:
        _check_reply_id(id)
    error = {"code": str(code), "message": str(message), "details": details or {}}
    return _pack({"v": PROTOCOL_VERSION, "id": id, "ok": False, "error": error}, MAX_REPLY_BYTES,
                 ErrorCode.INTERNAL_ERROR)


def encode_event(id: str, event: str, data: Any) -> bytes:
    _check_reply_id(id)
    return _pack({"v": PROTOCOL_VERSION, "id": id, "event": event, "data": data}, MAX_REPLY_BYTES,
                 ErrorCode.INTERNAL_ERROR)


def decode_reply(frame: bytes, max_bytes: int = MAX_REPLY_BYTES) -> Reply | Event:
    """Parse one frame from the daemon: a final Reply or a streamed Event. Raises ProtocolError only:
    unsupported_protocol_version for another `v`, bad_request for anything else malformed."""
    msg = _unpack(frame, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a reply is a map, not {_kind(msg)}")
    rid = msg.get("id") if valid_id(msg.get("id")) else None
    if not _is_version(msg.get("v")):
        raise ProtocolError(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
                            f"reply in protocol version {_short(msg.get('v'))}; this side speaks {PROTOCOL_VERSION}",
                            rid, {"supported": list(SUPPORTED_VERSIONS)})

    def bad(message: str) -> ProtocolError:
        return ProtocolError(ErrorCode.BAD_REQUEST, f"malformed reply: {message}", rid)

    if "event" in msg:
        if rid is None:
            raise bad(f"field 'id' must be a string of 1..{MAX_ID_LENGTH} chars")
        if set(msg) != {"v", "id", "event", "data"} or not isinstance(msg["event"], str):
            raise bad("an event is {v, id, event: str, data}")
        return Event(rid, msg["event"], msg["data"])
    if not isinstance(msg.get("ok"), bool):
        raise bad("field 'ok' must be a boolean")
    if msg["ok"]:
        if rid is None:
            raise bad(f"field 'id' must be a string of 1..{MAX_ID_LENGTH} chars")
        if set(msg) != {"v", "id", "ok", "result"}:
            raise bad("a successful reply is {v, id, ok: true, result}")
        return Reply(rid, True, result=msg["result"])
    if msg.get("id") is not None and rid is None:
        raise bad(f"field 'id' must be nil or a string of 1..{MAX_ID_LENGTH} chars")
    err = msg.get("error")
    if set(msg) != {"v", "id", "ok", "error"} or not isinstance(err, dict):
        raise bad("an error reply is {v, id, ok: false, error: {code, message, details}}")
    details = err.get("details", {})
    if not (isinstance(err.get("code"), str) and isinstance(err.get("message"), str)
            and isinstance(details, dict)):
        raise bad("error must be {code: str, message: str, details: map}")
    return Reply(rid, False, error=ReplyError(err["code"], err["message"], details))


def _check_reply_id(id: Any) -> None:
    if not valid_id(id):
        raise ProtocolError(ErrorCode.INTERNAL_ERROR, f"reply id must be a string of 1..{MAX_ID_LENGTH} chars")


def _is_version(value: Any) -> bool:
    return type(value) is int and value in SUPPORTED_VERSIONS


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return {dict: "a map", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a float", type(None): "nil"}.get(type(value), type(value).__name__)
