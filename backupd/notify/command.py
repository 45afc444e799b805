"""The command kind: a local program run for each event, with the event as JSON on its stdin.

No shell: `command` is the argv. The environment is the daemon's plus `BACKUPD_EVENT_TYPE`,
`BACKUPD_EVENT_ID` and `BACKUPD_SOURCE` (empty without a source). The program runs in a session of its
own, so at the timeout the whole group (whatever it started too) is killed. Exit 0 is delivered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.notify.base import DeliveryFailed, Transport

STDERR_LINE_MAX = 200  # characters of the last stderr line a failure quotes
_REAP_S = 2.0  # to collect a killed group's pipes


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
        env = {**os.environ, "BACKUPD_EVENT_TYPE": str(event.type), "BACKUPD_EVENT_ID": event.id,
               "BACKUPD_SOURCE": event.source or ""}
        payload = json.dumps(event.to_wire(), ensure_ascii=False).encode()
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except FileNotFoundError:
            raise DeliveryFailed(f"command {self.program}: not found") from None
        except PermissionError:
            raise DeliveryFailed(f"command {self.program}: not executable") from None
        except OSError as exc:
            raise DeliveryFailed(f"command {self.program}: cannot be run ({exc.strerror})") from None
        try:
            _, stderr = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise DeliveryFailed(f"command {self.program}: still running after {timeout:g}s; killed it and"
                                 " its process group") from None
        if proc.returncode != 0:
            last = _last_line(stderr)
            how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exited with {proc.returncode}")
            raise DeliveryFailed(f"command {self.program}: {how}" + (f": {last}" if last else ""))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the program's whole process group (its session), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is gone already
    try:
        proc.communicate(timeout=_REAP_S)
    except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes
        proc.kill()
        proc.wait()
