"""Schedules: APScheduler 3.x is the clock; its callbacks only hand a job request to the supervisor.

Triggers are built from core.cron's parse (Sunday = 0 or 7, weekday names handed to APScheduler).
Missed runs while the daemon was down are caught up once at start, from the last fire times the
store keeps (APScheduler's memory job store forgets everything on restart).
"""

from __future__ import annotations

import builtins
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from backupd.config import ScheduleConfig, parse_schedule
from backupd.core.cron import missed_runs
from backupd.core.routing import NotifyRequest
from backupd.core.vocab import ACTIVE_STATUSES, FAILED_STATUSES, SUCCESS_STATUSES, JobStatus, ScheduleJob
from backupd.core.windows import DAY_NAMES
from backupd.daemon.jobspec import BackupJob, PruneJob
from backupd.daemon.store import DaemonStore
from backupd.daemon.supervisor import Conflict, Supervisor
from backupd.errors import NotFound

log = structlog.get_logger("backupd.scheduler")


class SpecTrigger(BaseTrigger):
    """An APScheduler trigger driven by core.cron: correct across DST changes (a skipped wall-clock time
    is not run, a repeated one runs once), where APScheduler 3.x's CronTrigger is not."""

    def __init__(self, spec: Any, tz: ZoneInfo):
        self.spec = spec
        self.tz = tz

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        base = previous_fire_time if previous_fire_time is not None else now - timedelta(microseconds=1)
        return self.spec.next_after(base.astimezone(self.tz))

    def __str__(self) -> str:
        return f"cron[{self.tz.key}]"


class ScheduleBook:
    def __init__(self, supervisor: Supervisor, store: DaemonStore):
        self.sup = supervisor
        self.store = store
        self._sched = BackgroundScheduler(timezone=timezone.utc, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        self._entries: dict[str, tuple[Any, str]] = {}  # name -> (ScheduleConfig, origin)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._load(self.sup.config)
        self._sched.start()
        self.catch_up()

    def stop(self) -> None:
        self._sched.shutdown(wait=False)

    def reload(self, config: Any) -> None:
        """Replace config schedules by the new config's; runtime ones stay (if their source still exists)."""
        for name, (_, origin) in list(self._entries.items()):
            self._unschedule(name)
        self._load(config)

    def _load(self, config: Any) -> None:
        paused = self.store.paused()
        for sc in config.schedules:
            self._register(sc, "config", sc.name in paused)
        for name, spec, is_paused in self.store.runtime_schedules():
            if name in self._entries:
                log.warning("schedule_shadowed", schedule=name, reason="a config schedule has the same name")
                continue
            try:
                self._register(self._parse(spec, config), "runtime", is_paused)
            except Exception as exc:
                log.error("schedule_invalid", schedule=name, error=str(exc))

    @staticmethod
    def _parse(spec: dict[str, Any], config: Any) -> Any:
        """A runtime schedule, validated like a [[schedules]] table (`true` for validate_after_backup
        means the config's default validation level)."""
        return parse_schedule(spec, {s.name for s in config.sources}, destinations={d.name for d in config.destinations},
                              notifiers={n.name for n in config.notifiers},
                              default_validation_level=config.validation.default_level)

    def _register(self, sc: Any, origin: str, paused: bool) -> None:
        self._entries[sc.name] = (sc, origin)
        if not sc.enabled:
            return
        trigger = SpecTrigger(sc.cron_spec, ZoneInfo(sc.timezone))
        self._sched.add_job(self._fire, trigger, args=[sc.name], id=sc.name, name=sc.name, replace_existing=True)
        if paused:
            self._sched.pause_job(sc.name)
        if self.store.last_fire(sc.name) is None:
            self.store.record_fire(sc.name, self.sup.clock())  # the baseline catch-up counts from

    def _unschedule(self, name: str) -> None:
        self._entries.pop(name, None)
        if self._sched.get_job(name) is not None:
            self._sched.remove_job(name)

    # -- firing ----------------------------------------------------------------------------------
    def _fire(self, name: str, caught_up: datetime | None = None) -> None:
        entry = self._entries.get(name)
        if entry is None:
            return
        sc = entry[0]
        self.store.record_fire(name, self.sup.clock())
        if self.sup.pending_for_schedule(name):
            log.info("schedule_fire_coalesced", schedule=name, reason="its previous run is still pending")
            return
        try:
            job = self.sup.submit(_spec(sc), schedule=name, conditions=sc.conditions, retry=sc.retry,
                                  max_staleness_s=sc.max_staleness_s, timeout_s=sc.timeout_s,
                                  notify=NotifyRequest(tuple(sc.notify), tuple(sc.notify_on)) if sc.notify else None)
        except Exception as exc:
            log.error("schedule_fire_failed", schedule=name, error=str(exc))
            return
        if caught_up is not None:
            log.warning("schedule_caught_up", schedule=name, missed_at=caught_up.isoformat(), job_id=job["job_id"])
        else:
            log.info("schedule_fired", schedule=name, job_id=job["job_id"])

    def catch_up(self) -> None:
        """Fire once each schedule whose newest missed run lies within the grace period."""
        now = self.sup.clock()
        grace = self.sup.config.daemon.catch_up_grace_s
        paused = self.store.paused()
        for name, (sc, _) in list(self._entries.items()):
            last = self.store.last_fire(name)
            if not sc.enabled or name in paused or last is None:
                continue
            missed = missed_runs(sc.cron_spec, last, now, grace, tz=ZoneInfo(sc.timezone))
            if missed is not None:
                self._fire(name, caught_up=missed)

    # -- control ---------------------------------------------------------------------------------
    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        sc = self._parse(spec, self.sup.config)
        if sc.name in self._entries:
            raise Conflict(f"a schedule named {sc.name!r} exists", hint="remove it first or pick another name")
        self.store.put_runtime_schedule(sc.name, spec)
        self._register(sc, "runtime", False)
        log.info("schedule_added", schedule=sc.name, cron=sc.cron, source=sc.source)
        return self.describe(sc.name)

    def remove(self, name: str) -> dict[str, Any]:
        sc, origin = self._get(name)
        if origin == "config":
            raise Conflict(f"schedule {name!r} is defined in the config file",
                           hint="remove it there and reload (SIGHUP or `backupctl` config reload), or pause it")
        self._unschedule(name)
        self.store.remove_schedule(name)
        log.info("schedule_removed", schedule=name)
        return {"removed": name}

    def pause(self, name: str, paused: bool) -> dict[str, Any]:
        sc, origin = self._get(name)
        self.store.set_paused(name, paused, origin)
        if self._sched.get_job(name) is not None:
            (self._sched.pause_job if paused else self._sched.resume_job)(name)
        if paused:
            log.info("schedule_paused", schedule=name)
        else:
            log.info("schedule_resumed", schedule=name)
        return self.describe(name)

    def _get(self, name: str) -> tuple[Any, str]:
        if name not in self._entries:
            raise NotFound(f"no schedule {name!r}", hint="list schedules with `backupctl schedule ls`")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def using(self, destination: str) -> list[str]:
        """The schedules that send their backups to `destination` by name."""
        return sorted(n for n, (sc, _) in self._entries.items() if destination in sc.destinations)

    def describe(self, name: str) -> dict[str, Any]:
        sc, origin = self._get(name)
        job = self._sched.get_job(name)
        paused = name in self.store.paused()
        next_run = job.next_run_time.isoformat() if job is not None and job.next_run_time else None
        return {
            "name": sc.name, "job": sc.job, "source": sc.source, "cron": sc.cron,
            "strategy": sc.strategy if sc.job == ScheduleJob.BACKUP else None,
            "timezone": sc.timezone, "enabled": sc.enabled, "paused": paused, "origin": origin,
            "next_run": next_run, "description": sc.description, "tags": list(sc.tags),
            "destinations": list(sc.destinations),
            "retry": _retry_wire(sc.retry), "conditions": _conditions_wire(sc.conditions),
            "validate_after_backup": sc.validate_after_backup, "max_staleness_s": sc.max_staleness_s,
            "timeout_s": sc.timeout_s, "notify": list(sc.notify), "notify_on": [str(o) for o in sc.notify_on],
        }

    def list(self) -> builtins.list[dict[str, Any]]:
        return [self.describe(n) for n in self.names()]

    def stats(self, name: str | None = None) -> builtins.list[dict[str, Any]]:
        if name:
            self._get(name)
        names = [name] if name else self.names()
        out = []
        for n in names:
            runs = self.store.jobs(limit=10_000, schedule=n)
            finished = [j for j in runs if j["status"] not in ACTIVE_STATUSES]
            ok = [j for j in finished if j["status"] in SUCCESS_STATUSES]
            failed = [j for j in finished if j["status"] in FAILED_STATUSES]
            skipped = [j for j in finished if j["status"] == JobStatus.SKIPPED]
            decided = len(ok) + len(failed)
            durations = [(datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["started_at"])).total_seconds()
                         for j in ok if j.get("started_at") and j.get("finished_at")]
            out.append({
                "name": n, "runs": len(runs), "completed": len(ok), "failed": len(failed), "skipped": len(skipped),
                "success_rate": round(len(ok) / decided, 4) if decided else None,
                "reliability": round(len(ok) / len(finished), 4) if finished else None,
                "mean_duration_s": round(sum(durations) / len(durations), 3) if durations else None,
                "last_run": runs[0]["created_at"] if runs else None,
                "next_run": self.describe(n)["next_run"],
            })
        return out


