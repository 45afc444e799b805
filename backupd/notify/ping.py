"""The ping kind: a Healthchecks-style check that goes up and down with the backups.

`backup.started` pings `<url>/start` (the check measures the run), a problem `<url>/fail`, a skipped
backup `<url>/log` (recorded, but no sign of life: no backup ran), anything else `<url>` itself. The
body is the notice text, cut to the 10 KB a check's log keeps. A query (`?create=1`) stays at the end.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import PROBLEM_TYPES, Event, EventType
from backupd.notify import http
from backupd.notify.base import Transport

BODY_LIMIT = 10_000  # bytes: Healthchecks' default PING_BODY_LIMIT
_HEADERS = {"content-type": "text/plain; charset=utf-8"}


def suffix_for(event: Event) -> str:
    """The path suffix an event pings: `/start`, `/fail`, `/log` or '' (success)."""
    if event.type == EventType.BACKUP_STARTED:
        return "/start"
    if event.type in PROBLEM_TYPES:
        return "/fail"
    if event.type == EventType.BACKUP_SKIPPED:
        return "/log"
    return ""


def with_suffix(url: str, suffix: str) -> str:
    """`url` with `suffix` appended to its path (a trailing `/` dropped first), its query kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def ping_heartbeat(url: str, *, timeout: float, ca_file: Path | None = None) -> None:
    """One bare ping of `url` (the daemon's own liveness check); DeliveryFailed when not delivered."""
    http.post(url, b"", {}, timeout=timeout, ca_file=ca_file)


class PingTransport(Transport):
    """Pings the check at `url` for each event, with the suffix its type calls for."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        assert cfg.url is not None  # required for the kind by NotifierConfig
        self.url, self.host, self.ca_file = cfg.url, host, cfg.ca_file

    def send(self, event: Event, *, timeout: float) -> None:
        body = http.truncate(notice.body(event, self.host), BODY_LIMIT)
        http.post(with_suffix(self.url, suffix_for(event)), body, _HEADERS, timeout=timeout, ca_file=self.ca_file)
