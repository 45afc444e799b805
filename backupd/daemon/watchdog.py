"""The watchdog: freshness of every source and the `[alerts]` rules, evaluated on a timer and after every job.

It keeps the active alerts (`core.alerts`) in memory and in the state database's `alerts` table, so a
restart neither raises again what was already raised nor forgets to clear what ended meanwhile. Each
transition is announced once through `publish(event_type, fields)`: `freshness.violated` /
`freshness.restored` for a stale source, `alert.raised` / `alert.cleared` for the others; `fields`
names the subject (`source`, `schedule` or `destination`), the `code`, the `message` and `details`
(`key`, `severity`). `log_event` is the publish that logs them (`freshness_violated`, ...).
A storage alert of a destination not probed yet (just after a start) is kept as it was.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any, Callable

import structlog

from backupd.core.alerts import DESTINATION, ERROR, Alert, Run, Thresholds, schedule_alerts, source_alerts, \
    storage_alerts, transitions
from backupd.core.copy_order import FAILED, CopyState
from backupd.core.freshness import Restorable, freshness
from backupd.core.vocab import FAILED_STATUSES, SUCCESS_STATUSES, JobStatus
from backupd.daemon.health import HealthMonitor
from backupd.daemon.loop import BackgroundLoop
from backupd.engine.catalog import Catalog
from backupd.state.db import StateDB, state_db_path
from backupd.state.jobs import JobHistory

log = structlog.get_logger("backupd.watchdog")
Publish = Callable[[str, dict[str, Any]], None]
_STALE = "source_stale"


def log_event(event_type: str, fields: dict[str, Any]) -> None:
    """The publish that logs: `freshness.violated` as the structlog event `freshness_violated`, etc."""
    if event_type == "freshness.violated":
        log.error("freshness_violated", **fields)
    elif event_type == "freshness.restored":
        log.info("freshness_restored", **fields)
    elif event_type == "alert.raised" and fields["details"]["severity"] == ERROR:
        log.error("alert_raised", **fields)
    elif event_type == "alert.raised":
        log.warning("alert_raised", **fields)
    else:
        log.info("alert_cleared", **fields)


class Watchdog(BackgroundLoop):
    """Evaluates on its own thread; `active()` answers at once from the latest evaluation."""

    thread_name = "watchdog"

    def __init__(self, config: Callable[[], Any], clock: Callable[[], datetime], health: HealthMonitor,
                 publish: Publish):
        super().__init__()
        self._config = config
        self._clock = clock
        self._health = health
        self._publish = publish
        self._lock = threading.Lock()
        self._active: dict[str, Alert] = {}
        self.evaluated = threading.Event()  # set once the first round has run (the heartbeat waits for it)
        self._checked_at: float | None = None  # monotonic time of the last round that succeeded
    def check_soon(self, _job: dict[str, Any] | None = None) -> None:
        """Evaluate again now (a supervisor listener: after every job change)."""
        self.kick()

    def active(self) -> list[Alert]:
        """The alerts active now, errors first."""
        with self._lock:
            alerts = list(self._active.values())
        return sorted(alerts, key=lambda a: (a.severity != ERROR, a.key))

    def checked_recently(self) -> bool:
        """Whether a round succeeded within two check intervals (and a minute): the alerts are current."""
        at = self._checked_at
        return at is not None and time.monotonic() - at <= 2 * self._config().alerts.check_interval_s + 60

    def stale_sources(self) -> dict[str, bool]:
        """Each configured source: whether a `source_stale` alert is active for it now."""
        stale = {a.subject for a in self.active() if a.code == _STALE}
        return {s.name: s.name in stale for s in self._config().sources}

    # -- the watchdog thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        path = state_db_path(self._config().state.dir)
        db, catalog = StateDB(path), Catalog(path)
        try:
            with self._lock:
                self._active = {key: Alert(**json.loads(a)) for key, a in db.execute("SELECT key, alert FROM alerts")}
            while not self._stop.is_set():
                self._kick.clear()
                try:
                    self._round(db, catalog)
                    self._checked_at = time.monotonic()
                except Exception as exc:  # the watchdog must survive anything
                    log.error("watchdog_error", error=f"{type(exc).__name__}: {exc}")
                self.evaluated.set()
                self._kick.wait(self._config().alerts.check_interval_s)
        finally:
            catalog.close()
            db.close()

    def _round(self, db: StateDB, catalog: Catalog) -> None:
        current = self.evaluate(catalog, JobHistory(db, "daemon"))
        with self._lock:
            previous = dict(self._active)
        raised, cleared = transitions(previous, current)
        now = self._clock().isoformat()
        with db.transaction():
            for a in raised:
                db.execute("INSERT OR REPLACE INTO alerts VALUES (?, ?, ?)", (a.key, json.dumps(vars(a)), now))
            for a in cleared:
                db.execute("DELETE FROM alerts WHERE key = ?", (a.key,))
        with self._lock:
            self._active = {a.key: a for a in current}
        for a in raised:
            self._announce("freshness.violated" if a.code == _STALE else "alert.raised", a)
        for a in cleared:
            self._announce("freshness.restored" if a.code == _STALE else "alert.cleared", a)

    def evaluate(self, catalog: Catalog, jobs: JobHistory) -> list[Alert]:
        """Every alert active now, from the catalog, the schedules' runs and the destinations' health."""
        cfg, now = self._config(), self._clock()
        t = Thresholds(cfg.alerts.failure_rate, cfg.alerts.window, cfg.alerts.duration_factor,
                       cfg.alerts.storage_usage)
        alerts: list[Alert] = []
        for s in cfg.sources:
            if s.max_age_s is not None:
                alerts += source_alerts(s.name, freshness(_restorable(catalog, s.name), s.max_age_s, s.min_copies, now))
        for sc in cfg.schedules:
            runs = [r for j in jobs.recent(limit=max(t.window, 1) * 4 + 1, schedule=sc.name) if (r := _run(j, now))]
            alerts += schedule_alerts(sc.name, runs[: t.window + 1], t)
        with self._lock:
            kept = {a.subject: a for a in self._active.values() if a.subject_kind == DESTINATION}
        for h in self._health.snapshot():
            if h["free_bytes"] is None:
                alerts += [kept[h["name"]]] if h["name"] in kept and h["enabled"] else []
            else:
                alerts += storage_alerts(h["name"], h["used_bytes"], h["free_bytes"], t)
        return alerts

    def _announce(self, event_type: str, a: Alert) -> None:
        fields = {a.subject_kind: a.subject, "code": a.code, "message": a.message,
                  "details": {"key": a.key, "severity": a.severity}}
        try:
            self._publish(event_type, fields)
        except Exception as exc:  # an announcement never takes the watchdog down
            log.error("watchdog_error", error=f"{type(exc).__name__}: {exc}")


def _restorable(catalog: Catalog, source: str) -> list[Restorable]:
    """The source's backups, each with the destinations whose copy is not known to be damaged."""
    return [Restorable(datetime.fromisoformat(b.created_at),
                       frozenset(c.destination for c in b.copies
                                 if CopyState(c.destination, 0, c.verified_at, c.failed_at).standing != FAILED))
            for b in catalog.backups(source)]


def _run(job: dict[str, Any], now: datetime) -> Run | None:
    """A job record as a run of its schedule; None for one that neither ran to an outcome nor runs now."""
    started, finished = job.get("started_at"), job.get("finished_at")
    if job["status"] == JobStatus.RUNNING and started:
        return Run(False, (now - datetime.fromisoformat(started)).total_seconds(), running=True)
    if job["status"] not in SUCCESS_STATUSES | FAILED_STATUSES:
        return None
    took = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds() \
        if started and finished else None
    return Run(job["status"] in FAILED_STATUSES, took)
