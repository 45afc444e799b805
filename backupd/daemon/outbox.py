"""Notification delivery: events routed to notifiers through the durable outbox (state.outbox).

Routing (`route`, an event bus sink) only writes the outbox: it never waits on a receiver, so a
notification can neither delay nor change a job. Each enabled notifier has a thread of its own
(`NotifierWorker`) that sends what is due, one attempt at a time within the notifier's timeout, and
retries on the Standard Webhooks schedule (core.redelivery) until it is delivered or 24 h have passed.
A receiver that answers HTTP 410 Gone disables its notifier until the next reload or restart, and
says so with a `notifier.disabled` event. At start, the outcomes of jobs that ended while the daemon
was not routing (killed between a job's end and its routing) are routed: at least once, same ids.
"""

from __future__ import annotations

import os
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
from backupd.core.redelivery import GIVE_UP_AFTER_S, next_attempt
from backupd.core.routing import NotifyRequest, Recipient, recipients
from backupd.core.vocab import FINAL_STATUSES
from backupd.daemon.events import new_id
from backupd.daemon.loop import BackgroundLoop
from backupd.errors import NotFound, UsageError
from backupd.notify.base import DeliveryFailed, Transport
from backupd.notify.registry import transport_for
from backupd.state.outbox import RESULTS, OutboxStore, Pending

log = structlog.get_logger("backupd.notify")
Emit = Callable[..., Event]
TransportFor = Callable[..., Transport]
SCALE_ENV = "BACKUPD_REDELIVERY_SCALE"  # tests only: shrinks the retry schedule
IDLE_WAIT_S = 60.0
ROUTED_KEPT_S = 7 * 24 * 3600.0


class NotifierWorker(BackgroundLoop):
    """Delivers one notifier's queue, soonest due first, on its own thread."""

    def __init__(self, config: NotifierConfig, transport: Transport, store: OutboxStore,
                 clock: Callable[[], datetime], *, scale: float, on_gone: Callable[[str, str], None]):
        super().__init__()
        self.thread_name = f"notify-{config.name}"
        self.name = config.name
        self.config, self._transport, self._store, self._clock = config, transport, store, clock
        self._scale, self._on_gone = scale, on_gone

    def halt(self) -> None:
        """Ask the thread to end after its current attempt, without waiting for it."""
        self._stop.set()
        self._kick.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._round()
            except Exception as exc:  # the state database failed: keep the queue, try again later
                log.error("notification_round_failed", notifier=self.name, error=f"{type(exc).__name__}: {exc}")
                wait = IDLE_WAIT_S
            if wait is None:
                return
            self._kick.wait(wait)
            self._kick.clear()

    def _round(self) -> float | None:
        """Send everything due; the seconds until the next is due (None: this notifier is gone)."""
        while not self._stop.is_set():
            queue = self._store.pending(self.name, limit=1)
            if not queue:
                return IDLE_WAIT_S
            wait = (queue[0].next_at - self._clock()).total_seconds()
            if wait > 0:
                return min(wait, IDLE_WAIT_S)
            if not self._attempt(queue[0]):
                return None
        return 0.0

    def _attempt(self, item: Pending) -> bool:
        """One attempt at `item`; False when the receiver said the notifier is gone."""
        started = time.monotonic()
        attempt = item.attempts + 1
        try:
            self._transport.send(item.event, timeout=self.config.timeout_s)
        except DeliveryFailed as exc:
            return self._failed(item, exc.message, gone=exc.gone)
        except Exception as exc:  # a transport's bug fails the attempt, never the thread
            return self._failed(item, f"{type(exc).__name__}: {exc}", gone=False)
        self._store.delivered(item, self._clock())
        log.info("notification_delivered", notifier=self.name, event_id=item.event.id, event_type=item.event.type,
                 attempt=attempt, duration_ms=round((time.monotonic() - started) * 1000, 1))
        return True

    def _failed(self, item: Pending, error: str, *, gone: bool) -> bool:
        now, attempt = self._clock(), item.attempts + 1
        fields = dict(notifier=self.name, event_id=item.event.id, event_type=item.event.type, attempt=attempt,
                      error=error)
        due = None if gone or item.event.type == EventType.NOTIFIER_TEST else \
            next_attempt(item.enqueued_at, attempt, failed_at=now, scale=self._scale)
        if due is not None:
            self._store.retry(item, error, due, now)
            log.warning("notification_failed", **fields, next_attempt_at=due.isoformat())
        elif gone or item.event.type == EventType.NOTIFIER_TEST:
            self._store.give_up(item, error, now, result="failed")
            log.error("notification_failed", **fields, next_attempt_at=None)
        else:
            self._store.give_up(item, error, now)
            log.error("notification_expired", **fields, enqueued_at=item.enqueued_at.isoformat())
        if gone:
            self._on_gone(self.name, error)
        return not gone


