"""The control protocol's ops (docs/PROTOCOL.md, Ops): stdlib only, like the rest of the protocol."""

from __future__ import annotations

from enum import Enum


class Op(str, Enum):
    STATUS = "status"
    HEALTH = "health"
    BACKUP_CREATE = "backup.create"
    JOB_GET = "job.get"
    JOB_LIST = "job.list"
    JOB_CANCEL = "job.cancel"
    JOB_WAIT = "job.wait"
    RESTORE_POINTS = "restore.points"
    RESTORE_NEAREST = "restore.nearest"
    RESTORE_CREATE = "restore.create"
    VALIDATE = "validate"
    SCHEDULE_ADD = "schedule.add"
    SCHEDULE_LIST = "schedule.list"
    SCHEDULE_REMOVE = "schedule.remove"
    SCHEDULE_PAUSE = "schedule.pause"
    SCHEDULE_RESUME = "schedule.resume"
    SCHEDULE_STATS = "schedule.stats"
    DESTINATION_LIST = "destination.list"
    DESTINATION_HEALTH = "destination.health"
    DESTINATION_RESYNC = "destination.resync"
    DESTINATION_ADD = "destination.add"
    DESTINATION_ENABLE = "destination.enable"
    DESTINATION_DISABLE = "destination.disable"
    DESTINATION_REMOVE = "destination.remove"
    PRUNE = "prune"
    CONFIG_RELOAD = "config.reload"
    INVENTORY = "inventory"
    EVENTS_SUBSCRIBE = "events.subscribe"
    METRICS = "metrics"
    NOTIFY_LIST = "notify.list"
    NOTIFY_TEST = "notify.test"

    def __str__(self) -> str:
        return self.value


# A client must not resend these after a timeout (PROTOCOL.md, Transport): each starts a new job (or
# sends a new test notification), or (adding, removing a schedule or destination) would answer a resend
# with an error although the first one worked.
RESEND_UNSAFE_OPS = frozenset({Op.BACKUP_CREATE, Op.RESTORE_CREATE, Op.VALIDATE, Op.DESTINATION_RESYNC,
                               Op.SCHEDULE_ADD, Op.SCHEDULE_REMOVE, Op.DESTINATION_ADD, Op.DESTINATION_REMOVE,
                               Op.NOTIFY_TEST})
# Ops whose reply may be preceded by streamed events.
STREAMING_OPS = frozenset({Op.JOB_WAIT, Op.EVENTS_SUBSCRIBE})
