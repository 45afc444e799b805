"""Control ops: one function per op, each turning checked arguments into a plain result.

Handlers run on the control thread and must not block: anything slow becomes a job, and `job.wait`
is answered later by the server (see control.py). `OP_ROLES` is the one table of which role each op
needs; the server checks it (`Handlers.authorize`) before any handler runs.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from backupd import __version__
from backupd_client.protocol import PROTOCOL_VERSION, Op

from backupd.core.access import Peer, Role
from backupd.core.chain import restore_point_at
from backupd.core.metadata import check_metadata
from backupd.core.units import parse_instant
from backupd.core.vocab import PROBE_STATUSES
from backupd.daemon.access import AccessControl, check_restore_target
from backupd.engine.prune import plan_prune
from backupd.engine.copy_choice import CopyChoice
from backupd.errors import NotFound, UsageError

_R, _A = Role.READER, Role.ADMIN
# The role each op needs: readers see, admins act. Every op of the protocol is listed (a test checks).
OP_ROLES: dict[Op, Role] = {
    Op.STATUS: _R, Op.HEALTH: _R, Op.JOB_GET: _R, Op.JOB_LIST: _R, Op.JOB_WAIT: _R,
    Op.RESTORE_POINTS: _R, Op.RESTORE_NEAREST: _R, Op.SCHEDULE_LIST: _R, Op.SCHEDULE_STATS: _R,
    Op.DESTINATION_LIST: _R, Op.DESTINATION_HEALTH: _R,
    Op.BACKUP_CREATE: _A, Op.JOB_CANCEL: _A, Op.RESTORE_CREATE: _A, Op.VALIDATE: _A,
    Op.SCHEDULE_ADD: _A, Op.SCHEDULE_REMOVE: _A, Op.SCHEDULE_PAUSE: _A, Op.SCHEDULE_RESUME: _A,
    Op.DESTINATION_RESYNC: _A, Op.DESTINATION_ADD: _A, Op.DESTINATION_ENABLE: _A, Op.DESTINATION_DISABLE: _A,
    Op.DESTINATION_REMOVE: _A, Op.PRUNE: _A, Op.CONFIG_RELOAD: _A,
}  # fmt: skip


class Handlers:
    def __init__(self, daemon: Any):
        self.d = daemon
        self.access = AccessControl(lambda: self.d.config)
        self.table: dict[Op, Callable[[dict[str, Any]], Any]] = {
            Op.STATUS: self.status,
            Op.HEALTH: self.health,
            Op.BACKUP_CREATE: self.backup_create,
            Op.JOB_GET: lambda a: self.d.supervisor.get(a["job_id"]),
            Op.JOB_LIST: lambda a: self.d.supervisor.list(status=a.get("status"), source=a.get("source"),
                                                          kind=a.get("kind"), limit=min(a.get("limit", 50), 1000)),
            Op.JOB_CANCEL: lambda a: self.d.supervisor.cancel(a["job_id"]),
            Op.RESTORE_POINTS: self.restore_points,
            Op.RESTORE_NEAREST: self.restore_nearest,
            Op.RESTORE_CREATE: self.restore_create,
            Op.VALIDATE: self.validate,
            Op.SCHEDULE_ADD: self.schedule_add,
            Op.SCHEDULE_LIST: lambda a: self.d.schedules.list(),
            Op.SCHEDULE_REMOVE: lambda a: self.d.schedules.remove(a["name"]),
            Op.SCHEDULE_PAUSE: lambda a: self.d.schedules.pause(a["name"], True),
            Op.SCHEDULE_RESUME: lambda a: self.d.schedules.pause(a["name"], False),
            Op.SCHEDULE_STATS: lambda a: self.d.schedules.stats(a.get("name")),
            Op.DESTINATION_LIST: lambda a: self.d.destinations.list(),
            Op.DESTINATION_HEALTH: self.destination_health,
            Op.DESTINATION_ADD: lambda a: self.d.destinations.add(a["destination"]),
            Op.DESTINATION_ENABLE: lambda a: self.d.destinations.set_enabled(a["name"], True),
            Op.DESTINATION_DISABLE: lambda a: self.d.destinations.set_enabled(a["name"], False),
            Op.DESTINATION_REMOVE: lambda a: self.d.destinations.remove(a["name"], bool(a.get("force"))),
            Op.DESTINATION_RESYNC: self.destination_resync,
            Op.PRUNE: self.prune,
            Op.CONFIG_RELOAD: lambda a: self.d.reload_config(),
        }

    def authorize(self, op: Op, peer_address: str | None) -> Peer | None:
        """Raise Forbidden unless the peer behind `peer_address` (libzmq's, from SO_PEERCRED) may use `op`."""
        peer = self.access.peer(peer_address)
        self.access.authorize(peer, op.value, OP_ROLES[op])
        return peer

    def status(self, _: dict[str, Any]) -> dict[str, Any]:
        sup = self.d.supervisor
        return {
            "version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
            "uptime_s": round((sup.clock() - sup.started_at).total_seconds(), 3), "state": sup.state,
            "jobs": sup.counts(), "schedules": len(self.d.schedules.names()), "config": str(self.d.config_path),
        }

    def health(self, _: dict[str, Any]) -> dict[str, Any]:
        """From the cached probes (daemon.health): never waits for a server."""
        dests = self.d.health.snapshot()
        judged = [h for h in dests if h["status"] in PROBE_STATUSES]  # not disabled, nor unknown (just started)
        problems = [f"{h['name']}: {p}" for h in judged for p in h["problems"]]
        statuses = {h["status"] for h in judged}
        status = "unhealthy" if "unhealthy" in statuses else "degraded" if statuses - {"ok"} or problems else "ok"
        if self.d.supervisor.state != "running":
            status, problems = "degraded", [*problems, "the daemon is stopping"]
        return {"status": status, "problems": problems, "destinations": dests}

    def backup_create(self, a: dict[str, Any]) -> dict[str, Any]:
        self.d.config.chosen_destinations(a.get("destinations") or ())  # refused now rather than by the job
        args = {"strategy": a.get("strategy", "auto"), "tags": a.get("tags", []), "description": a.get("description", ""),
                "destinations": a.get("destinations"), "metadata": _metadata(a.get("metadata") or {}),
                "validate_level": a.get("validate_level")}
        return self.d.supervisor.submit("backup", a["source"], args, priority=a.get("priority", "normal"),
                                        conditions=self.d.config.daemon.conditions, retry=self.d.config.daemon.retry)

    def schedule_add(self, a: dict[str, Any]) -> dict[str, Any]:
        """The wire names the staleness limit in seconds (`max_staleness_s`, as the schedule object
        does); the schedule table calls it `max_staleness` (a duration, or a number of seconds)."""
        if "max_staleness_s" in a:
            if "max_staleness" in a:
                raise UsageError("schedule: give max_staleness_s or max_staleness, not both")
            a = {("max_staleness" if k == "max_staleness_s" else k): v for k, v in a.items()}
        return self.d.schedules.add(a)

    def restore_points(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        if a.get("source"):
            self.d.config.source(a["source"])
        return [b.to_json() for b in self.d.supervisor.catalog.backups(a.get("source"))]

    def restore_nearest(self, a: dict[str, Any]) -> dict[str, Any]:
        self.d.config.source(a["source"])
        at = _parse_at(a["at"])
        backup, gap = restore_point_at(self.d.supervisor.catalog.backups(a["source"]), at)
        return {"backup": backup.to_json(), "gap_s": gap.total_seconds()}

    def restore_create(self, a: dict[str, Any]) -> dict[str, Any]:
        if a.get("at"):
            _parse_at(a["at"])
        if not os.path.isabs(a["to"]):
            raise UsageError(f"restore target must be an absolute path (got {a['to']!r})")
        check_restore_target(Path(a["to"]), self.d.config.restore_dirs())
        args = {k: a.get(k) for k in ("backup_id", "at", "to", "tables", "overwrite", "copy_selection")}
        return self.d.supervisor.submit("restore", a["source"], args, priority="high")

    def validate(self, a: dict[str, Any]) -> dict[str, Any]:
        backup = next((b for b in self.d.supervisor.catalog.backups() if b.backup_id == a["backup_id"]), None)
        if backup is None:
            raise NotFound(f"no backup {a['backup_id']}", hint="list restore points with `backupctl ls`")
        level = a.get("level") or self.d.config.validation.default_level
        choice = CopyChoice(a.get("destination"), bool(a.get("all_copies")), a.get("sample_percent"))
        choice.check(level)
        if choice.destination is not None:
            self.d.config.destination(choice.destination)
        args = {"backup_id": a["backup_id"], "level": level, "destination": choice.destination,
                "all_copies": choice.all_copies, "sample_percent": choice.sample_percent}
        return self.d.supervisor.submit("validate", backup.manifest.source, args, priority="high")

    def destination_health(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        """The cached health; `refresh` starts new probes (answered later: poll until `checked_at` moves)."""
        names = [self.d.config.destination(a["name"]).name] if a.get("name") else None
        if a.get("refresh"):
            self.d.health.refresh(names)
        return [h for h in self.d.health.snapshot() if names is None or h["name"] in names]

    def destination_resync(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        sources = [self.d.config.source(a["source"]).name] if a.get("source") else [s.name for s in self.d.config.sources]
        return [self.d.supervisor.submit("resync", s, {}) for s in sources]

    def prune(self, a: dict[str, Any]) -> dict[str, Any]:
        """A dry run answers with the plan at once; a real prune runs as one job per source."""
        sources = [s.name for s in self.d.config.sources]
        if not a["dry_run"]:
            return {"dry_run": False, "jobs": [self.d.supervisor.submit("prune", s, {}) for s in sources]}
        merged: dict[str, Any] = {"dry_run": True, "keep": [], "delete": [], "keep_copies": [], "delete_copies": []}
        now = self.d.supervisor.clock()
        for s in sources:
            plan = plan_prune(self.d.supervisor.catalog, self.d.config, s, now).to_json()
            for key in ("keep", "delete", "keep_copies", "delete_copies"):
                merged[key] += [{**item, "source": s} for item in plan[key]]
        return merged


def _metadata(metadata: dict[str, Any]) -> dict[str, str]:
    try:
        return check_metadata(metadata)
    except ValueError as exc:
        raise UsageError(f"metadata: {exc}") from None


def _parse_at(value: str) -> datetime:
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise UsageError(f"at: {exc}") from None
