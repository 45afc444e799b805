"""The control protocol's frames: the bounded msgpack codec for requests, replies and streamed events.

Pure: stdlib and msgpack only, no zmq, no backupd, no I/O, no clock. Every decoder raises
`ProtocolError` and nothing else, whatever the bytes, and decodes at most `max_bytes` of them with
bounded container sizes and nesting. `backupd_client.protocol` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .errorcodes import ErrorCode
from .ops import Op

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# Requests: the daemon's default `[control] max_message_bytes`; bigger ones are dropped by ZMQ_MAXMSGSIZE.
MAX_MESSAGE_BYTES = 1 << 20
# Replies come from the daemon and can list many backups or jobs; still bounded.
MAX_REPLY_BYTES = 64 << 20
MAX_ID_LENGTH = 64
MAX_ITEMS = 1 << 16  # per array or map
MAX_DEPTH = 32  # nesting of arrays and maps


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


def decode_envelope(frame: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Request:
    """Parse one request frame and check its envelope and op; its arguments are a map, not yet checked
    (`protocol.decode_request` does that). Raises ProtocolError (bad_request, unknown_op,
    unsupported_protocol_version), carrying the request id whenever it was readable."""
    msg = _unpack(frame, max_bytes)
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a request is a map, not {kind_of(msg)}")
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
    return Request(rid, op, msg["args"])


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
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"a reply is a map, not {kind_of(msg)}")
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


def kind_of(value: Any) -> str:
    """How an error message names the type of `value` ("a map", "nil", ...)."""
    return {dict: "a map", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a float", type(None): "nil"}.get(type(value), type(value).__name__)

