"""The in-process event bus: every event (core.events) is published here, logged once as
`event_published`, kept in a bounded ring of recent events, and copied to each subscriber whose
filter wants it.

Publishing never blocks and never fails: each subscriber has a bounded queue, and an event that finds
it full is dropped for that subscriber only and counted; the count is handed to it with the next
event it takes (`Subscription.take`). The control server drains the queues of the `events.subscribe`
streams; a slow stream loses its own events and slows nothing else.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from backupd.core.events import Event, EventFilter, EventType, destination_event, job_events, started_event
from backupd.core.routing import NotifyRequest
from backupd.core.vocab import FINAL_STATUSES, JobStatus

log = structlog.get_logger("backupd.events")
Sink = Callable[[Event, NotifyRequest | None, bool], None]
QUEUE_SIZE = 1000  # per subscriber
RECENT_SIZE = 500  # events kept for `backupctl events` without --follow


class Subscription:
    """One subscriber's bounded queue of the events its filter wants."""

    def __init__(self, sid: str, wanted: EventFilter, size: int = QUEUE_SIZE):
        self.id = sid
        self.filter = wanted
        self.size = size
        self.dropped = 0  # dropped since the last event taken
        self.dropped_total = 0
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()

    def offer(self, event: Event) -> bool:
        """Queue `event` if the filter wants it and there is room; False when it was dropped."""
        if not self.filter(event):
            return True
        with self._lock:
            if len(self._queue) >= self.size:
                self.dropped += 1
                self.dropped_total += 1
                return False
            self._queue.append(event)
            return True

    def take(self) -> tuple[Event, int] | None:
        """The oldest queued event and how many were dropped before it (since the last take), or None."""
        with self._lock:
            if not self._queue:
                return None
            dropped, self.dropped = self.dropped, 0
            return self._queue.popleft(), dropped

    def __len__(self) -> int:
        return len(self._queue)


class EventBus:
    def __init__(self, clock: Callable[[], datetime], recent: int = RECENT_SIZE):
        self.clock = clock
        self._lock = threading.Lock()
        self._recent: deque[Event] = deque(maxlen=recent)
        self._subs: dict[str, Subscription] = {}
        self._sinks: list[Sink] = []
        self._running: set[tuple[str, Any]] = set()  # (job id, attempt) whose start was seen

    def add_sink(self, sink: Sink) -> None:
        """Hand every published event to `sink(event, request, final)` too (the notification outbox)."""
        self._sinks.append(sink)

    def publish(self, event: Event, request: NotifyRequest | None = None, final: bool = False) -> None:
        """Log `event`, keep it among the recent ones, queue it for every subscriber that wants it and
        hand it to the sinks; `request` and `final`: the notify request of the job whose last event it is."""
        log.info("event_published", **{k: v for k, v in event.to_wire().items() if v not in (None, [], {})})
        with self._lock:
            self._recent.append(event)
            subs = list(self._subs.values())
        for sub in subs:
            sub.offer(event)
        for sink in self._sinks:
            sink(event, request, final)

    def emit(self, event_type: EventType | str, **fields: Any) -> Event:
        """Publish a new event of `event_type` now, with a fresh id; returns it."""
        now = self.clock()
        event = Event(id=new_id(now), type=EventType(event_type), at=now.isoformat(), **fields)
        self.publish(event)
        return event

    def subscribe(self, wanted: EventFilter, *, size: int = QUEUE_SIZE, history: int = 0) -> Subscription:
        """A new subscription, its queue starting with up to `history` recent events the filter wants."""
        sub = Subscription(new_id(self.clock()), wanted, size)
        with self._lock:
            for event in [e for e in self._recent if wanted(e)][-history:] if history else []:
                sub.offer(event)
            self._subs[sub.id] = sub
        return sub

    def unsubscribe(self, sid: str) -> None:
        with self._lock:
            self._subs.pop(sid, None)

    def subscription(self, sid: str) -> Subscription | None:
        with self._lock:
            return self._subs.get(sid)

    def recent(self, wanted: EventFilter, limit: int = RECENT_SIZE) -> list[Event]:
        """The last `limit` recent events the filter wants, oldest first."""
        with self._lock:
            return [e for e in self._recent if wanted(e)][-limit:]

    # -- the daemon's sources of events -------------------------------------------------------------
    def job_changed(self, job: dict[str, Any]) -> None:
        """Supervisor listener: `backup.started` once per attempt that starts running, the outcome
        events when a job ends. It never raises into the supervisor: a job's outcome stands."""
        try:
            self._job_events(job)
        except Exception as exc:  # a bug here must not change or stop a job
            log.error("event_derivation_failed", job_id=job.get("job_id"), error=f"{type(exc).__name__}: {exc}")

    def _job_events(self, job: dict[str, Any]) -> None:
        at = self.clock().isoformat()
        if job["status"] == JobStatus.RUNNING:
            attempt = (job["job_id"], job.get("attempt"))
            if attempt not in self._running:
                self._running.add(attempt)
                started = started_event(job, at)
                if started is not None:
                    self.publish(started)
        elif job["status"] in FINAL_STATUSES:
            self._running = {a for a in self._running if a[0] != job["job_id"]}
            events = job_events(job, at)
            for index, event in enumerate(events):
                self.publish(event, NotifyRequest.from_wire(job.get("notify")), final=index == len(events) - 1)

    def health_changed(self, name: str, before: str, after: str, problems: list[str]) -> None:
        """HealthMonitor listener: a destination's status changed."""
        now = self.clock()
        event = destination_event(name, before, after, id=new_id(now), at=now.isoformat(), problems=problems)
        if event is not None:
            self.publish(event)


def new_id(now: datetime) -> str:
    """A unique id that sorts by time: `e20261204T033000123456-1a2b3c4d`."""
    return now.strftime("e%Y%m%dT%H%M%S%f-") + secrets.token_hex(4)