class Deliveries:
    """The notifiers of the config in force: routing into the outbox, one worker each, their figures."""

    def __init__(self, config: Callable[[], Any], store: OutboxStore, clock: Callable[[], datetime], emit: Emit,
                 *, host: str | None = None, transports: TransportFor = transport_for):
        self._config, self._store, self._clock, self._emit = config, store, clock, emit
        self._host = host or socket.gethostname()
        self._transports = transports
        self._scale = float(os.environ.get(SCALE_ENV) or 1.0)
        self._lock = threading.Lock()
        self._workers: dict[str, NotifierWorker] = {}
        self._down: dict[str, tuple[str, str]] = {}  # notifier -> (code, why) it does not deliver now

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start a worker per enabled notifier; drop the queues of notifiers no longer configured."""
        self.reload()

    def reload(self) -> None:
        """Apply the config in force: a notifier whose settings changed gets a new worker (the old one ends
        after its attempt under way), one removed or disabled loses its worker, a gone one is enabled again."""
        notifiers = self._notifiers()
        for name, count in self._store.drop_except(n.name for n in notifiers).items():
            log.warning("notifications_dropped", notifier=name, count=count, reason="notifier no longer configured")
        self._store.forget_routed(self._clock() - timedelta(seconds=ROUTED_KEPT_S))
        wanted = {cfg.name: cfg for cfg in notifiers if cfg.enabled}
        with self._lock:
            self._down = {}
            for name, worker in list(self._workers.items()):
                if wanted.get(name) != worker.config:
                    worker.halt()
                    del self._workers[name]
            for name, cfg in wanted.items():
                if name not in self._workers:
                    self._start_worker(cfg)

    def stop(self) -> None:
        """End every worker (each after its attempt under way, waiting up to 5 s for each)."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.halt()
        for worker in workers:
            worker.stop()

    def _start_worker(self, cfg: NotifierConfig) -> None:
        try:
            transport = self._transports(cfg, host=self._host)
        except Exception as exc:  # load_config checked its files; one changed since
            self._down[cfg.name] = ("notifier_unavailable", f"cannot be set up: {exc}")
            log.error("notifier_unavailable", notifier=cfg.name, kind=cfg.kind, error=f"{type(exc).__name__}: {exc}")
            return
        worker = NotifierWorker(cfg, transport, self._store, self._clock, scale=self._scale, on_gone=self._gone)
        self._workers[cfg.name] = worker
        worker.start()

    def _gone(self, name: str, error: str) -> None:
        with self._lock:
            self._down[name] = ("notifier_gone", f"the receiver answered 410 Gone: {error}")
            self._workers.pop(name, None)  # its thread ends on its own
        log.error("notifier_disabled", notifier=name, error=error, note="enabled again by a reload or a restart")
        self._emit(EventType.NOTIFIER_DISABLED, error_code="notifier_gone", message=f"notifier {name!r}: {error}",
                   details={"notifier": name})

    # -- routing ------------------------------------------------------------------------------------
    def route(self, event: Event, request: NotifyRequest | None = None, final: bool = False) -> None:
        """Event bus sink: queue `event` for the notifiers it goes to. Never raises: a failure to queue
        is logged and the job's outcome stands."""
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
                    self.route(event, NotifyRequest.from_wire(job.get("notify")), final=index == len(events) - 1)
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
