"""`backupd run`: the long-running daemon (foreground; systemd supervises it).

Wiring and lifecycle: single-instance locks (flock, released by the kernel on a crash), the control
socket, the scheduler, the notifiers' deliveries and the heartbeat, sd_notify, and signals. Signal handlers only record; the main loop acts:
SIGTERM/SIGINT -> drain and exit 0, SIGHUP -> reload the config (a bad one keeps the old running).
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import structlog
from prometheus_client import CollectorRegistry

from backupd import log as logsetup
from backupd.config import Config, load_config
from backupd.config.schema import RESTORE_AREA
from backupd.core.vocab import JobKind
from backupd.daemon.control import ControlServer
from backupd.daemon.destinations import DestinationBook
from backupd.daemon.events import EventBus
from backupd.daemon.exposition import HttpListener, TextfileWriter
from backupd.daemon.handlers import Handlers
from backupd.daemon.health import HealthMonitor
from backupd.daemon.heartbeat import Heartbeat
from backupd.daemon.jobs import FINAL
from backupd.daemon.metrics import DaemonCollector, registry_of
from backupd.daemon.notify import Notifier
from backupd.daemon.outbox import Deliveries
from backupd.daemon.peers import peer_bound, raise_fd_limit
from backupd.daemon.probes import default_probe
from backupd.daemon.scheduler import ScheduleBook
from backupd.daemon.store import DaemonStore
from backupd.daemon.supervisor import Supervisor
from backupd.daemon.watchdog import Watchdog, log_event
from backupd.errors import BackupdError, ConfigError
from backupd.state.db import DAEMON_LOCK, STATE_DB, StateDB
from backupd.state.outbox import OutboxStore

log = structlog.get_logger("backupd.daemon")
_CATALOG_WRITERS = frozenset({JobKind.BACKUP, JobKind.PRUNE, JobKind.RESYNC})  # their end changes what health reports
RECOVERED_JOBS = 1000  # the most recent jobs whose unrouted outcomes a start routes (24 h of them at most)


class AlreadyRunning(BackupdError):
    code = "already_running"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _lock(path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"another backupd daemon (pid {holder}) is using {what}",
                             hint="stop it first; the lock is released automatically when it exits") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(self, config_path: Path, log_level: str = "info"):
        self.config_path = Path(config_path).absolute()
        self.log_level = log_level
        self.config = load_config(self.config_path)  # with the run-time destination changes once running
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._textfiles: list[TextfileWriter] = []  # kicked at the end of every job

    def run(self) -> int:
        cfg = self.config
        fd_limit, _ = raise_fd_limit()
        locks = [_lock(cfg.state.dir / DAEMON_LOCK, f"state dir {cfg.state.dir}"),
                 _lock(cfg.control.socket.with_name(cfg.control.socket.name + ".lock"),
                       f"control socket {cfg.control.socket}")]
        notifier = Notifier()
        self.store = DaemonStore(cfg.state.dir / STATE_DB)
        (cfg.state.dir / RESTORE_AREA).mkdir(mode=0o700, exist_ok=True)  # a restore through the daemon may write here
        self.supervisor = Supervisor(cfg, probe=default_probe(), store=self.store, clock=utc_now,
                                     log_level=self.log_level)
        self.events = EventBus(utc_now)
        self.publish = self.events.publish  # for the watchdogs: publish(core.events.Event)
        outbox_db = StateDB(cfg.state.dir / STATE_DB)
        self.deliveries = Deliveries(lambda: self.config, OutboxStore(outbox_db), utc_now, self.events.emit)
        self.events.add_sink(self.deliveries.route)
        self.deliveries.recover(reversed(self.store.jobs(limit=RECOVERED_JOBS)))
        self.supervisor.add_listener(self.events.job_changed)
        self.health = HealthMonitor(lambda: self.config, utc_now, on_change=self.events.health_changed)
        self.destinations = DestinationBook(cfg, self.supervisor.catalog, self._use, lambda d: self.schedules.using(d))
        self._use(self.destinations.config)
        self.supervisor.add_listener(self._job_changed)
        self.watchdog = Watchdog(lambda: self.config, utc_now, self.health, publish=self._watchdog_event)
        self.supervisor.add_listener(self.watchdog.check_soon)
        self.heartbeat = Heartbeat(lambda: self.config, self.watchdog)
        self.schedules = ScheduleBook(self.supervisor, self.store)
        metrics = registry_of(DaemonCollector(cfg.state.dir / STATE_DB, destinations=self.health.snapshot,
                                              schedules=self.schedules.list, jobs=self.supervisor.counts,
                                              stale=self.watchdog.stale_sources, extra=[self.deliveries.families]))
        handlers = Handlers(daemon=self, supervisor=self.supervisor, schedules=self.schedules,
                            destinations=self.destinations, health=self.health, watchdog=self.watchdog, metrics=metrics,
                            deliveries=self.deliveries)
        outlets = _metric_outlets(cfg, metrics, lambda: handlers.health({}))
        self._textfiles = [o for o in outlets if isinstance(o, TextfileWriter)]
        control = ControlServer(cfg.control.socket, group=cfg.control.group, max_bytes=cfg.control.max_message_bytes,
                                handlers=handlers, supervisor=self.supervisor, events=self.events,
                                max_peers=peer_bound(cfg.control.max_peers, fd_limit))
        control.bind()
        self.supervisor.add_listener(control.job_changed)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._record_signal)
        control.start()
        self.health.start()
        self.watchdog.start()
        self.deliveries.start()
        self.heartbeat.start()
        self.schedules.start()
        for outlet in outlets:
            outlet.start()
        notifier.ready(f"listening on {cfg.control.socket}")
        log.info("daemon_ready", pid=os.getpid(), socket=str(cfg.control.socket), config=str(self.config_path),
                 schedules=self.schedules.names())
        last_ping = 0.0
        try:
            while True:
                self.supervisor.wake.wait(timeout=min(1.0, cfg.daemon.recheck_interval_s))
                self.supervisor.wake.clear()
                if self._handle_signals():
                    break
                self.supervisor.tick()
                self.supervisor.enforce_timeouts()
                self.supervisor.reap_overdue_cancels()
                self.supervisor.prune_history()
                if notifier.watchdog_interval is not None:
                    if time.monotonic() - last_ping >= notifier.watchdog_interval:
                        notifier.watchdog()
                        last_ping = time.monotonic()
                counts = self.supervisor.counts()
                notifier.status(f"{counts['running']} running, {counts['waiting']} waiting, {counts['queued']} queued")
        finally:
            self.supervisor.stop_accepting()
            notifier.stopping()
            log.info("daemon_stopping", running=self.supervisor.counts()["running"],
                     timeout_s=cfg.daemon.shutdown_timeout_s)
            self.schedules.stop()
            self.supervisor.shutdown(self.config.daemon.shutdown_timeout_s)
            control.stop()
            self.heartbeat.stop()
            self.watchdog.stop()
            self.health.stop()
            self.deliveries.stop()  # after every source of events: what they published is routed still
            outbox_db.close()
            for outlet in outlets:
                outlet.stop()
            self.destinations.close()
            self.store.close()
            for fd in locks:
                os.close(fd)
            log.info("daemon_stopped")
        return 0

    def _watchdog_event(self, event_type: str, fields: dict[str, Any]) -> None:
        """A freshness or alert transition: logged (`freshness_violated`, `alert_raised`, ...) and published
        on the event bus, where subscribers and notifiers read it; a source fresh again beats the heartbeat now."""
        log_event(event_type, fields)
        self.events.emit(event_type, source=fields.get("source"), schedule=fields.get("schedule"),
                         destinations=(fields["destination"],) if fields.get("destination") else (),
                         error_code=fields.get("code"), message=fields.get("message"),
                         details=dict(fields.get("details") or {}))
        if event_type == "freshness.restored":
            self.heartbeat.kick()

    def _record_signal(self, signum: int, _frame: object) -> None:
        """The signal handler: only record, and wake the main loop to act."""
        self._signals.put(signum)
        self.supervisor.wake.set()

    def _handle_signals(self) -> bool:
        """Act on recorded signals; True when the daemon should stop."""
        while True:
            try:
                signum = self._signals.get_nowait()
            except queue.Empty:
                return False
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                return True
            if signum == signal.SIGHUP:
                try:
                    self.reload_config()
                except ConfigError:
                    pass  # logged by reload_config; the old config keeps running

    def reload_config(self) -> dict[str, Any]:
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_failed", config=str(self.config_path), problems=exc.problems,
                      note="the previous config keeps running")
            raise
        outlets = ("textfile", "listen")  # the heartbeat's keys apply at once
        if (new.control, new.state, *(getattr(new.monitoring, k) for k in outlets)) != (
                self.config.control, self.config.state, *(getattr(self.config.monitoring, k) for k in outlets)):
            log.warning("config_reload_partial", note="[state], [control] and [monitoring] textfile and listen"
                                                      " changes take effect at the next start")
        self._use(self.destinations.reload(new))
        self.schedules.reload(self.config)
        self.deliveries.reload()
        log.info("config_reloaded", config=str(self.config_path), schedules=self.schedules.names())
        return {"reloaded": True, "config": str(self.config_path)}

    def _use(self, config: Any) -> None:
        """Make `config` (the file's, with the run-time destination changes) the one every part uses."""
        self.config = config
        self.supervisor.config = config
        self.health.refresh()

    def _job_changed(self, job: dict[str, Any]) -> None:
        if job["status"] in FINAL and job["kind"] in _CATALOG_WRITERS:
            self.health.catalog_changed()
        if job["status"] in FINAL:
            for textfile in self._textfiles:
                textfile.kick()


def _metric_outlets(cfg: Config, registry: CollectorRegistry,
                    health: Callable[[], dict[str, Any]]) -> list[TextfileWriter | HttpListener]:
    """The textfile writer and HTTP listener `[monitoring]` asks for (the listener bound now: a port
    in use fails the start, as the control socket does)."""
    outlets: list[TextfileWriter | HttpListener] = []
    if cfg.monitoring.textfile is not None:
        outlets.append(TextfileWriter(registry, cfg.monitoring.textfile))
    if cfg.monitoring.listen_address is not None:
        try:
            outlets.append(HttpListener(registry, cfg.monitoring.listen_address, health))
        except OSError as exc:
            raise ConfigError([f"monitoring.listen: cannot listen on {cfg.monitoring.listen}: {exc.strerror or exc}"],
                              source=str(cfg.path)) from None
    return outlets


def run(config_path: Path, log_level: str = "info") -> int:
    logsetup.configure(log_level, stream=sys.stdout)
    return Daemon(config_path, log_level).run()
