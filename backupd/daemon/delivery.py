"""One notifier's delivery thread: it sends what is due in its outbox queue, one attempt at a time.

An attempt is bounded by the notifier's `timeout`; a failure is retried on the Standard Webhooks
schedule (core.redelivery) and given up 24 h after the event was queued, also when the row is only
picked up then (a notifier that was disabled or down meanwhile does not send day-old news). After a
failed attempt the rest of the queue waits for that retry (the receiver is down: trying each
overdue row in turn would only hold new events up), unless a new event wakes the thread. A worker
that replaces another (its settings or files changed) starts once the old one's attempt is over,
so no row is ever sent by two threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

import structlog

from backupd.config.notifiers import NotifierConfig
from backupd.core.events import EventType
from backupd.core.redelivery import GIVE_UP_AFTER_S, next_attempt
from backupd.daemon.loop import BackgroundLoop
from backupd.notify.base import DeliveryFailed, Transport
from backupd.state.outbox import OutboxStore, Pending

log = structlog.get_logger("backupd.notify")
IDLE_WAIT_S = 60.0
JOIN_MARGIN_S = 2.0  # beyond an attempt's timeout, for its bookkeeping


class _Failed(Exception):
    """An attempt failed; `retry_at`: when it is tried again (None: never)."""

    def __init__(self, retry_at: datetime | None):
        super().__init__()
        self.retry_at = retry_at


class _Gone(Exception):
    """The receiver answered 410 Gone: the notifier is disabled."""


class NotifierWorker(BackgroundLoop):
    """Delivers one notifier's queue, soonest due first, on its own thread (after `after` has ended)."""

    def __init__(self, config: NotifierConfig, transport: Transport, store: OutboxStore,
                 clock: Callable[[], datetime], *, scale: float,
                 on_gone: Callable[[NotifierWorker, str], None], after: NotifierWorker | None = None):
        super().__init__()
        self.thread_name = f"notify-{config.name}"
        self.name = config.name
        self.config, self._transport, self._store, self._clock = config, transport, store, clock
        self._scale, self._on_gone, self._after = scale, on_gone, after

    def halt(self) -> None:
        """Ask the thread to end after its current attempt, without waiting for it."""
        self._stop.set()
        self._kick.set()

    def wait_ended(self) -> bool:
        """Wait for the thread to end (its attempt under way is bounded by the timeout); False if it did not."""
        if self._thread is not None:
            self._thread.join(self.config.timeout_s + JOIN_MARGIN_S)
        return not self.alive

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while self._after is not None and self._after.alive and not self._stop.is_set():
            self._after.wait_ended()
        self._after = None
        while not self._stop.is_set():
            self._kick.clear()  # before the round: a kick during it runs another
            try:
                wait = self._round()
            except Exception as exc:  # the state database failed: keep the queue, try again later
                log.error("notification_round_failed", notifier=self.name, error=f"{type(exc).__name__}: {exc}")
                wait = IDLE_WAIT_S
            if wait is None:
                return
            self._kick.wait(wait)

    def _round(self) -> float | None:
        """Send everything due; the seconds to wait before the next round (None: this notifier is gone)."""
        while not self._stop.is_set():
            queue = self._store.pending(self.name, limit=1)
            if not queue:
                return IDLE_WAIT_S
            item, now = queue[0], self._clock()
            wait = (item.next_at - now).total_seconds()
            if wait > 0:
                return min(wait, IDLE_WAIT_S)
            if now - item.enqueued_at > timedelta(seconds=GIVE_UP_AFTER_S * self._scale):
                self._expire(item, item.last_error or "not sent within 24 h of the event")
                continue
            try:
                self._attempt(item)
            except _Gone:
                return None
            except _Failed as failed:  # the receiver is down or refusing: the rest waits for this one's retry
                if failed.retry_at is not None:
                    return min(max((failed.retry_at - self._clock()).total_seconds(), 0.0), IDLE_WAIT_S)
        return 0.0

    def _attempt(self, item: Pending) -> None:
        """One attempt at `item`; _Failed or _Gone when it did not arrive."""
        started = time.monotonic()
        try:
            self._transport.send(item.event, timeout=self.config.timeout_s)
        except DeliveryFailed as exc:
            self._failed(item, exc.message, gone=exc.gone)
        except Exception as exc:  # a transport's bug fails the attempt, never the thread; its text may hold a secret
            self._failed(item, f"unexpected {type(exc).__name__} in the {self.config.kind} notifier", gone=False)
        self._store.delivered(item, self._clock())
        log.info("notification_delivered", notifier=self.name, event_id=item.event.id, event_type=item.event.type,
                 attempt=item.attempts + 1, duration_ms=round((time.monotonic() - started) * 1000, 1))

    def _failed(self, item: Pending, error: str, *, gone: bool) -> NoReturn:
        """Record a failed attempt (retry, give up, or expire), then raise _Gone or _Failed."""
        now, attempt = self._clock(), item.attempts + 1
        once = gone or item.event.type == EventType.NOTIFIER_TEST
        due = None if once else next_attempt(item.enqueued_at, attempt, failed_at=now, scale=self._scale)
        fields = dict(notifier=self.name, event_id=item.event.id, event_type=item.event.type, attempt=attempt,
                      error=error)
        if due is not None:
            self._store.retry(item, error, due, now)
            log.warning("notification_failed", **fields, next_attempt_at=due.isoformat())
        elif once:
            self._store.give_up(item, error, now, result="failed")
            log.error("notification_failed", **fields, next_attempt_at=None)
        else:
            self._expire(item, error, attempt=attempt)
        if gone:
            self._on_gone(self, error)
            raise _Gone
        raise _Failed(due)

    def _expire(self, item: Pending, error: str, *, attempt: int | None = None) -> None:
        self._store.give_up(item, error, self._clock())
        log.error("notification_expired", notifier=self.name, event_id=item.event.id, event_type=item.event.type,
                  attempt=attempt if attempt is not None else item.attempts, error=error,
                  enqueued_at=item.enqueued_at.isoformat())
