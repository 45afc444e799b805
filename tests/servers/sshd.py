"""A real OpenSSH `sshd` for tests: 127.0.0.1 only, a free port, throwaway host and client keys.

Recipe from /work/shared/TEST-SERVERS.md section 1: sshd runs as root in its own pid and mount
namespace (`unshare`) with a private tmpfs on /run, so its privilege separation directory
/run/sshd exists without touching the machine; `StrictModes no` because the keys sit under /tmp.
Stopping SIGKILLs the `unshare` process, which takes sshd and every session child with it (a
plain SIGTERM to sshd would leave connected sessions alive), and waits until they are all dead. The
same server can be started again on the same port with the same host key, to test reconnects.
A missing `sshd`, `ssh-keygen` or `unshare` fails the run (`.ci/run` installs openssh-server); it
never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import psutil
import pytest

from tests.servers import free_port, require_binary

USER = "root"  # the suite runs as root in CI; sshd as root needs the namespace below

SSHD_CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey {d}/host_key
PidFile none
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""

_IN_NAMESPACE = 'mount -t tmpfs -o mode=0755 sshd-run /run && mkdir -m 0755 /run/sshd && exec "$@"'




def keygen(path: Path) -> paramiko.Ed25519Key:
    subprocess.run(
        [require_binary("ssh-keygen", "openssh-server"), "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class SshServer:
    """A throwaway sshd. `root` is a directory on this machine the tests may use as remote paths."""

    host = "127.0.0.1"
    user = USER

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port()
        self.root = directory / "srv"
        self.root.mkdir()
        self.host_key = keygen(directory / "host_key")
        self.client_key_file = directory / "client_key"
        keygen(self.client_key_file)
        shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
        self.known_hosts = directory / "known_hosts"
        self.write_known_hosts(self.known_hosts, self.host_key)
        self.config = directory / "sshd_config"
        self.config.write_text(SSHD_CONFIG.format(port=self.port, d=directory, user=USER))
        self.log = directory / "sshd.log"
        self._proc: subprocess.Popen | None = None

    def write_known_hosts(self, path: Path, key: paramiko.PKey | None) -> Path:
        """A known_hosts file holding `key` for this server (None: an empty file)."""
        keys = paramiko.HostKeys()
        if key is not None:
            keys.add(f"[{self.host}]:{self.port}", key.get_name(), key)
        keys.save(str(path))
        return path

    def start(self, timeout: float = 10.0) -> None:
        sshd = require_binary("sshd", "openssh-server")
        cmd = [require_binary("unshare", "openssh-server"), "--mount", "--pid", "--fork", "--kill-child=SIGTERM", "--",
               "sh", "-c", _IN_NAMESPACE, "sh", sshd, "-D", "-e", "-f", str(self.config)]  # fmt: skip
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if "Server listening on" in text:
                return
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self._proc.returncode}:\n{text}")
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.host}:{self.port} within {timeout}s:\n{text}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGKILL the namespace's parent: sshd and every session in the namespace die with it. Returns
        once they are dead (the port is free, every connection dropped): the namespace's init, sshd, exits
        only after the kernel has killed every other process in it."""
        if self._proc is not None and self._proc.poll() is None:
            init = psutil.Process(self._proc.pid).children()
            self._proc.kill()
            self._proc.wait(timeout=timeout)
            deadline = time.monotonic() + timeout
            while any(_alive(p) for p in init):
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"sshd on port {self.port} still runs {timeout}s after it was killed")
                time.sleep(0.01)
        self._proc = None


def _alive(process: psutil.Process) -> bool:
    """Still running: a zombie (dead, not yet reaped by whoever inherited it) holds no sockets."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def running_sshd() -> Iterator[SshServer]:
    with tempfile.TemporaryDirectory(prefix="backupd-sshd-") as tmp:
        server = SshServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    """One sshd for the whole session; tests use fresh folders under `root`, and never stop it."""
    with running_sshd() as server:
        yield server
