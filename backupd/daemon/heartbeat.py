"""The dead-man's switch: `[monitoring] heartbeat_url` pinged every `heartbeat_interval` while every
source is fresh. When the daemon or its machine dies, or a source goes stale, the pings stop and the
external monitor (Healthchecks, Uptime Kuma, Cronitor) raises the alarm.

It waits for the watchdog's first evaluation, so a daemon that starts with a stale source never sends
a ping that says all is well, and pauses while the watchdog's rounds fail (freshness unknown is not
fresh); a `freshness.restored` kicks it, so the pings resume at once. Log lines name the URL's host
only: a ping URL's path is its secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import structlog

from backupd.daemon.loop import BackgroundLoop
from backupd.daemon.watchdog import Watchdog
from backupd.notify.base import DeliveryFailed
from backupd.notify.ping import ping_heartbeat

log = structlog.get_logger("backupd.heartbeat")
Ping = Callable[..., None]
PING_TIMEOUT_S = 10.0


class Heartbeat(BackgroundLoop):
    """Pings the heartbeat URL of the config in force while `stale()` names no stale source."""

    thread_name = "heartbeat"

    def __init__(self, config: Callable[[], Any], watchdog: Watchdog, *, ping: Ping = ping_heartbeat):
        super().__init__()
        self._config, self._watchdog, self._ping = config, watchdog, ping
        self._paused: tuple[str, ...] = ()

    def _loop(self) -> None:
        while not self._watchdog.evaluated.wait(0.2):
            if self._stop.is_set():
                return
        while not self._stop.is_set():
            self._kick.clear()
            monitoring = self._config().monitoring
            if monitoring.heartbeat_url is not None:
                try:
                    self.beat(monitoring.heartbeat_url)
                except Exception as exc:  # the heartbeat must survive anything; its silence is the alarm
                    log.error("heartbeat_failed", host=_host(monitoring.heartbeat_url),
                              error=f"{type(exc).__name__}: {exc}")
            self._kick.wait(monitoring.heartbeat_interval_s)

    def beat(self, url: str) -> bool:
        """One round: ping `url` unless a source is stale; True when a ping was sent."""
        if self._watchdog.checked_recently():
            stale = tuple(sorted(name for name, is_stale in self._watchdog.stale_sources().items() if is_stale))
        else:
            stale = ("(unknown: the watchdog's rounds fail)",)
        if stale:
            if stale != self._paused:
                log.warning("heartbeat_paused", host=_host(url), stale_sources=list(stale),
                            note="the external monitor alerts while the pings stop")
            self._paused = stale
            return False
        if self._paused:
            log.info("heartbeat_resumed", host=_host(url))
            self._paused = ()
        try:
            self._ping(url, timeout=PING_TIMEOUT_S)
        except DeliveryFailed as exc:
            log.warning("heartbeat_failed", host=_host(url), error=exc.message)
            return False
        log.info("heartbeat_sent", host=_host(url))
        return True


def _host(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]
