"""The command kind: a local program run for each event, with the event as JSON on its stdin.

No shell: `command` is the argv. The environment is a minimal one (PATH, HOME, the locale and TZ:
never the daemon's secrets, such as the variables other notifiers and destinations read their
passwords from) plus `BACKUPD_EVENT_TYPE`, `BACKUPD_EVENT_ID` and `BACKUPD_SOURCE` (empty without a
source). The program runs in a session of its
own, so at the timeout the whole group (whatever it started too) is killed. Exit 0 is delivered,
even when the program left a child running (that is its business). Its stdout is discarded and its
stderr kept in a file, of which a failure quotes the last line: a chatty program costs no memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from typing import IO

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.notify.base import DeliveryFailed, Transport

PASSED_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")  # and every LC_*
STDERR_LINE_MAX = 200  # characters of the last stderr line a failure quotes
STDERR_TAIL_BYTES = 4096  # of stderr read back for that line
_REAP_S = 2.0  # to collect a killed group


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return notice.one_line(lines[-1])[:STDERR_LINE_MAX] if lines else ""


class CommandTransport(Transport):
    """Runs `command` with the event on stdin."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        assert cfg.command  # required for the kind by NotifierConfig
        self.argv = list(cfg.command)
        self.program = self.argv[0]  # messages name it, never its arguments

    def send(self, event: Event, *, timeout: float) -> None:
        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("LC_")}
        env.update(BACKUPD_EVENT_TYPE=str(event.type), BACKUPD_EVENT_ID=event.id, BACKUPD_SOURCE=event.source or "")
        payload = json.dumps(event.to_wire(), ensure_ascii=False).encode()
        with tempfile.TemporaryFile() as stderr:
            returncode = self._run(payload, env, stderr, timeout)
            if returncode == 0:
                return
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL_BYTES))
            last = _last_line(stderr.read())
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with {returncode}"
        raise DeliveryFailed(f"command {self.program}: {how}" + (f": {last}" if last else ""))

    def _run(self, payload: bytes, env: dict[str, str], stderr: IO[bytes], timeout: float) -> int:
        """The program's exit status, once it has read `payload` and exited (DeliveryFailed at the timeout)."""
        deadline = time.monotonic() + timeout
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                                    env=env, start_new_session=True)
        except FileNotFoundError:
            raise DeliveryFailed(f"command {self.program}: not found") from None
        except PermissionError:
            raise DeliveryFailed(f"command {self.program}: not executable") from None
        except OSError as exc:
            raise DeliveryFailed(f"command {self.program}: cannot be run ({exc.strerror})") from None
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(payload)  # one event: far below a pipe's buffer, so this does not block
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it did not read its stdin: its exit status says how it went
            return proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DeliveryFailed(f"command {self.program}: still running after {timeout:g}s; killed it and"
                                 " its process group") from None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the program's whole process group (its session), then reap the program."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is gone already
    try:
        proc.wait(_REAP_S)
    except subprocess.TimeoutExpired:  # it left its group: kill it alone
        proc.kill()
        proc.wait()
