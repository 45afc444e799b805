"""Control ops: one function per op, each turning checked arguments into a plain result.

Handlers run on the control thread and must not block: anything slow becomes a job, and `job.wait`
is answered later by the server (see control.py). `OP_ROLES` is the one table of which role each op
needs; the server checks it (`Handlers.authorize`) before any handler runs.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from backupd import __version__
from backupd_client.protocol import PROTOCOL_VERSION, Op
from prometheus_client import CollectorRegistry

from backupd.config import Config
from backupd.config.load import unknown_notifiers
from backupd.core.access import Peer, Role
from backupd.core.alerts import ERROR
from backupd.core.chain import restore_point_at
from backupd.core.routing import NotifyRequest
from backupd.core.units import parse_instant
from backupd.core.vocab import PROBE_STATUSES, HealthStatus, NotifyOn, Priority
from backupd.daemon.access import AccessControl, check_restore_target
from backupd.daemon.destinations import DestinationBook
from backupd.daemon.health import HealthMonitor
from backupd.daemon.jobspec import BackupJob, PruneJob, ResyncJob, RestoreJob, ValidateJob
from backupd.daemon.metrics import exposition, summary
from backupd.daemon.outbox import Deliveries
from backupd.daemon.scheduler import ScheduleBook
from backupd.daemon.supervisor import Supervisor
from backupd.daemon.watchdog import Watchdog
from backupd.engine.holdings import inventory
from backupd.engine.prune import plan_prune
from backupd.engine.restore import check_target
from backupd.errors import NotFound, UsageError

_R, _A = Role.READER, Role.ADMIN
# The role each op needs: readers see, admins act. Every op of the protocol is listed (a test checks).
OP_ROLES: dict[Op, Role] = {
    Op.STATUS: _R, Op.HEALTH: _R, Op.JOB_GET: _R, Op.JOB_LIST: _R, Op.JOB_WAIT: _R,
    Op.RESTORE_POINTS: _R, Op.RESTORE_NEAREST: _R, Op.SCHEDULE_LIST: _R, Op.SCHEDULE_STATS: _R,
    Op.DESTINATION_LIST: _R, Op.DESTINATION_HEALTH: _R, Op.INVENTORY: _R, Op.METRICS: _R,
    Op.EVENTS_SUBSCRIBE: _R,  # streamed by the control server (control.py), as job.wait
    Op.NOTIFY_LIST: _R, Op.NOTIFY_TEST: _A,
    Op.BACKUP_CREATE: _A, Op.JOB_CANCEL: _A, Op.RESTORE_CREATE: _A, Op.VALIDATE: _A,
    Op.SCHEDULE_ADD: _A, Op.SCHEDULE_REMOVE: _A, Op.SCHEDULE_PAUSE: _A, Op.SCHEDULE_RESUME: _A,
    Op.DESTINATION_RESYNC: _A, Op.DESTINATION_ADD: _A, Op.DESTINATION_ENABLE: _A, Op.DESTINATION_DISABLE: _A,
    Op.DESTINATION_REMOVE: _A, Op.PRUNE: _A, Op.CONFIG_RELOAD: _A,
}  # fmt: skip


class ConfigHolder(Protocol):
    """The daemon itself, as the handlers see it (a Protocol: main.py imports this module): the config
    every part uses now (the file's, with the run-time destination changes), its path, its reload."""

    config_path: Path

    @property
    def config(self) -> Config: ...

    def reload_config(self) -> dict[str, Any]: ...


class Handlers:
    """The ops, on the collaborators they act on: the daemon's config, the supervisor (jobs and the
    catalog), the schedules, the destinations changed at run time, the destinations' health, the
    watchdog's alerts and the notifiers' deliveries."""

    def __init__(self, *, daemon: ConfigHolder, supervisor: Supervisor, schedules: ScheduleBook,
                 destinations: DestinationBook, health: HealthMonitor, watchdog: Watchdog,
                 metrics: CollectorRegistry, deliveries: Deliveries):
        self.daemon = daemon
        self.supervisor = supervisor
        self.schedules = schedules
        self.destinations = destinations
        self.monitor = health
        self.watchdog = watchdog
        self.deliveries = deliveries
        self.access = AccessControl(lambda: self.config)
        sup = supervisor
        self.table: dict[Op, Callable[[dict[str, Any]], Any]] = {
            Op.STATUS: self.status,
            Op.HEALTH: self.health,
            Op.BACKUP_CREATE: self.backup_create,
            Op.JOB_GET: lambda a: sup.get(a["job_id"]),
            Op.JOB_LIST: lambda a: sup.list(status=a.get("status"), source=a.get("source"), kind=a.get("kind"),
                                            limit=min(a.get("limit", 50), 1000)),
            Op.JOB_CANCEL: lambda a: sup.cancel(a["job_id"]),
            Op.RESTORE_POINTS: self.restore_points,
            Op.RESTORE_NEAREST: self.restore_nearest,
            Op.RESTORE_CREATE: self.restore_create,
            Op.VALIDATE: self.validate,
            Op.SCHEDULE_ADD: self.schedule_add,
            Op.SCHEDULE_LIST: lambda a: schedules.list(),
            Op.SCHEDULE_REMOVE: lambda a: schedules.remove(a["name"]),
            Op.SCHEDULE_PAUSE: lambda a: schedules.pause(a["name"], True),
            Op.SCHEDULE_RESUME: lambda a: schedules.pause(a["name"], False),
            Op.SCHEDULE_STATS: lambda a: schedules.stats(a.get("name")),
            Op.DESTINATION_LIST: lambda a: destinations.list(),
            Op.DESTINATION_HEALTH: self.destination_health,
            Op.DESTINATION_ADD: lambda a: destinations.add(a["destination"]),
            Op.DESTINATION_ENABLE: lambda a: destinations.set_enabled(a["name"], True),
            Op.DESTINATION_DISABLE: lambda a: destinations.set_enabled(a["name"], False),
            Op.DESTINATION_REMOVE: lambda a: destinations.remove(a["name"], bool(a.get("force"))),
            Op.DESTINATION_RESYNC: self.destination_resync,
            Op.PRUNE: self.prune,
            Op.CONFIG_RELOAD: lambda a: daemon.reload_config(),
            Op.INVENTORY: lambda a: inventory(sup.catalog, self.config, sup.clock(), a.get("days", 30)),
            Op.METRICS: lambda a: {"summary": summary(metrics), "text": exposition(metrics)},
            Op.NOTIFY_LIST: lambda a: deliveries.listing(),
            Op.NOTIFY_TEST: lambda a: deliveries.test(a["name"]),
        }

    @property
    def config(self) -> Config:
        """The config in use now (it changes on reload and with run-time destination changes)."""
        return self.daemon.config

    def authorize(self, op: Op, peer_address: str | None) -> Peer | None:
        """Raise Forbidden unless the peer behind `peer_address` (libzmq's, from SO_PEERCRED) may use `op`."""
        peer = self.access.peer(peer_address)
        self.access.authorize(peer, op.value, OP_ROLES[op])
        return peer

    def status(self, _: dict[str, Any]) -> dict[str, Any]:
        sup = self.supervisor
        return {
            "version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
            "uptime_s": round((sup.clock() - sup.started_at).total_seconds(), 3), "state": sup.state,
            "jobs": sup.counts(), "schedules": len(self.schedules.names()), "config": str(self.daemon.config_path),
        }

    def health(self, _: dict[str, Any]) -> dict[str, Any]:
        """From the cached probes and the watchdog's alerts: never waits for a server. Unhealthy when a
        destination is, a source is stale or a schedule's last run failed; degraded on any other problem
        (a notifier that delivers nothing among them)."""
        dests = self.monitor.snapshot()
        judged = [h for h in dests if h["status"] in PROBE_STATUSES]  # not disabled, nor unknown (just started)
        problems: list[dict[str, str]] = [
            {"code": f"destination_{'unhealthy' if h['status'] == HealthStatus.UNHEALTHY else 'degraded'}",
             "message": p, "destination": h["name"]} for h in judged for p in h["problems"]]
        alerts = self.watchdog.active()
        problems += [a.problem() for a in alerts]
        problems += self.deliveries.problems()
        statuses = {h["status"] for h in judged}
        failing = HealthStatus.UNHEALTHY in statuses or any(a.severity == ERROR for a in alerts)
        status = (HealthStatus.UNHEALTHY if failing
                  else HealthStatus.DEGRADED if statuses - {HealthStatus.OK} or problems else HealthStatus.OK)
        if self.supervisor.state != "running":
            problems.append({"code": "daemon_stopping", "message": "the daemon is stopping"})
            status = HealthStatus.DEGRADED
        return {"status": status, "problems": problems, "destinations": dests}

    def backup_create(self, a: dict[str, Any]) -> dict[str, Any]:
        self.config.chosen_destinations(a.get("destinations") or ())  # refused now rather than by the job
        spec = BackupJob.from_args(a["source"], a)
        return self.supervisor.submit(spec, priority=Priority(a.get("priority") or Priority.NORMAL),
                                      conditions=self.config.daemon.conditions, retry=self.config.daemon.retry,
                                      notify=self._notify_request(a))

    def _notify_request(self, a: dict[str, Any]) -> NotifyRequest | None:
        """A manual backup's `notify` and `notify_on`, checked against the configured notifiers."""
        names = list(a.get("notify") or ())
        if problems := unknown_notifiers("backup", names, {n.name for n in self.config.notifiers}):
            raise UsageError("; ".join(problems), hint="see `backupctl notify ls`")
        if not names:
            if a.get("notify_on"):
                raise UsageError("backup: notify_on needs notify (the notifiers it applies to)")
            return None
        return NotifyRequest(tuple(dict.fromkeys(names)),
                             tuple(NotifyOn(o) for o in a.get("notify_on") or (NotifyOn.FAILURE,)))

    def schedule_add(self, a: dict[str, Any]) -> dict[str, Any]:
        """The wire names the staleness limit in seconds (`max_staleness_s`, as the schedule object
        does); the schedule table calls it `max_staleness` (a duration, or a number of seconds)."""
        if "max_staleness_s" in a:
            if "max_staleness" in a:
                raise UsageError("schedule: give max_staleness_s or max_staleness, not both")
            a = {("max_staleness" if k == "max_staleness_s" else k): v for k, v in a.items()}
        return self.schedules.add(a)

    def restore_points(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        if a.get("source"):
            self.config.source(a["source"])
        return [b.to_json() for b in self.supervisor.catalog.backups(a.get("source"))]

    def restore_nearest(self, a: dict[str, Any]) -> dict[str, Any]:
        self.config.source(a["source"])
        at = _parse_at(a["at"], self.supervisor.clock())
        backup, gap = restore_point_at(self.supervisor.catalog.backups(a["source"]), at)
        return {"backup": backup.to_json(), "gap_s": gap.total_seconds()}

    def restore_create(self, a: dict[str, Any]) -> dict[str, Any]:
        """`at` may be relative (`now`, `-2h`) and `backup_id` `latest` (the newest restore point, as at
        `now`): resolved here, on the daemon's clock, so the job records the instant meant."""
        if a.get("backup_id") == "latest":
            a = {**{k: v for k, v in a.items() if k != "backup_id"}, "at": "now"}
        if a.get("at"):
            a = {**a, "at": _parse_at(a["at"], self.supervisor.clock()).isoformat()}
        if not os.path.isabs(a["to"]):
            raise UsageError(f"restore target must be an absolute path (got {a['to']!r})")
        check_restore_target(Path(a["to"]), self.config.restore_dirs())
        check_target(Path(a["to"]), bool(a.get("overwrite")))  # as one-shot: refused, not queued
        return self.supervisor.submit(RestoreJob.from_args(a["source"], a), priority=Priority.HIGH)

    def validate(self, a: dict[str, Any]) -> dict[str, Any]:
        backup = next((b for b in self.supervisor.catalog.backups() if b.backup_id == a["backup_id"]), None)
        if backup is None:
            raise NotFound(f"no backup {a['backup_id']}", hint="list restore points with `backupctl ls`")
        level = a.get("level") or self.config.validation.default_level
        spec = ValidateJob.from_args(backup.manifest.source, {**a, "level": level})  # checks the copy choice
        if spec.destination is not None:
            self.config.destination(spec.destination)
        return self.supervisor.submit(spec, priority=Priority.HIGH)

    def destination_health(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        """The cached health; `refresh` starts new probes (answered later: poll until `checked_at` moves)."""
        names = [self.config.destination(a["name"]).name] if a.get("name") else None
        if a.get("refresh"):
            self.monitor.refresh(names)
        return [h for h in self.monitor.snapshot() if names is None or h["name"] in names]

    def destination_resync(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        sources = [self.config.source(a["source"]).name] if a.get("source") else [s.name for s in self.config.sources]
        return [self.supervisor.submit(ResyncJob(s)) for s in sources]

    def prune(self, a: dict[str, Any]) -> dict[str, Any]:
        """A dry run answers with the plan at once; a real prune runs as one job per source."""
        sources = [s.name for s in self.config.sources]
        if not a["dry_run"]:
            return {"dry_run": False, "jobs": [self.supervisor.submit(PruneJob(s)) for s in sources]}
        merged: dict[str, Any] = {"dry_run": True, "keep": [], "delete": [], "keep_copies": [], "delete_copies": []}
        now = self.supervisor.clock()
        for s in sources:
            plan = plan_prune(self.supervisor.catalog, self.config, s, now).to_json()
            for key in ("keep", "delete", "keep_copies", "delete_copies"):
                merged[key] += [{**item, "source": s} for item in plan[key]]
        return merged


def _parse_at(value: str, now: datetime) -> datetime:
    try:
        return parse_instant(value, now)
    except ValueError as exc:
        raise UsageError(f"at: {exc}") from None
