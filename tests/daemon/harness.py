"""The daemon test harness: a real `backupd run` subprocess on a real installation in a temp dir.

Nothing is faked. `Installation` is one isolated setup in a short directory under /tmp (ipc:// paths
must fit in sun_path): source SQLite databases, a key file, a state dir, a destination (a local
directory unless `destination` says otherwise) and a config with relative paths. `Daemon` starts
`backupd run -c CONFIG` on it with stdout (JSON events, the workers' too) going to a file per start,
waits until the control socket answers `status`, and stops it with SIGTERM (exit 0 expected; SIGKILL
and a failure on timeout). Tests talk to it through `backupd_client.Client` and, end to end, through
the `backupctl` CLI.

The one seam is the load probe: `$BACKUPD_LOAD_PROBE_FILE` makes the daemon read its CPU, load and
memory figures from `Installation.probe_file` (`set_load`), so the dispatch gate can be driven
without loading the machine.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupd_client import Client

BIN = Path(sys.executable).parent
BACKUPD = BIN / "backupd"
BACKUPCTL = BIN / "backupctl"
KEY_BYTES = bytes(range(101, 133))
TEMP_SUFFIX = ".backupd-tmp"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
HEAVY_LOAD = {"cpu_percent": 99, "load_per_core": 5, "free_memory": 1}
LIGHT_LOAD = {"cpu_percent": 1, "load_per_core": 0.01, "free_memory": 1 << 40}
LOCAL_DESTINATION = {"name": "local", "kind": "local", "path": "backups"}


# --- source databases -------------------------------------------------------------------------------


def make_text_db(path: Path, mib: float, *, seed: int = 1) -> Path:
    """A WAL database of about `mib` MiB of compressible text (random words, like notes or documents),
    checkpointed so that the main file holds everything."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choices(letters, k=rnd.randint(2, 10))) for _ in range(4000)]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL)")
        rows = max(1, int(mib * 1024 * 1024 / 2100))
        conn.execute("BEGIN")
        for start in range(0, rows, 1000):
            conn.executemany("INSERT INTO notes (title, body) VALUES (?, ?)",
                             [(" ".join(rnd.choices(words, k=4)), " ".join(rnd.choices(words, k=330)))
                              for _ in range(min(1000, rows - start))])
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path


def row_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM notes").fetchone()[0]
    finally:
        conn.close()


def copy_db(template: Path, to: Path) -> Path:
    """Copy a checkpointed template database (its main file is the whole database)."""
    shutil.copyfile(template, to)
    return to


# --- an installation ----------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (inline tables and arrays included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def schedule_table(name: str, source: str, cron: str, **fields: Any) -> dict[str, Any]:
    """One [[schedules]] table: `retry` and `conditions` as dicts, durations as strings ("1s")."""
    return {"name": name, "source": source, "cron": cron, **fields}


