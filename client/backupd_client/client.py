"""`Client`: a typed, blocking API over backupd's control socket (docs/PROTOCOL.md), one method per op,
over the transport in `transport.py` (timeouts, resends, streams).

Not thread-safe: use one Client per thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from .errors import BadUsageError
from .protocol import FINAL_STATUSES, Event, Op
from .transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, WAIT_SLICE_S, Transport, probe_socket, resolve_socket
from .types import (Backup, Destination, DestinationHealth, Health, Job, Nearest, Schedule, ScheduleStats,
                    Status, StreamedEvent)


class Client(Transport):
    """`with Client() as c: job = c.backup_create("app")`. Methods return the daemon's plain dicts
    and lists, and raise `errors.ClientError` subclasses named after the protocol's error codes."""

    def status(self) -> Status:
        return self.call(Op.STATUS)

    def health(self) -> Health:
        return self.call(Op.HEALTH)

    def metrics(self) -> dict[str, Any]:
        """The daemon's metrics: `summary` (samples by name: labels and value) and `text` (the exposition)."""
        return self.call(Op.METRICS)

    def backup_create(self, source: str, strategy: str = "auto", priority: str = "normal",
                      tags: Iterable[str] = (), description: str = "",
                      destinations: Iterable[str] | None = None, metadata: Mapping[str, str] | None = None,
                      validate_level: str | None = None, notify: Iterable[str] = (),
                      notify_on: Iterable[str] = ()) -> Job:
        """Queue a backup (to `destinations`, default every enabled one), recording `metadata` with it and
        validating it at `validate_level` once stored; its outcome also goes to the `notify` notifiers,
        as `notify_on` asks (failure, success, completion; default failure). Returns its job at once."""
        return self.call(Op.BACKUP_CREATE, {"source": source, "strategy": strategy, "priority": priority,
                                            "tags": list(tags), "description": description,
                                            "destinations": None if destinations is None else list(destinations),
                                            "metadata": None if metadata is None else dict(metadata),
                                            "validate_level": validate_level, "notify": list(notify) or None,
                                            "notify_on": list(notify_on) or None})

    def job_get(self, job_id: str) -> Job:
        return self.call(Op.JOB_GET, {"job_id": job_id})

    def job_list(self, status: str | None = None, source: str | None = None, kind: str | None = None,
                 limit: int | None = None) -> list[Job]:
        """Jobs, newest first."""
        return self.call(Op.JOB_LIST, {"status": status, "source": source, "kind": kind, "limit": limit})

    def job_cancel(self, job_id: str) -> Job:
        return self.call(Op.JOB_CANCEL, {"job_id": job_id})

    def job_wait(self, job_id: str, timeout_s: float | None = None,
                 on_progress: Callable[[Job], None] | None = None) -> Job:
        """Wait until the job ends (or `timeout_s` passes: then the job is returned as it stands, with
        a status that is not final). With `on_progress`, the daemon streams the job as it progresses
        and each one is passed to it. The wait is asked for in slices of WAIT_SLICE_S, each read with
        that slice plus the client timeout, so a daemon that dies during a long wait is noticed."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)

        def on_event(event: Event) -> None:
            if on_progress is not None and isinstance(event.data, dict):
                on_progress(event.data)  # type: ignore[arg-type]

        while True:
            started = time.monotonic()
            slice_s = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, max(0.0, deadline - started))
            job: Job = self.call(Op.JOB_WAIT, {"job_id": job_id, "timeout_s": slice_s,
                                          "progress": True if on_progress else None},
                            timeout=slice_s + self.timeout, on_event=on_event)
            now = time.monotonic()
            if not isinstance(job, dict) or job.get("status") in FINAL_STATUSES:
                return job
            if deadline is not None and now >= deadline:
                return job
            if now - started < slice_s / 2:  # answered early yet unfinished: do not spin
                time.sleep(min(1.0, slice_s / 2))

    def restore_points(self, source: str | None = None) -> list[Backup]:
        """Restore points: the objects `backupd list --json` prints."""
        return self.call(Op.RESTORE_POINTS, {"source": source})

    def restore_nearest(self, source: str, at: str | datetime) -> Nearest:
        return self.call(Op.RESTORE_NEAREST, {"source": source, "at": iso_time(at)})

    def restore_create(self, source: str, to: str | os.PathLike[str], backup_id: str | None = None,
                       at: str | datetime | None = None, tables: Iterable[str] | None = None,
                       overwrite: bool = False, copy_selection: str | None = None) -> Job:
        """Queue a restore of `backup_id`, or of the newest restore point at or before `at`, to `to`.
        `copy_selection` ("priority" or "most_reliable") overrides the daemon's `[restore] copy_selection`."""
        if (backup_id is None) == (at is None):
            raise BadUsageError("restore: give exactly one of backup_id and at")
        return self.call(Op.RESTORE_CREATE, {
            "source": source, "to": os.fspath(to), "backup_id": backup_id,
            "at": None if at is None else iso_time(at), "tables": None if tables is None else list(tables),
            "overwrite": overwrite, "copy_selection": copy_selection})

    def validate(self, backup_id: str, level: str | None = None, destination: str | None = None,
                 all_copies: bool = False, sample_percent: float | None = None) -> Job:
        """Queue a validation of the copies read first (or those on `destination`, or every copy), reading
        `sample_percent` of each copy's blocks in depth when given; the finished job's result is the report."""
        return self.call(Op.VALIDATE, {"backup_id": backup_id, "level": level, "destination": destination,
                                       "all_copies": all_copies or None, "sample_percent": sample_percent})

    def schedule_add(self, name: str, source: str, cron: str, strategy: str | None = None,
                     timezone: str | None = None, description: str | None = None,
                     tags: Iterable[str] | None = None, destinations: Iterable[str] | None = None,
                     **more: Any) -> Schedule:
        """Add a run-time schedule; `more` takes the other schedule fields of the config (job, retry, ...)."""
        return self.call(Op.SCHEDULE_ADD, {"name": name, "source": source, "cron": cron, "strategy": strategy,
                                           "timezone": timezone, "description": description,
                                           "tags": None if tags is None else list(tags),
                                           "destinations": None if destinations is None else list(destinations),
                                           **more})

    def schedule_list(self) -> list[Schedule]:
        return self.call(Op.SCHEDULE_LIST)

    def schedule_remove(self, name: str) -> dict[str, Any]:
        return self.call(Op.SCHEDULE_REMOVE, {"name": name})

    def schedule_pause(self, name: str) -> Schedule:
        return self.call(Op.SCHEDULE_PAUSE, {"name": name})

    def schedule_resume(self, name: str) -> Schedule:
        return self.call(Op.SCHEDULE_RESUME, {"name": name})

    def schedule_stats(self, name: str | None = None) -> list[ScheduleStats]:
        return self.call(Op.SCHEDULE_STATS, {"name": name})

    def destination_list(self) -> list[Destination]:
        return self.call(Op.DESTINATION_LIST)

    def destination_health(self, name: str | None = None, refresh: bool = False) -> list[DestinationHealth]:
        """The daemon's latest probe of each destination (or of `name`). With `refresh`, new probes start
        and the answer is still the previous one: see `destination_health_fresh`."""
        return self.call(Op.DESTINATION_HEALTH, {"name": name, "refresh": refresh or None})

    def destination_health_fresh(self, name: str | None = None, timeout: float = 60.0,
                                 interval: float = 0.2) -> list[DestinationHealth]:
        """Start new probes and wait (up to `timeout` seconds) until each enabled destination has answered."""
        before = {h["name"]: h["checked_at"] for h in self.destination_health(name, refresh=True)}
        deadline = time.monotonic() + timeout
        while True:
            now = self.destination_health(name)
            pending = [h for h in now if h["enabled"] and (h["checked_at"] == before.get(h["name"]) or h["probing"])]
            if not pending or time.monotonic() >= deadline:
                return now
            time.sleep(interval)

    def destination_add(self, destination: dict[str, Any]) -> Destination:
        """Add a destination at run time: `destination` is a [[destinations]] table (absolute paths).
        The daemon keeps it across restarts; it is probed at once (see destination_health)."""
        return self.call(Op.DESTINATION_ADD, {"destination": destination})

    def destination_enable(self, name: str) -> Destination:
        return self.call(Op.DESTINATION_ENABLE, {"name": name})

    def destination_disable(self, name: str) -> Destination:
        """New backups skip a disabled destination and restores do not read from it; it stays configured."""
        return self.call(Op.DESTINATION_DISABLE, {"name": name})

    def destination_remove(self, name: str, force: bool = False) -> dict[str, Any]:
        """Forget a destination added at run time (its files stay). Refused while it holds the only copy of
        a backup, unless `force`."""
        return self.call(Op.DESTINATION_REMOVE, {"name": name, "force": force or None})

    def destination_resync(self, source: str | None = None) -> list[Job]:
        """Start resync jobs (one per source) that copy missing backups onto the destinations lacking them."""
        return self.call(Op.DESTINATION_RESYNC, {"source": source})

    def prune(self, dry_run: bool = True) -> dict[str, Any]:
        """Apply retention (or, by default, only plan it); returns the plan with a reason per backup."""
        return self.call(Op.PRUNE, {"dry_run": dry_run})

    def inventory(self, days: int | None = None) -> dict[str, Any]:
        """Totals by source, strategy and destination, chain lengths, missing copies, verification coverage
        over the last `days` days (default 30)."""
        return self.call(Op.INVENTORY, {"days": days})

    def notify_list(self) -> list[dict[str, Any]]:
        """Each notifier: kind, events, state (enabled, disabled, down), queue length, counts by result
        and its last delivery (`last_result`, `last_at`, `last_event_id`, `last_error`)."""
        return self.call(Op.NOTIFY_LIST)

    def notify_test(self, name: str) -> dict[str, Any]:
        """Queue a `notifier.test` event for notifier `name` (tried once); returns its `event_id`: the
        result shows in `notify_list` once that notifier's `last_event_id` is it."""
        return self.call(Op.NOTIFY_TEST, {"name": name})

    def config_reload(self) -> dict[str, Any]:
        return self.call(Op.CONFIG_RELOAD)

    def events(self, types: Iterable[str] = (), source: str | None = None, *, follow: bool = True,
               history: int = 0, timeout_s: float | None = None,
               queue_size: int | None = None) -> Iterator[StreamedEvent]:
        """Events as they happen (`types`: patterns such as `backup.*` or `*.failed`; none: all), after up
        to `history` recent ones; each carries `dropped`, the events lost since the previous one because this
        subscriber's queue (`queue_size`, at most 1000) was full. Without `follow`, only the recent ones.
        The stream is asked for in slices of WAIT_SLICE_S (the daemon keeps the subscription between
        them) and ends after `timeout_s`, or never."""
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        args: dict[str, Any] = {"types": list(types) or None, "source": source, "history": history or None,
                                "follow": follow, "queue_size": queue_size}
        while True:
            slice_s = WAIT_SLICE_S if deadline is None else max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic()))
            stream = self._stream(Op.EVENTS_SUBSCRIBE, {**args, "timeout_s": slice_s}, slice_s + self.timeout)
            while True:
                try:
                    event = next(stream)
                except StopIteration as end:
                    reply = end.value
                    break
                if isinstance(event.data, dict) and isinstance(event.data.get("event"), dict):
                    yield {**event.data["event"], "dropped": event.data.get("dropped", 0)}
            if not follow or (deadline is not None and time.monotonic() >= deadline):
                return
            args = {"subscription": reply["subscription"]}


def iso_time(at: str | datetime) -> str:
    """An ISO 8601 time with a timezone, as the protocol takes it; `now` and `-DURATION` (`-2h`) pass as
    they are, for the daemon to resolve on its clock."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise BadUsageError(f"time {at.isoformat()} has no timezone")
        return at.isoformat()
    if isinstance(at, str) and (at.strip() == "now" or at.strip().startswith("-")):
        return at.strip()
    try:
        parsed = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        raise BadUsageError(f"{at!r} is not an ISO 8601 time (example: 2026-11-26T14:30:00Z)") from None
    if parsed.tzinfo is None:
        raise BadUsageError(f"{at!r} has no timezone; add Z or an offset such as +01:00")
    return at


__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "Client", "iso_time", "probe_socket", "resolve_socket"]
