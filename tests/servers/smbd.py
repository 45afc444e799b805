"""A real Samba `smbd` for tests: loopback only, a free port, every file under one temp directory.

Recipe from /work/shared/TEST-SERVERS.md section 2: only `smbd` runs (no nmbd, winbindd or
samba-dcerpcd), a temp smb.conf points every state directory into the temp dir, the user is added
to a temp tdbsam passdb with `pdbedit`, and the server is stopped with SIGTERM to its process group.
A missing `smbd` or `pdbedit` fails the run (`.ci/run` installs samba); it never skips.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, require_binary

SHARE = "backup"
USER = "root"  # Samba users must be Unix accounts; the suite runs as root in CI

SMB_CONF = """\
[global]
    server role = standalone server
    workgroup = WORKGROUP
    netbios name = BACKUPDTEST
    smb ports = {port}
    interfaces = lo
    bind interfaces only = yes
    disable netbios = yes
    private dir = {d}/private
    lock directory = {d}/lock
    state directory = {d}/state
    cache directory = {d}/cache
    pid directory = {d}/pid
    ncalrpc dir = {d}/ncalrpc
    winbindd socket directory = {d}/winbindd
    usershare path = {d}/usershares
    log file = {d}/log/log.%m
    passdb backend = tdbsam:{d}/private/passdb.tdb
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    map to guest = never
    server min protocol = SMB2_10
    server smb encrypt = {encrypt}

[{share}]
    path = {d}/share
    read only = no
    browseable = yes
    valid users = {user}
"""

_STATE_DIRS = ("private", "lock", "state", "cache", "pid", "ncalrpc", "winbindd", "usershares", "log", "share")


@dataclass(frozen=True)
class SmbServer:
    host: str
    port: int
    share: str
    user: str
    password: str
    share_dir: Path  # the share's directory on the local disk, for checks behind the server's back
    pid: int




def _wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"smbd exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"smbd did not listen on 127.0.0.1:{port} within {timeout}s:\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def running_smbd(*, encrypt: str = "if_required") -> Iterator[SmbServer]:
    """Start smbd; `encrypt` is Samba's `server smb encrypt` (`off`, `if_required`, `required`)."""
    smbd, pdbedit = require_binary("smbd", "samba"), require_binary("pdbedit", "samba")
    with tempfile.TemporaryDirectory(prefix="backupd-smbd-") as tmp:
        d = Path(tmp)
        for sub in _STATE_DIRS:
            (d / sub).mkdir()
        (d / "private").chmod(0o700)
        port = free_port()
        password = secrets.token_hex(12)
        conf = d / "smb.conf"
        conf.write_text(SMB_CONF.format(d=d, port=port, share=SHARE, user=USER, encrypt=encrypt))
        subprocess.run(
            [pdbedit, "-s", str(conf), "-a", "-u", USER, "-t"],
            input=f"{password}\n{password}\n", text=True, check=True, capture_output=True,
        )
        log = d / "smbd.out"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [smbd, "--foreground", "--no-process-group", "--debug-stdout", "-d", "1", "-s", str(conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            _wait_listening(proc, port, log)
            yield SmbServer("127.0.0.1", port, SHARE, USER, password, d / "share", proc.pid)
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def smb_server() -> Iterator[SmbServer]:
    with running_smbd() as server:
        yield server
