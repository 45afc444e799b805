"""Descriptors of the control socket: a daemon that runs out of them dies, so it keeps a margin.

libzmq aborts the whole process when accepting an ipc:// connection fails with EMFILE, so a local
client that opens enough idle connections would kill the daemon and its running jobs. Two defences:
`raise_fd_limit()` lifts the soft RLIMIT_NOFILE to the hard limit at start, and `PeerLimit` follows
the ROUTER's connections through a libzmq socket monitor and shuts down at once every connection
beyond `max_peers`, a bound well below the descriptor limit. Shutting a connection down (not closing
it) lets libzmq notice the end and release the descriptor itself, the way it does for any peer that
hangs up.
"""

from __future__ import annotations

import resource
import socket
import time

import structlog
import zmq
from zmq.utils.monitor import parse_monitor_message

log = structlog.get_logger("backupd.control")

# At most this share of the descriptor limit goes to control connections; the rest is the margin the
# daemon's own files, pipes, job processes and health probes need, and what absorbs a burst of
# connections accepted before the monitor reports them.
PEER_SHARE = 4
REPORT_EVERY_S = 10.0
RECOUNT_EVERY_S = 1.0
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


def raise_fd_limit() -> tuple[int, int]:
    """Lift the soft descriptor limit to the hard one; returns (soft, hard) as they now are."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("fd_limit_raised", soft=hard, was=soft)
            soft = hard
        except (ValueError, OSError) as exc:  # a hard limit above the kernel's nr_open
            log.warning("fd_limit_unchanged", soft=soft, hard=hard, error=str(exc))
    return soft, hard


def peer_bound(max_peers: int, fd_limit: int) -> int:
    """How many control connections the daemon keeps: `max_peers`, less if the descriptor limit is low.

    >>> peer_bound(256, 65536), peer_bound(256, 256)
    (256, 64)
    """
    if fd_limit == resource.RLIM_INFINITY:
        return max_peers
    return max(1, min(max_peers, fd_limit // PEER_SHARE))


class PeerLimit:
    """Keeps at most `bound` connections on `sock` (a bound ROUTER listening on ipc://`path`).

    Call `drain()` from the thread that owns `sock` whenever `monitor` is readable."""

    def __init__(self, sock: zmq.Socket, path: str, bound: int):
        self.path = path
        self.bound = bound
        self.monitor = sock.get_monitor_socket(_EVENTS)
        self.refused = 0
        self._peers: set[int] = set()
        self._reported = 0
        self._last_report = 0.0
        self._last_recount = 0.0

    @property
    def count(self) -> int:
        return len(self._peers)

    def drain(self) -> None:
        """Handle every pending monitor event: count connections, shut down those beyond the bound."""
        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd)
            else:
                self._peers.discard(fd)
        self._report()

    def close(self) -> None:
        self.monitor.close(linger=0)

    def _accepted(self, fd: int) -> None:
        self._peers.add(fd)
        if len(self._peers) <= self.bound:
            return
        if time.monotonic() - self._last_recount >= RECOUNT_EVERY_S:
            # Events may have been dropped under a flood: forget descriptors that are no longer ours.
            self._peers = {p for p in self._peers if self._is_ours(p)}
            self._last_recount = time.monotonic()
        if len(self._peers) > self.bound and self._is_ours(fd):
            self._shut(fd)

    def _is_ours(self, fd: int) -> bool:
        """Is `fd` still a connection accepted on our socket (and not a descriptor reused since)?"""
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            return False
        try:
            return sock.family == socket.AF_UNIX and sock.getsockname() == self.path
        except OSError:
            return False
        finally:
            sock.detach()

    def _shut(self, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            return  # the peer is gone already
        try:
            sock.shutdown(socket.SHUT_RDWR)
            self.refused += 1
        except OSError:
            pass
        finally:
            sock.detach()

    def _report(self) -> None:
        """One `control_peers_refused` event per REPORT_EVERY_S while connections are being refused."""
        if self.refused == self._reported or time.monotonic() - self._last_report < REPORT_EVERY_S:
            return
        log.warning("control_peers_refused", refused=self.refused - self._reported, total=self.refused,
                    connected=len(self._peers), max_peers=self.bound)
        self._reported = self.refused
        self._last_report = time.monotonic()
