"""Notification delivery: events routed to notifiers through the durable outbox (state.outbox).

Routing (`route`, an event bus sink) only hands the event to a routing thread, which writes the
outbox: publishing never waits on the state database or a receiver, so a notification can neither
delay nor change a job (a job outcome still in memory when the daemon dies is routed at the next
start from the job history: `recover`). Each enabled notifier has a delivery thread of its own
(daemon.delivery). A receiver that answers HTTP 410 Gone disables its notifier until the next reload
or restart, and says so with a `notifier.disabled` event and in `health`.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from backupd.config.notifiers import NotifierConfig
from backupd.core.events import Event, EventType, job_events
from backupd.core.redelivery import GIVE_UP_AFTER_S
from backupd.core.routing import NotifyRequest, Recipient, recipients
from backupd.core.vocab import FINAL_STATUSES
from backupd.daemon.delivery import NotifierWorker
from backupd.daemon.events import new_id
from backupd.errors import ConfigError, NotFound, UsageError
from backupd.notify.base import Transport
from backupd.notify.registry import transport_for
from backupd.state.outbox import RESULTS, OutboxStore

log = structlog.get_logger("backupd.notify")
Emit = Callable[..., Event]
TransportFor = Callable[..., Transport]
SCALE_ENV = "BACKUPD_REDELIVERY_SCALE"  # tests only: shrinks the retry schedule
ROUTED_KEPT_S = 7 * 24 * 3600.0
FORGET_EVERY_S = 3600.0  # how often the routing thread forgets old routing records
_FILE_KEYS = ("secret_file", "password_file", "ca_file")  # a change to one of these files renews the worker
Routed = tuple[Event, NotifyRequest | None, bool]


def redelivery_scale(environ: Mapping[str, str]) -> float:
    """The retry schedule's scale (1 unless a test shrinks it); ConfigError for a value that is not > 0."""
    raw = environ.get(SCALE_ENV) or "1"
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not 0 < scale <= 1:
        raise ConfigError([f"environment {SCALE_ENV}: must be a number in (0, 1] (got {raw[:40]!r}); unset it"])
    return scale


def _fingerprint(cfg: NotifierConfig) -> tuple[Any, ...]:
    """What a worker is built from: the notifier's settings and the versions of the files it reads."""
    versions = []
    for key in _FILE_KEYS:
        path = getattr(cfg, key)
        try:
            versions.append(os.stat(path).st_mtime_ns if path is not None else None)
        except OSError:
            versions.append(-1)
    return (cfg, *versions)


