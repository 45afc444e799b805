"""The log kind: the event as one line of the daemon's own log, at the event's severity, so journald
(`journalctl -p err`) and log-based alerting see it. It has no receiver to miss, so it never fails."""

from __future__ import annotations

import structlog

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.notify.base import Transport

log = structlog.get_logger("backupd.notify")


class LogTransport(Transport):
    """Logs `notification_logged` with the event's wire fields (and `notifier`)."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)

    def send(self, event: Event, *, timeout: float) -> None:
        fields = {**event.to_wire(), "notifier": self.name}
        level = notice.severity(event)
        if level == "error":
            log.error("notification_logged", **fields)
        elif level == "warning":
            log.warning("notification_logged", **fields)
        else:
            log.info("notification_logged", **fields)
