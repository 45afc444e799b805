"""The control socket: a ZeroMQ ROUTER on an ipc:// path, msgpack requests decoded by
backupd_client.protocol, one handler per op. Only this thread touches the socket; other threads hand
it job updates through a queue, which it turns into streamed progress events and `job.wait` replies.

Bad frames get an error reply (or are dropped when they carry no identity) and are counted; no
request can crash or block the loop. Every request is checked against the role its op needs, with the
peer's credentials libzmq read from the socket (see `peer_address`), before its handler runs.
"""

from __future__ import annotations

import grp
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import zmq
from backupd_client.protocol import (EVENT_EVENT, EVENT_PROGRESS, ErrorCode, Op, ProtocolError, decode_request, encode_event,
                                     encode_reply_error, encode_reply_ok)

from backupd.core.events import EventFilter, check_pattern
from backupd.daemon.events import QUEUE_SIZE, RECENT_SIZE, EventBus, Subscription
from backupd.daemon.handlers import Handlers
from backupd.daemon.jobs import FINAL
from backupd.daemon.peers import PeerLimit
from backupd.daemon.supervisor import Supervisor
from backupd.errors import BackupdError, NotFound, UsageError

log = structlog.get_logger("backupd.control")
HANDSHAKE_MS = 5000  # a connection that has not completed the ZMTP greeting by then is closed
STREAM_SLICE_S = 30.0  # an events.subscribe stream's default length; the client asks again to go on
STREAM_MAX_EVENTS = 100  # events sent per slice at most: a client that stops reading holds no more in ZMQ
IDLE_S = 60.0  # a subscription not resumed this long after its last slice is dropped


@dataclass
class _Waiter:
    identity: bytes
    request_id: str
    progress: bool
    deadline: float | None


@dataclass
class _Stream:
    identity: bytes
    request_id: str
    sub: Subscription
    deadline: float
    remaining: int
    follow: bool
    delivered: int = 0


