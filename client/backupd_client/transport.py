"""The transport under `Client` (docs/PROTOCOL.md, Transport): one DEALER socket, one frame per
request, replies matched by request id (others are discarded); streamed ops in slices.

Timeouts follow the zguide's Lazy Pirate: when no reply comes in time the socket is closed with
linger 0, reopened, and the request resent, up to `retries` times, except for the ops that start a
job (`RESEND_UNSAFE_OPS`), which are sent once. Before the first send, and after every try that
timed out, the socket path is probed so a daemon that is not running is reported at once, naming
the path and the fix, instead of after the whole timeout.

Not thread-safe: use one Client per thread.
"""

from __future__ import annotations

import os
import socket
import stat
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any, Self

import zmq

from . import errors
from .errors import FIX_DAEMON, BadUsageError, DaemonUnreachable, RequestTimeout, error_for
from .protocol import (DEFAULT_SOCKET, MAX_REPLY_BYTES, RESEND_UNSAFE_OPS, SOCKET_ENV, ErrorCode, Event, Op,
                       ProtocolError, Reply, check_args, decode_reply, encode_request)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 2  # so three tries in all
# job.wait is sent in slices of this many seconds, so a daemon that died mid-wait is noticed.
WAIT_SLICE_S = 30.0
FIX_PERMISSION = "run as root or as a member of the group that owns the socket ([control] group)"


def resolve_socket(socket_path: str | os.PathLike[str] | None = None) -> str:
    """The socket to use: the argument, else $BACKUPD_SOCKET, else DEFAULT_SOCKET."""
    return os.fspath(socket_path) if socket_path else (os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET)


