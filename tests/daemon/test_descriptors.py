"""Descriptor exhaustion of a real daemon: a local client opens far more connections to the control
socket than the daemon has descriptors. Without a bound libzmq aborts the process on the first accept
that fails with EMFILE (`Too many open files (src/ipc_listener.cpp:297)`); with it the daemon sheds
what is beyond `[control] max_peers`, keeps running, and answers `status` and runs a backup afterwards."""

from __future__ import annotations

import socket
import time

from .harness import wait_for

NOFILE = 256  # the daemon's descriptor limit: small, so the test needs few connections
CONNECTIONS = 2000
BATCH = 50  # connections opened back to back before a short pause


def open_connections(path: str, n: int) -> list[socket.socket]:
    """Up to `n` idle connections that never speak; fewer if the daemon stops accepting (it died)."""
    opened: list[socket.socket] = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            break
        opened.append(s)
        if i % BATCH == BATCH - 1:
            time.sleep(0.02)
    return opened


def test_many_idle_connections_do_not_kill_the_daemon(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst, nofile=NOFILE).start()
    pid = d.proc.pid
    attack = open_connections(str(inst.socket), CONNECTIONS)
    try:
        assert len(attack) == CONNECTIONS, f"the daemon stopped accepting after {len(attack)}:\n{d.log_tail()}"
        time.sleep(0.5)
        assert d.alive, f"the daemon died under {CONNECTIONS} connections:\n{d.log_tail()}"
        refused = d.wait_event("control_peers_refused", timeout=5)
        assert refused["max_peers"] == NOFILE // 4
    finally:
        for s in attack:
            s.close()
    c = d.client(timeout=5.0, retries=2)
    assert wait_for(lambda: c.status()["state"] == "running", 10)
    job = c.backup_create("demo", strategy="full")
    done = c.job_wait(job["job_id"], timeout_s=60)
    assert done["status"] == "completed", done
    assert d.proc.pid == pid and d.alive
    assert "Too many open files" not in d.stderr_path().read_text()
    d.stop()