@dataclass
class Installation:
    root: Path  # short (/tmp/bkd-<8 random chars>): ipc socket paths must fit in 107 bytes
    sources: dict[str, str] = field(default_factory=dict)  # name -> database path relative to root
    compression_level: int = 3
    daemon: dict[str, Any] = field(default_factory=dict)  # [daemon] keys
    control: dict[str, Any] = field(default_factory=dict)  # [control] keys besides socket
    schedules: list[dict[str, Any]] = field(default_factory=list)
    extra: str = ""  # more TOML, appended as is (e.g. a [validation] table)
    source_fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # source name -> more [[sources]] keys
    # the one [[destinations]] table, but for compression_level and encryption; `path` relative to root
    destination: dict[str, Any] = field(default_factory=lambda: dict(LOCAL_DESTINATION))

    @property
    def config(self) -> Path:
        return self.root / "backupd.toml"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "ctl.sock"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def dest(self) -> Path:
        """The destination's directory on this machine (an SFTP server in the tests runs here too)."""
        return self.root / self.destination["path"]

    @property
    def probe_file(self) -> Path:
        return self.root / "load.json"

    def db(self, source: str) -> Path:
        return self.root / self.sources[source]

    def config_text(self) -> str:
        lines = ['[state]', 'dir = "state"', '']
        for name, path in self.sources.items():
            lines += ['[[sources]]', f'name = "{name}"', 'kind = "sqlite"', f'path = {toml_value(path)}']
            lines += [f"{k} = {toml_value(v)}" for k, v in self.source_fields.get(name, {}).items()] + ['']
        lines += ['[[destinations]]'] + [f"{k} = {toml_value(v)}" for k, v in self.destination.items()]
        lines += [f'compression_level = {self.compression_level}', '',
                  '[destinations.encryption]', 'key_file = "backup.key"', '',
                  '[control]', 'socket = "run/ctl.sock"']
        lines += [f"{k} = {toml_value(v)}" for k, v in self.control.items()]
        lines += ['', '[daemon]'] + [f"{k} = {toml_value(v)}" for k, v in self.daemon.items()] + ['']
        for sc in self.schedules:
            lines += ['[[schedules]]'] + [f"{k} = {toml_value(v)}" for k, v in sc.items()] + ['']
        return "\n".join(lines) + self.extra

    def write_config(self) -> Path:
        """Write the config atomically (a SIGHUP must never read a half-written file)."""
        tmp = self.config.with_name(".backupd.toml.tmp")
        tmp.write_text(self.config_text())
        os.replace(tmp, self.config)
        return self.config

    def set_load(self, load: dict[str, Any]) -> None:
        tmp = self.probe_file.with_name(".load.json.tmp")
        tmp.write_text(json.dumps(load))
        os.replace(tmp, self.probe_file)

    def leftovers(self) -> tuple[list[str], list[str]]:
        """(temp files, artifacts without their sidecar manifest) anywhere under the destination."""
        files = set()
        if self.dest.exists():
            for dirpath, _, names in os.walk(self.dest):
                files.update((Path(dirpath) / n).relative_to(self.dest).as_posix() for n in names)
        temps = sorted(f for f in files if f.endswith(TEMP_SUFFIX))
        orphans = sorted(f for f in files if f.endswith(".bkpd") and f[: -len(".bkpd")] + ".manifest" not in files)
        return temps, orphans

    def manifests(self) -> list[str]:
        return sorted(p.name for p in self.dest.rglob("*.manifest")) if self.dest.exists() else []


def new_installation(templates: dict[str, Path], **kwargs: Any) -> Installation:
    """A fresh installation in a short temp dir; `templates` maps source name -> template database."""
    root = Path(tempfile.mkdtemp(prefix="bkd-", dir="/tmp"))
    key = root / "backup.key"
    key.write_bytes(KEY_BYTES)
    os.chmod(key, 0o600)
    inst = Installation(root, **kwargs)
    for name, template in templates.items():
        copy_db(template, root / f"{name}.db")
        inst.sources.setdefault(name, f"{name}.db")
    inst.write_config()
    assert len(str(inst.socket)) < 100, inst.socket
    return inst


# --- the daemon -------------------------------------------------------------------------------------


class DaemonFailed(AssertionError):
    pass


