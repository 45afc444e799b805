"""The notification outbox: the state database's record of what is still to be delivered, and to whom.

One row per (event id, notifier) from the moment an event is routed until it is delivered or given
up, so a daemon killed before a delivery delivers after its restart, with the same event id.
`notifier_figures` keeps each notifier's counts and its last result (for `backupctl notify ls` and
the metrics); `routed_events` the ids already routed, so a restart routes a missed job outcome once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from backupd.core.events import Event
from backupd.state.db import StateDB

RESULTS = ("delivered", "failed", "expired")  # a counted attempt's result (`failed`: to be retried, or a test's)


@dataclass(frozen=True)
class Pending:
    """A notification still to deliver: the event, its notifier, and where its retries stand."""

    event: Event
    notifier: str
    enqueued_at: datetime
    next_at: datetime
    attempts: int
    last_error: str | None


class OutboxStore:
    """The outbox tables on one connection of their own, used by the daemon's threads one at a time.

    Its commits do not wait for fsync (`synchronous=NORMAL`, per connection; the WAL keeps them across
    a SIGKILL): an outbox fsync per delivery would hold the state database's write lock that backups
    and the job history need. Power lost within a second of a commit can undo it: a delivery is then
    sent again (at least once, same id), and a job outcome's routing, undone with its queue rows in
    one transaction, is redone at the next start from the job history, which is fsynced; a watchdog or
    destination event (freshness, alerts, health changes) queued in that second is lost."""

    def __init__(self, db: StateDB):
        self._db = db
        self._lock = threading.Lock()
        db.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def _tx(self) -> Iterator[StateDB]:
        with self._lock, self._db.transaction():
            yield self._db

    def routed_since(self) -> str:
        """When routing was first recorded here (jobs that ended before are never routed again)."""
        with self._lock:
            row = self._db.execute("SELECT routed_at FROM routed_events WHERE event_id = ''").fetchone()
        return str(row[0])

    def unrouted(self, event_ids: Iterable[str]) -> set[str]:
        """Which of `event_ids` were never routed."""
        ids = list(event_ids)
        with self._lock:
            seen = {r[0] for r in self._db.execute(
                f"SELECT event_id FROM routed_events WHERE event_id IN ({', '.join('?' * len(ids))})", ids)}
        return set(ids) - seen

    def enqueue(self, event: Event, notifiers: Iterable[str], now: datetime) -> int:
        """Queue `event` for each of `notifiers`, due now, and (a job's event) record it as routed, in one
        transaction; an (event, notifier) pair already queued is left as it is. Returns how many rows
        were added."""
        wire, at = json.dumps(event.to_wire(), default=str), now.isoformat()
        with self._tx() as db:
            if event.job_id is not None:  # only a job's outcome can be routed again (from the job history)
                db.execute("INSERT OR IGNORE INTO routed_events VALUES (?, ?)", (event.id, at))
            added = 0
            for name in notifiers:
                added += db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, 0, NULL)",
                                    (event.id, name, wire, at, at)).rowcount
        return added

    def pending(self, notifier: str, *, limit: int = 50) -> list[Pending]:
        """The notifier's queued notifications, the soonest due first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event, enqueued_at, next_at, attempts, last_error FROM outbox WHERE notifier = ?"
                " ORDER BY next_at, enqueued_at LIMIT ?", (notifier, limit)).fetchall()
        return [Pending(Event.from_wire(json.loads(event)), notifier, datetime.fromisoformat(enqueued),
                        datetime.fromisoformat(due), attempts, error) for event, enqueued, due, attempts, error in rows]

    def delivered(self, item: Pending, now: datetime) -> None:
        """The notification arrived: it leaves the queue."""
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE event_id = ? AND notifier = ?", (item.event.id, item.notifier))
            self._count(db, item, "delivered", None, now)

    def retry(self, item: Pending, error: str, due: datetime, now: datetime) -> None:
        """An attempt failed; the next is due at `due`."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE event_id = ?"
                       " AND notifier = ?", (due.isoformat(), error, item.event.id, item.notifier))
            self._count(db, item, "failed", error, now)

    def give_up(self, item: Pending, error: str, now: datetime, *, result: str = "expired") -> None:
        """The last attempt failed (`expired`: its retries are used up; `failed`: one attempt only, a test)."""
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE event_id = ? AND notifier = ?", (item.event.id, item.notifier))
            self._count(db, item, result, error, now)

    def drop_except(self, notifiers: Iterable[str]) -> dict[str, int]:
        """Remove the queued notifications of notifiers no longer configured; how many each had."""
        keep = list(notifiers)
        where = f"notifier NOT IN ({', '.join('?' * len(keep))})" if keep else "1"
        with self._tx() as db:
            counts = {n: c for n, c in db.execute(f"SELECT notifier, count(*) FROM outbox WHERE {where}"
                                                  " GROUP BY notifier", keep)}
            db.execute(f"DELETE FROM outbox WHERE {where}", keep)
        return counts

    def forget_routed(self, before: datetime) -> None:
        """Forget the routing of events routed before `before` (the marker of `routed_since` stays)."""
        with self._tx() as db:
            db.execute("DELETE FROM routed_events WHERE event_id != '' AND routed_at < ?", (before.isoformat(),))

    def figures(self) -> dict[str, dict[str, object]]:
        """Per notifier with a queue or a history: `queue`, the counts of RESULTS, and its last result
        (`last_result`, `last_at`, `last_event_id`, `last_error`)."""
        with self._lock:
            queues = dict(self._db.execute("SELECT notifier, count(*) FROM outbox GROUP BY notifier").fetchall())
            rows = self._db.execute("SELECT notifier, delivered, failed, expired, last_result, last_at, last_event_id,"
                                    " last_error FROM notifier_figures").fetchall()
        out: dict[str, dict[str, object]] = {
            r[0]: {"queue": queues.get(r[0], 0), "delivered": r[1], "failed": r[2], "expired": r[3],
                   "last_result": r[4], "last_at": r[5], "last_event_id": r[6], "last_error": r[7]} for r in rows}
        for name, queued in queues.items():
            out.setdefault(name, {"queue": queued, "delivered": 0, "failed": 0, "expired": 0, "last_result": None,
                                  "last_at": None, "last_event_id": None, "last_error": None})
        return out

    @staticmethod
    def _count(db: StateDB, item: Pending, result: str, error: str | None, now: datetime) -> None:
        assert result in RESULTS, result  # a column name: never from outside
        db.execute("INSERT OR IGNORE INTO notifier_figures (notifier) VALUES (?)", (item.notifier,))
        db.execute(f"UPDATE notifier_figures SET {result} = {result} + 1, last_result = ?, last_at = ?,"
                   " last_event_id = ?, last_error = ? WHERE notifier = ?",
                   (result, now.isoformat(), item.event.id, error, item.notifier))
