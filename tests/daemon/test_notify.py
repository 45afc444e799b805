"""sd_notify: READY=1 once the socket is bound, STATUS= lines, WATCHDOG=1 when the unit asks for it,
STOPPING=1 on the way out — read from a real $NOTIFY_SOCKET datagram socket."""

from __future__ import annotations

import socket
import time


def test_ready_status_watchdog_and_stopping(installation, daemon_for):
    inst = installation(demo="small")
    path = inst.root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.5)
        d = daemon_for(inst)
        d.env.update(NOTIFY_SOCKET=str(path), WATCHDOG_USEC="1000000")
        d.start()
        seen: list[str] = []

        def collect(until: str, timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not any(until in m for m in seen):
                try:
                    seen.append(sock.recv(4096).decode())
                except TimeoutError:
                    pass
            assert any(until in m for m in seen), seen

        collect("READY=1")
        ready = next(m for m in seen if "READY=1" in m)
        assert "STATUS=listening on" in ready and f"MAINPID={d.proc.pid}" in ready
        assert d.client().status()["state"] == "running"  # READY came after the socket was bound
        collect("WATCHDOG=1")
        collect("running, 0 waiting")  # the STATUS= line the main loop keeps current
        d.stop()
        collect("STOPPING=1", timeout=5)