def _spec(sc: ScheduleConfig) -> BackupJob | PruneJob:
    """The job a schedule's fire runs."""
    if sc.job == ScheduleJob.BACKUP:
        return BackupJob(sc.source, strategy=sc.strategy, tags=tuple(sc.tags), description=sc.description,
                         destinations=tuple(sc.destinations) or None, validate_level=sc.validate_after_backup)
    return PruneJob(sc.source)


def _retry_wire(retry: Any) -> dict[str, Any]:
    """A RetryPolicy as the schedule table spells it (durations in seconds), so it can be added back."""
    return {"max_attempts": retry.max_attempts, "base_delay": retry.base_delay, "max_delay": retry.max_delay,
            "multiplier": retry.multiplier, "jitter": retry.jitter}


def _window_wire(window: Any) -> dict[str, Any]:
    end = "24:00" if window.end == time(0) else f"{window.end:%H:%M}"
    return {"days": [DAY_NAMES[d] for d in sorted(window.days)], "start": f"{window.start:%H:%M}", "end": end}


def _conditions_wire(conditions: Any) -> dict[str, Any]:
    """Conditions as the [schedules.conditions] table spells them (sizes in bytes)."""
    return {"blackout": [_window_wire(w) for w in conditions.blackout],
            "maintenance": [_window_wire(w) for w in conditions.maintenance],
            "max_cpu_percent": conditions.max_cpu_percent, "max_load_per_core": conditions.max_load_per_core,
            "min_free_memory": conditions.min_free_memory, "max_concurrent_jobs": conditions.max_concurrent_jobs}
