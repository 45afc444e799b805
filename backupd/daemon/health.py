"""Destination health, probed off the control thread and cached.

A monitor thread probes every enabled destination each `[daemon] health_interval` (each probe in a
thread of its own, so a slow server delays only itself) and keeps the latest result, with the space
and newest backup the catalog records for it. The control socket answers `health` and
`destination.health` from the cache at once, whatever the servers do. A probe still running after
`health_timeout` reports the destination unhealthy; it is not started again until it returns.

A destination that answers is still `degraded` when its free space is less than the newest full
backup of one of its sources takes there: the next full may not fit. Status changes are logged once, on the change: `destination_unhealthy` (ok -> degraded/unhealthy)
and `destination_recovered` (back to ok).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable

import structlog

from backupd.core.vocab import HealthStatus
from backupd.daemon.loop import BackgroundLoop
from backupd.destinations.base import Health
from backupd.destinations.registry import open_destination
from backupd.engine.catalog import Catalog
from backupd.state.db import state_db_path

log = structlog.get_logger("backupd.health")
TICK_S = 1.0
_WELL = (HealthStatus.OK, HealthStatus.UNKNOWN)  # from these, a worse status is logged as destination_unhealthy


@dataclass
class _State:
    health: Health | None = None
    checked_at: datetime | None = None
    status: HealthStatus = HealthStatus.UNKNOWN
    started: float | None = None  # monotonic start of the probe in flight
    due: float = 0.0  # monotonic time of the next probe
    timed_out: bool = False
    again: bool = False  # a refresh asked while a probe was in flight: probe again once it returns


@dataclass
class _Usage:
    """Per destination, from the catalog: bytes stored, the newest backup's time and the newest full's size."""

    used: dict[str, int] = field(default_factory=dict)
    newest: dict[str, str] = field(default_factory=dict)
    fulls: dict[tuple[str, str], int] = field(default_factory=dict)  # (destination, source) -> newest full's size

    @classmethod
    def read(cls, catalog: Catalog) -> _Usage:
        usage = cls()
        for b in catalog.backups():  # oldest first: the newest full is the last one seen
            for c in b.copies:
                usage.newest[c.destination] = max(usage.newest.get(c.destination, ""), b.created_at)
                usage.used[c.destination] = usage.used.get(c.destination, 0) + c.stored_bytes
                if b.strategy == "full":
                    usage.fulls[(c.destination, b.manifest.source)] = c.stored_bytes
        return usage

    def largest_full(self, destination: str) -> int | None:
        """The biggest of the newest full backups of each source on `destination`."""
        return max((n for (d, _), n in self.fulls.items() if d == destination), default=None)


def assess(health: Health, newest_full_bytes: int | None) -> Health:
    """The probe's health, degraded when the free space it found would not hold another full backup."""
    if health.free_bytes is None or newest_full_bytes is None or health.free_bytes >= newest_full_bytes:
        return health
    problem = (f"{_mib(health.free_bytes)} free, less than the newest full backup there ({_mib(newest_full_bytes)}):"
               " the next full may not fit; free space or prune")
    return replace(health, problems=(*health.problems, problem))


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class HealthMonitor(BackgroundLoop):
    thread_name = "health"

    def __init__(self, config: Callable[[], Any], clock: Callable[[], datetime],
                 on_change: Callable[[str, str, str, list[str]], None] | None = None):
        """`on_change(name, before, after, problems)` is told of every change of a destination's status."""
        super().__init__()
        self._config = config
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self._usage = _Usage()
        self._usage_due = 0.0

    def refresh(self, names: list[str] | None = None) -> None:
        """Probe these destinations (default: all) as soon as they have no probe in flight."""
        with self._lock:
            for name, state in self._states.items():
                if names is None or name in names:
                    state.due, state.again = 0.0, state.started is not None
        self._kick.set()

    def catalog_changed(self) -> None:
        """Backups were added or removed: read the usage figures again."""
        self._usage_due = 0.0
        self._kick.set()

    def snapshot(self) -> list[dict[str, Any]]:
        """Every configured destination's latest health, in config order (never blocks on a server)."""
        now = self._clock()
        with self._lock:
            usage, states = self._usage, dict(self._states)
        return [self._entry(d, states.get(d.name, _State()), usage, now) for d in self._config().destinations]

    # -- the monitor thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        catalog = Catalog(state_db_path(self._config().state.dir))
        try:
            while not self._stop.is_set():
                try:
                    self._round(catalog)
                except Exception as exc:  # the monitor must survive anything
                    log.error("health_monitor_error", error=f"{type(exc).__name__}: {exc}")
                self._kick.wait(TICK_S)
                self._kick.clear()
        finally:
            catalog.close()

    def _round(self, catalog: Catalog) -> None:
        cfg = self._config()
        now = time.monotonic()
        if now >= self._usage_due:
            self._usage_due = now + cfg.daemon.health_interval_s
            usage = _Usage.read(catalog)
            with self._lock:
                self._usage = usage
        with self._lock:
            self._states = {d.name: self._states.get(d.name) or _State() for d in cfg.destinations}
            for d in cfg.destinations:
                state = self._states[d.name]
                if not d.enabled:
                    state.due = 0.0  # probed at once when enabled again
                    continue
                if state.started is not None:
                    if not state.timed_out and now - state.started > cfg.daemon.health_timeout_s:
                        state.timed_out = True
                        took = f"{cfg.daemon.health_timeout_s:g}"
                        self._record(d.name, state, Health(False, False, None, (now - state.started) * 1000,
                                                           (f"the probe has not answered in {took} s",)))
                    continue
                if now >= state.due:
                    state.started, state.timed_out = now, False
                    threading.Thread(target=self._probe, args=(d,), name=f"health-{d.name}", daemon=True).start()

    def _probe(self, cfg: Any) -> None:
        try:
            dest = open_destination(cfg)
            try:
                health = dest.health()
            finally:
                close = getattr(dest, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # a probe never takes the monitor down; it reports
            health = Health(False, False, None, 0.0, (f"{type(exc).__name__}: {exc}",))
        interval = self._config().daemon.health_interval_s
        with self._lock:
            state = self._states.get(cfg.name)
            if state is None:  # removed while probing
                return
            state.started = None
            state.due = 0.0 if state.again else time.monotonic() + interval
            state.again = False
            self._record(cfg.name, state, assess(health, self._usage.largest_full(cfg.name)))
        self._kick.set()

    def _record(self, name: str, state: _State, health: Health) -> None:
        """Store a result (the lock held) and log a change of status."""
        before, state.health, state.checked_at, state.status = state.status, health, self._clock(), health.status
        if health.status != HealthStatus.OK and before in _WELL:
            log.warning("destination_unhealthy", destination=name, status=health.status, problems=list(health.problems))
        elif health.status == HealthStatus.OK and before not in _WELL:
            log.info("destination_recovered", destination=name, was=before)
        if self._on_change is not None and health.status != before:
            self._on_change(name, before, health.status, list(health.problems))

    @staticmethod
    def _entry(d: Any, state: _State, usage: _Usage, now: datetime) -> dict[str, Any]:
        h, last = state.health, usage.newest.get(d.name)
        if not d.enabled:
            status, problems = HealthStatus.DISABLED, []
        elif h is None:
            status, problems = HealthStatus.UNKNOWN, ["not probed yet"]
        else:
            status, problems = state.status, list(h.problems)
        return {
            "name": d.name, "kind": d.kind, "enabled": d.enabled, "status": status,
            "reachable": h.reachable if h else None, "writable": h.writable if h else None,
            "free_bytes": h.free_bytes if h else None, "latency_ms": round(h.latency_ms, 2) if h else None,
            "problems": problems, "used_bytes": usage.used.get(d.name, 0),
            "last_backup_at": last,
            "last_backup_age_s": (now - datetime.fromisoformat(last)).total_seconds() if last else None,
            "checked_at": state.checked_at.isoformat() if state.checked_at else None,
            "probing": state.started is not None,
        }