class Daemon:
    """One `backupd run` process at a time on an installation; `start()` again after `stop()` restarts it."""

    def __init__(self, inst: Installation, env: dict[str, str] | None = None, nofile: int | None = None):
        self.inst = inst
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the daemon process, if given
        self.env = {**os.environ, "BACKUPD_LOAD_PROBE_FILE": str(inst.probe_file), **(env or {})}
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("WATCHDOG_USEC", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._clients: list[Client] = []

    # -- files ---------------------------------------------------------------------------------------

    def log_path(self, run: int | None = None) -> Path:
        return self.inst.root / f"daemon-{self.starts if run is None else run}.jsonl"

    def stderr_path(self, run: int | None = None) -> Path:
        return self.inst.root / f"daemon-{self.starts if run is None else run}.stderr"

    def events(self, name: str | None = None, *, run: int | None = None, **match: Any) -> list[dict[str, Any]]:
        """Events logged by one start (the current one by default) named `name` whose fields equal `match`."""
        path = self.log_path(run)
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if (name is None or event.get("event") == name) and all(event.get(k) == v for k, v in match.items()):
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        found = wait_for(lambda: self.events(name, **match), timeout, interval=0.05)
        if not found:
            raise AssertionError(f"no {name} event {match or ''} within {timeout}s; log tail:\n{self.log_tail()}")
        return found[0]

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path().read_text(errors="replace") if self.log_path().exists() else ""
        err = self.stderr_path().read_text(errors="replace") if self.stderr_path().exists() else ""
        return "\n".join(text.splitlines()[-lines:]) + (f"\n--- stderr:\n{err}" if err else "")

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "the daemon is already running"
        self.starts += 1
        with open(self.log_path(), "wb") as out, open(self.stderr_path(), "wb") as err:
            self.proc = subprocess.Popen([str(BACKUPD), "run", "-c", str(self.inst.config)], stdout=out,
                                         stderr=err, cwd=self.inst.root, env=self.env, preexec_fn=self._limits)
        if wait:
            self.wait_ready()
        return self

    def _limits(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise DaemonFailed(f"backupd exited {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            if self.inst.socket.exists():
                try:
                    with Client(self.inst.socket, timeout=1.0, retries=0) as c:
                        return c.status()
                except Exception:
                    pass
            time.sleep(0.05)
        raise DaemonFailed(f"backupd did not answer status within {timeout}s:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonFailed(f"backupd did not exit within {timeout}s (killed):\n{self.log_tail()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT_S, expect: int | None = 0) -> int:
        """SIGTERM, wait for the exit; the exit code must be `expect` (None: any)."""
        self.close_clients()
        if not self.alive:
            code = self.proc.returncode if self.proc is not None else 0
        else:
            self.signal(signal.SIGTERM)
            code = self.wait_exit(timeout)
        if expect is not None:
            assert code == expect, f"backupd exited {code}, expected {expect}:\n{self.log_tail()}"
        return code

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    # -- talking to it -------------------------------------------------------------------------------

    def client(self, timeout: float = 10.0, retries: int = 0) -> Client:
        """A Client on the control socket, closed when the daemon stops."""
        c = Client(self.inst.socket, timeout=timeout, retries=retries)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def ctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `backupctl --socket S ARGS...`."""
        return subprocess.run([str(BACKUPCTL), "--socket", str(self.inst.socket), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.inst.root)

    def ctl_json(self, *args: str, timeout: float = 120.0) -> Any:
        """Run `backupctl --json ARGS...`, which must succeed; its parsed stdout."""
        r = self.ctl("--json", *args, timeout=timeout)
        assert r.returncode == 0, f"backupctl {' '.join(args)} exited {r.returncode}: {r.stderr}"
        return json.loads(r.stdout)

    def job_threads(self) -> dict[int, int]:
        """Every thread of the daemon's job processes (the forkserver's children): thread id -> nice."""
        import psutil

        assert self.proc is not None
        out = {}
        for server in psutil.Process(self.proc.pid).children():
            if "forkserver" in " ".join(server.cmdline()):
                for worker in server.children():
                    for tid in os.listdir(f"/proc/{worker.pid}/task"):
                        out[int(tid)] = os.getpriority(os.PRIO_PROCESS, int(tid))  # per thread on Linux
        return out

    def wait_job(self, job_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0,
                 what: str = "") -> dict[str, Any]:
        """Poll job.get until `predicate(job)` holds; the job."""
        c = self.client(timeout=5.0, retries=2)
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = c.job_get(job_id)
            return predicate(last)

        if not wait_for(check, timeout, interval=0.05):
            raise AssertionError(f"job {job_id} never became {what or 'as expected'} within {timeout}s: {last}\n"
                                 f"{self.log_tail()}")
        return last


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