class ControlServer:
    def __init__(self, path: Path, *, group: str | None, max_bytes: int, handlers: Handlers, supervisor: Supervisor,
                 events: EventBus, max_peers: int = 256):
        """`handlers` answer the ops; `supervisor` gives the job snapshots `job.wait` replies with;
        `events` the subscriptions `events.subscribe` streams."""
        self.path = Path(path)
        self.group = group
        self.max_bytes = max_bytes
        self.max_peers = max_peers
        self.peers: PeerLimit | None = None
        self.handlers = handlers
        self.supervisor = supervisor
        self.rejected = 0
        self._updates: queue.Queue[dict[str, Any]] = queue.Queue()
        self._waiters: dict[str, list[_Waiter]] = {}
        self.events = events
        self._streams: list[_Stream] = []
        self._idle: dict[str, float] = {}  # subscription id -> monotonic time its last slice ended
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx = zmq.Context()
        self._ctx.linger = 0
        self._sock: zmq.Socket | None = None

    def bind(self) -> None:
        """Create the socket directory (0750) and bind the socket (0660), owned by the service group."""
        gid = grp.getgrnam(self.group).gr_gid if self.group else -1
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o750)
        os.chown(directory, -1, gid)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise BackupdError(f"{self.path} exists and is not a socket", hint="remove it or choose another [control] socket")
            self.path.unlink()  # stale: we hold the daemon lock, so no live daemon owns it
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
        old = os.umask(0o117)
        try:
            sock.bind(f"ipc://{self.path}")
        finally:
            os.umask(old)
        self.peers = PeerLimit(sock, str(self.path), self.max_peers)
        os.chmod(self.path, 0o660)
        os.chown(self.path, -1, gid)
        self._sock = sock

    def job_changed(self, job: dict[str, Any]) -> None:
        """Listener for the supervisor (any thread)."""
        if job["job_id"] in self._waiters:
            self._updates.put(job)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.peers is not None:
            self.peers.close()
        if self._sock is not None:
            self._sock.close(linger=0)
        self._ctx.term()
        self.path.unlink(missing_ok=True)

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        assert self.peers is not None
        poller.register(self.peers.monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(20))
                self.peers.drain()
                if sock in ready:
                    for _ in range(100):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle([f.bytes for f in frames], peer_address(frames[-1]))
                self._drain_updates()
                self._expire_waiters()
                self._pump_streams()
            except Exception as exc:  # the loop must survive anything
                log.error("control_loop_error", error=f"{type(exc).__name__}: {exc}")

    def _send(self, identity: bytes, frame: bytes) -> None:
        if self._sock is None:  # closed by stop(): the reply has nowhere to go
            log.warning("control_reply_dropped", error="control socket closed")
            return
        try:
            self._sock.send_multipart([identity, frame], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("control_reply_dropped", error=str(exc))

    def _reject(self, identity: bytes | None, err: ProtocolError) -> None:
        self.rejected += 1
        log.warning("control_request_rejected", code=err.code.value, message=err.message[:200])
        if identity is not None:
            self._send(identity, err.reply())

    def _handle(self, frames: list[bytes], peer: str | None = None) -> None:
        if len(frames) < 2:
            self._reject(None, ProtocolError(ErrorCode.BAD_REQUEST, "frame without identity or payload"))
            return
        identity, body = frames[0], frames[1:]
        if len(body) == 2 and body[0] == b"":
            body = body[1:]  # a REQ-style empty delimiter
        if len(body) != 1:
            self._reject(identity, ProtocolError(ErrorCode.BAD_REQUEST, f"expected 1 payload frame, got {len(body)}"))
            return
        try:
            req = decode_request(body[0], self.max_bytes)
        except ProtocolError as err:
            self._reject(identity, err)
            return
        try:
            self.handlers.authorize(req.op, peer)
            if req.op == Op.JOB_WAIT:
                self._wait(identity, req.id, req.args)
                return
            if req.op == Op.EVENTS_SUBSCRIBE:
                self._subscribe(identity, req.id, req.args)
                return
            result = self.handlers.table[req.op](req.args)
            frame = encode_reply_ok(req.id, result)
        except BackupdError as exc:
            frame = encode_reply_error(req.id, exc.code, str(exc), exc.details)
        except ProtocolError as exc:
            frame = encode_reply_error(req.id, exc.code, exc.message, exc.details)
        except Exception as exc:
            log.error("control_handler_error", op=req.op.value, error=f"{type(exc).__name__}: {exc}")
            frame = encode_reply_error(req.id, ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        self._send(identity, frame)

    def _wait(self, identity: bytes, request_id: str, args: dict[str, Any]) -> None:
        job = self.supervisor.get(args["job_id"])
        if job["status"] in FINAL:
            self._send(identity, encode_reply_ok(request_id, job))
            return
        timeout = args.get("timeout_s")
        waiter = _Waiter(identity, request_id, bool(args.get("progress")),
                         time.monotonic() + float(timeout) if timeout is not None else None)
        self._waiters.setdefault(job["job_id"], []).append(waiter)
        if waiter.progress:
            self._send(identity, encode_event(request_id, EVENT_PROGRESS, job))
        # the job may have finished between get() and registration
        self._updates.put(self.supervisor.get(job["job_id"]))

    def _drain_updates(self) -> None:
        while True:
            try:
                job = self._updates.get_nowait()
            except queue.Empty:
                return
            waiters = self._waiters.get(job["job_id"], [])
            final = job["status"] in FINAL
            for w in waiters:
                if final:
                    self._send(w.identity, encode_reply_ok(w.request_id, job))
                elif w.progress:
                    self._send(w.identity, encode_event(w.request_id, EVENT_PROGRESS, job))
            if final:
                self._waiters.pop(job["job_id"], None)

    def _expire_waiters(self) -> None:
        now = time.monotonic()
        for job_id, waiters in list(self._waiters.items()):
            due = [w for w in waiters if w.deadline is not None and w.deadline <= now]
            if not due:
                continue
            job = self.supervisor.get(job_id)
            for w in due:
                self._send(w.identity, encode_reply_ok(w.request_id, job))
                waiters.remove(w)
            if not waiters:
                del self._waiters[job_id]


    # -- events.subscribe ------------------------------------------------------------------------
    def _subscribe(self, identity: bytes, request_id: str, args: dict[str, Any]) -> None:
        """Start a slice of an event stream: a new subscription, or the one `subscription` names."""
        if args.get("subscription"):
            sub = self.events.subscription(args["subscription"])
            if sub is None or args["subscription"] not in self._idle:
                raise NotFound(f"no idle subscription {args['subscription']} (expired after {IDLE_S:g}s, or in use)",
                               hint="subscribe again")
            del self._idle[sub.id]
        else:
            try:
                types = tuple(check_pattern(p) for p in args.get("types") or ())
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if args.get("source"):
                self.handlers.config.source(args["source"])
            size = min(int(args.get("queue_size") or QUEUE_SIZE), QUEUE_SIZE)
            sub = self.events.subscribe(EventFilter(types, args.get("source")), size=size,
                                        history=min(int(args.get("history") or 0), RECENT_SIZE))
        slice_s = float(args["timeout_s"]) if args.get("timeout_s") is not None else STREAM_SLICE_S
        follow = args.get("follow", True)
        cap = STREAM_MAX_EVENTS if follow else RECENT_SIZE  # without follow, the recent events in one go
        self._streams.append(_Stream(identity, request_id, sub, time.monotonic() + slice_s,
                                     min(int(args.get("max_events") or cap), cap), follow))

    def _pump_streams(self) -> None:
        """Send each stream what its queue holds; end a slice when it is full, past its deadline, or (not
        following) when the queue is empty; forget subscriptions left idle too long."""
        now = time.monotonic()
        for st in list(self._streams):
            while st.remaining > 0 and (taken := st.sub.take()) is not None:
                event, dropped = taken
                self._send(st.identity, encode_event(st.request_id, EVENT_EVENT,
                                                     {"event": event.to_wire(), "dropped": dropped}))
                st.remaining -= 1
                st.delivered += 1
            if st.remaining > 0 and st.deadline > now and (st.follow or len(st.sub)):
                continue
            self._streams.remove(st)
            if st.follow:
                self._idle[st.sub.id] = now
            else:
                self.events.unsubscribe(st.sub.id)
            self._send(st.identity, encode_reply_ok(st.request_id, {
                "subscription": st.sub.id if st.follow else None, "delivered": st.delivered,
                "dropped": st.sub.dropped, "dropped_total": st.sub.dropped_total}))
        for sid, since in list(self._idle.items()):
            if now - since > IDLE_S:
                del self._idle[sid]
                self.events.unsubscribe(sid)


def peer_address(frame: zmq.Frame) -> str | None:
    """libzmq's Peer-Address of the connection a frame came on: `localhost:UID:GID:PID` on ipc, the
    credentials SO_PEERCRED gave when the peer connected; None where libzmq has none."""
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return None
    return address if isinstance(address, str) else None  # a metadata property is a str
