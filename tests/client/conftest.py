"""Fixtures for the client tests. There is no daemon here and none is faked: `silent_router` is a real
ZeroMQ ROUTER bound where a daemon would be, that reads requests and (unless told) never answers."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: ipc:// paths must fit in sun_path (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bctl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Router:
    path: str
    received: list[tuple[bytes, bytes]] = field(default_factory=list)  # (peer identity, frame)
    answer: Callable[[bytes], list[bytes]] | None = None  # frame -> frames to send back
    after_first: Callable[[], None] | None = None


@pytest.fixture
def silent_router(short_dir) -> Iterator[Router]:
    """A ROUTER on `short_dir/control.sock`, served by a thread until the test ends."""
    router = Router(str(short_dir / "control.sock"))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"ipc://{router.path}")
    stop = threading.Event()

    def serve() -> None:
        try:
            while not stop.is_set():
                if not sock.poll(20, zmq.POLLIN):
                    continue
                identity, *frames = sock.recv_multipart()
                router.received.append((identity, frames[-1]))
                if router.answer is not None:
                    for frame in router.answer(frames[-1]):
                        sock.send_multipart([identity, frame])
                if router.after_first is not None:
                    router.after_first()
                    return  # the "daemon" is gone
        finally:
            sock.close(linger=0)  # zmq removes the socket file with the listener

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield router
    stop.set()
    thread.join(timeout=2)
    ctx.term()


@pytest.fixture
def stale_socket(short_dir) -> str:
    """A socket file nothing listens on: what a daemon killed with SIGKILL leaves behind."""
    path = str(short_dir / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    return path