class Deliveries:
    """The notifiers of the config in force: routing into the outbox, one worker each, their figures."""

    def __init__(self, config: Callable[[], Any], store: OutboxStore, clock: Callable[[], datetime], emit: Emit,
                 *, host: str | None = None, transports: TransportFor = transport_for):
        self._config, self._store, self._clock, self._emit = config, store, clock, emit
        self._host = host or socket.gethostname()
        self._transports = transports
        self._scale = redelivery_scale(os.environ)
        self._lock = threading.Lock()
        self._workers: dict[str, NotifierWorker] = {}
        self._built: dict[str, tuple[Any, ...]] = {}  # notifier -> the fingerprint its worker was built from
        self._retired: list[NotifierWorker] = []  # replaced workers whose attempt may still be under way
        self._down: dict[str, tuple[str, str]] = {}  # notifier -> (code, why) it does not deliver now
        self._inbox: queue.SimpleQueue[Routed | None] = queue.SimpleQueue()
        self._router: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the routing thread and a worker per enabled notifier; drop the queues of notifiers no
        longer configured."""
        self.reload()
        self._router = threading.Thread(target=self._route_loop, name="notify-router", daemon=True)
        self._router.start()

    def reload(self) -> None:
        """Apply the config in force: a notifier whose settings or files changed gets a new worker (which
        starts once the old one's attempt is over), one removed or disabled loses its worker, a gone one
        is enabled again."""
        notifiers = self._notifiers()
        for name, count in self._store.drop_except(n.name for n in notifiers).items():
            log.warning("notifications_dropped", notifier=name, count=count, reason="notifier no longer configured")
        self._store.forget_routed(self._clock() - timedelta(seconds=ROUTED_KEPT_S))
        wanted = {cfg.name: (cfg, _fingerprint(cfg)) for cfg in notifiers if cfg.enabled}
        with self._lock:
            self._down = {}
            self._retired = [w for w in self._retired if w.alive]
            for name, worker in list(self._workers.items()):
                if name not in wanted or wanted[name][1] != self._built.get(name):
                    worker.halt()
                    self._retired.append(worker)
                    del self._workers[name]
            for name, (cfg, fingerprint) in wanted.items():
                if name not in self._workers:
                    before = next((w for w in reversed(self._retired) if w.name == name), None)
                    self._start_worker(cfg, fingerprint, after=before)

    def stop(self) -> None:
        """Route what is still in memory, then end every worker, each after its attempt under way."""
        if self._router is not None:
            self._inbox.put(None)
            self._router.join(30)
            self._router = None
        with self._lock:
            workers = [*self._workers.values(), *self._retired]
            self._workers, self._retired = {}, []
        for worker in workers:
            worker.halt()
        for worker in workers:
            if not worker.wait_ended():
                log.warning("notifier_stop_timed_out", notifier=worker.name,
                            note="its attempt under way may be sent again after the restart")

    def _start_worker(self, cfg: NotifierConfig, fingerprint: tuple[Any, ...], *,
                      after: NotifierWorker | None) -> None:
        try:
            transport = self._transports(cfg, host=self._host)
        except Exception as exc:  # load_config checked its files; one changed since
            self._down[cfg.name] = ("notifier_unavailable", f"cannot be set up: {exc}")
            log.error("notifier_unavailable", notifier=cfg.name, kind=cfg.kind, error=f"{type(exc).__name__}: {exc}")
            return
        worker = NotifierWorker(cfg, transport, self._store, self._clock, scale=self._scale, on_gone=self._gone,
                                after=after)
        self._workers[cfg.name], self._built[cfg.name] = worker, fingerprint
        worker.start()

    def _gone(self, worker: NotifierWorker, error: str) -> None:
        with self._lock:
            if self._workers.get(worker.name) is not worker:
                return  # a replaced worker's last attempt: its successor goes on with the new settings
            self._down[worker.name] = ("notifier_gone", f"the receiver answered 410 Gone: {error}")
            del self._workers[worker.name]  # its thread ends on its own
        log.error("notifier_disabled", notifier=worker.name, error=error,
                  note="enabled again by a reload or a restart")
        self._emit(EventType.NOTIFIER_DISABLED, error_code="notifier_gone",
                   message=f"notifier {worker.name!r}: {error}", details={"notifier": worker.name})

    # -- routing ------------------------------------------------------------------------------------
    def route(self, event: Event, request: NotifyRequest | None = None, final: bool = False) -> None:
        """Event bus sink: hand `event` to the routing thread (or, before it runs, route it now). Never
        blocks on the database, never raises."""
        if self._router is None:
            self._route_now(event, request, final)
        else:
            self._inbox.put((event, request, final))

    def _route_loop(self) -> None:
        forgotten = time.monotonic()
        while (item := self._inbox.get()) is not None:
            self._route_now(*item)
            if time.monotonic() - forgotten > FORGET_EVERY_S:
                forgotten = time.monotonic()
                try:
                    self._store.forget_routed(self._clock() - timedelta(seconds=ROUTED_KEPT_S))
                except Exception as exc:
                    log.error("notification_round_failed", notifier=None, error=f"{type(exc).__name__}: {exc}")
        while True:  # stopping: what was published before the stop is routed still
            try:
                left = self._inbox.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                self._route_now(*left)

    def _route_now(self, event: Event, request: NotifyRequest | None, final: bool) -> None:
        """Queue `event` in the outbox for the notifiers it goes to; a failure is logged, never raised."""
        try:
            names = recipients(event.type, self._recipients(), request, final=final)
            if self._store.enqueue(event, names, self._clock()):
                self._kick(names)
        except Exception as exc:
            log.error("notification_enqueue_failed", event_id=event.id, event_type=event.type,
                      error=f"{type(exc).__name__}: {exc}")

    def recover(self, jobs: Iterable[Mapping[str, Any]]) -> int:
        """Route the outcomes of `jobs` (job records) that ended in the last 24 h, after routing began,
        and were never routed: a daemon killed right after a job ended. Returns how many were routed."""
        since = max(self._store.routed_since(), (self._clock() - timedelta(seconds=GIVE_UP_AFTER_S)).isoformat())
        routed = 0
        for job in jobs:
            if job.get("status") not in FINAL_STATUSES or (job.get("finished_at") or "") < since:
                continue
            events = job_events(job, job["finished_at"])
            missing = self._store.unrouted(e.id for e in events)
            for index, event in enumerate(events):
                if event.id in missing:
                    self._route_now(event, NotifyRequest.from_wire(job.get("notify")), index == len(events) - 1)
                    routed += 1
        if routed:
            log.warning("notifications_recovered", count=routed, note="job outcomes the daemon had not routed")
        return routed

    def _recipients(self) -> list[Recipient]:
        with self._lock:
            down = set(self._down)
        return [Recipient(n.name, tuple(n.events or ()), n.enabled and n.name not in down) for n in self._notifiers()]

    def _kick(self, names: Iterable[str]) -> None:
        with self._lock:
            workers = [self._workers[n] for n in names if n in self._workers]
        for worker in workers:
            worker.kick()

    def _notifiers(self) -> list[NotifierConfig]:
        return list(self._config().notifiers)

    # -- ops ----------------------------------------------------------------------------------------
    def test(self, name: str) -> dict[str, Any]:
        """Queue a `notifier.test` event for notifier `name` alone (tried once); its result shows in `list`."""
        cfg = self._get(name)
        with self._lock:
            _, down = self._down.get(name, ("", ""))
        if not cfg.enabled or down:
            raise UsageError(f"notifier {name!r} is disabled ({down or 'enabled = false in the config'})",
                             hint="enable it (and reload the config) to send it a test")
        now = self._clock()
        event = Event(id=new_id(now), type=EventType.NOTIFIER_TEST, at=now.isoformat(),
                      message=f"a test notification from backupd on {self._host}", details={"notifier": name})
        self._store.enqueue(event, [name], now)
        log.info("notifier_test_queued", notifier=name, event_id=event.id)
        self._kick([name])
        return {"notifier": name, "event_id": event.id, "queued_at": now.isoformat()}

    def listing(self) -> list[dict[str, Any]]:
        """Each configured notifier: kind, events, state, queue length and its last delivery."""
        figures = self._store.figures()
        with self._lock:
            down = dict(self._down)
        out = []
        for cfg in self._notifiers():
            fig = figures.get(cfg.name) or {"queue": 0, **{r: 0 for r in RESULTS}, "last_result": None,
                                            "last_at": None, "last_event_id": None, "last_error": None}
            state = "disabled" if not cfg.enabled else ("down" if cfg.name in down else "enabled")
            out.append({"name": cfg.name, "kind": str(cfg.kind), "events": list(cfg.events or ()), "state": state,
                        "reason": down[cfg.name][1] if cfg.name in down else None, **fig})
        return out

    def problems(self) -> list[dict[str, str]]:
        """`health` problems: each enabled notifier that delivers nothing now (gone, or not set up)."""
        with self._lock:
            down = dict(self._down)
        return [{"code": code, "message": f"notifier {name!r}: {why}", "notifier": name}
                for name, (code, why) in sorted(down.items())]

    def families(self) -> Iterator[Metric]:
        """backupd_notifications_total{notifier,result} and backupd_notification_queue{notifier}."""
        total = CounterMetricFamily("backupd_notifications", "Notification attempts by result (delivered,"
                                    " failed: to be retried, expired: given up).", labels=["notifier", "result"])
        queue = GaugeMetricFamily("backupd_notification_queue", "Notifications waiting in the outbox.",
                                  labels=["notifier"])
        figures = self._store.figures()
        for cfg in self._notifiers():
            fig = figures.get(cfg.name, {})
            for result in RESULTS:
                total.add_metric([cfg.name, result], float(fig.get(result, 0) or 0))  # type: ignore[arg-type]
            queue.add_metric([cfg.name], float(fig.get("queue", 0) or 0))  # type: ignore[arg-type]
        yield total
        yield queue

    def _get(self, name: str) -> NotifierConfig:
        for cfg in self._notifiers():
            if cfg.name == name:
                return cfg
        known = ", ".join(n.name for n in self._notifiers()) or "none"
        raise NotFound(f"no notifier {name!r} (configured: {known})", hint="see `backupctl notify ls`")