def probe_socket(path: str) -> tuple[str, str] | None:
    """None if something accepts connections on the Unix socket `path`, else (why not, the fix)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such socket", FIX_DAEMON
    except PermissionError:
        return "permission denied on its directory", FIX_PERMISSION
    except OSError as exc:
        return exc.strerror or str(exc), FIX_DAEMON
    if not stat.S_ISSOCK(mode):
        return "it is not a socket", f"point --socket or ${SOCKET_ENV} at backupd's control socket"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return "nothing is listening on it (left over from a daemon that stopped?)", FIX_DAEMON
    except PermissionError:
        return "permission denied", FIX_PERMISSION
    except OSError as exc:
        return exc.strerror or str(exc), FIX_DAEMON
    finally:
        probe.close()
    return None


class Transport:
    """The connection to the daemon and the request/reply and streaming machinery `Client`'s ops use."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, *, context: zmq.Context | None = None):
        target = resolve_socket(socket_path)
        if "://" in target:  # an endpoint such as tcp://host:port (tests, tunnels)
            self.endpoint = target
            path = target.removeprefix("ipc://") if target.startswith("ipc://") else None
        else:
            self.endpoint, path = f"ipc://{target}", target
        # Only a filesystem path can be probed (not tcp://, not an abstract "@name").
        self.socket_path = target if path is None else path
        self._probe_path = path if path and not path.startswith("@") else None
        if timeout <= 0:
            raise BadUsageError(f"timeout must be positive, not {timeout!r}")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket | None = None

    # -- plumbing ------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _unreachable(self, why: str, fix: str) -> DaemonUnreachable:
        return DaemonUnreachable(f"cannot reach backupd at {self.socket_path}: {why}; {fix}",
                                 {"socket": self.socket_path})

    def _check_reachable(self) -> None:
        if self._probe_path is not None:
            problem = probe_socket(self._probe_path)
            if problem is not None:
                raise self._unreachable(*problem)

    def _connected(self) -> zmq.Socket:
        if self._socket is None:
            self._check_reachable()
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
            try:
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                raise self._unreachable(str(exc), f"point --socket or ${SOCKET_ENV} at backupd's control socket")
            self._socket = sock
        return self._socket

    def call(self, op: Op | str, args: dict[str, Any] | None = None, *, timeout: float | None = None,
             on_event: Callable[[Event], None] | None = None) -> Any:
        """Send one request and return its result. `timeout` is the wait for each reply (and between
        streamed events, which go to `on_event`); it defaults to the client's timeout."""
        try:
            op = Op(op)
        except ValueError:
            raise errors.UnknownOpError(f"unknown op {op!r}") from None
        request_id, frame = _frame(op, args or {})
        wait = self.timeout if timeout is None else max(0.001, timeout)
        tries = 1 if op in RESEND_UNSAFE_OPS else 1 + self.retries
        for _ in range(tries):
            sock = self._connected()
            try:
                sock.send(frame, zmq.DONTWAIT)
            except zmq.Again:
                pass  # nothing to send to: counts as a try that timed out
            else:
                found, result = self._await(sock, request_id, wait, on_event)
                if found:
                    return result
            self.close()  # Lazy Pirate: a fresh socket for the next try, nothing queued on the old one
            self._check_reachable()
        message = f"no answer from backupd at {self.socket_path} within {wait:g}s"
        if tries > 1:
            message += f" ({tries} tries)"
        if op in RESEND_UNSAFE_OPS:
            message += f"; {op.value} was sent once and may have started a job: check `backupctl jobs` before retrying"
        raise RequestTimeout(f"{message}; is backupd healthy? check: systemctl status backupd",
                             {"socket": self.socket_path, "op": op.value, "timeout_s": wait, "tries": tries})

    def _await(self, sock: zmq.Socket, request_id: str, wait: float,
               on_event: Callable[[Event], None] | None) -> tuple[bool, Any]:
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            if not sock.poll(max(1, int(remaining * 1000)), zmq.POLLIN):
                break
            message = self._receive(sock)
            if message is None or message.id != request_id:
                continue  # a late reply to an earlier request (or to another client's resend)
            if isinstance(message, Event):
                if on_event is not None:
                    on_event(message)
                deadline = time.monotonic() + wait  # the daemon is alive: wait afresh
                continue
            if message.ok:
                return True, message.result
            assert message.error is not None
            raise error_for(message.error.code, message.error.message, message.error.details)
        return False, None

    def _receive(self, sock: zmq.Socket) -> Reply | Event | None:
        """The next frame from the daemon, decoded (None: not a single frame)."""
        frames = sock.recv_multipart()
        if len(frames) != 1:
            return None
        try:
            return decode_reply(frames[0])
        except ProtocolError as exc:
            if exc.code is ErrorCode.UNSUPPORTED_PROTOCOL_VERSION:
                raise errors.UnsupportedProtocolVersionError(
                    f"backupd at {self.socket_path} answered in another protocol version: {exc.message}; "
                    "install the backupd-client that matches the daemon", exc.details) from None
            raise errors.InternalError(f"unreadable reply from backupd at {self.socket_path}: {exc.message}",
                                       {"socket": self.socket_path}) from None

    def _stream(self, op: Op, args: dict[str, Any], wait: float) -> Generator[Event, None, Any]:
        """Send one streaming request, yield its events as they come, return its final result; sent
        once (a stream is not resent), `wait` being the longest silence between two frames."""
        request_id, frame = _frame(op, args)
        sock = self._connected()
        try:
            sock.send(frame, zmq.DONTWAIT)
        except zmq.Again:
            self.close()
            raise RequestTimeout(f"cannot send to backupd at {self.socket_path}", {"socket": self.socket_path})
        while sock.poll(max(1, int(wait * 1000)), zmq.POLLIN):
            message = self._receive(sock)
            if message is None or message.id != request_id:
                continue
            if isinstance(message, Event):
                yield message
                continue
            if message.ok:
                return message.result
            assert message.error is not None
            raise error_for(message.error.code, message.error.message, message.error.details)
        self.close()
        raise RequestTimeout(f"no answer from backupd at {self.socket_path} within {wait:g}s; is backupd healthy?",
                             {"socket": self.socket_path, "op": op.value, "timeout_s": wait})

    # -- ops ---------------------------------------------------------------------------------------------

def _frame(op: Op, args: dict[str, Any]) -> tuple[str, bytes]:
    """A new request id and the request's frame, its arguments checked (nil ones left out)."""
    args = {name: value for name, value in args.items() if value is not None}
    request_id = uuid.uuid4().hex
    try:
        check_args(op, args)
        return request_id, encode_request(request_id, op, args)
    except ProtocolError as exc:
        raise error_for(exc.code, exc.message, exc.details) from None
