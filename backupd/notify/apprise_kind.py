"""The apprise kind: the notice sent to every apprise URL (an optional extra: `backupd[apprise]`).

Apprise reports only whether its services took the notification, not why one did not, so a failure
says that and points at `apprise -vv` with the same URL. Messages never show the URLs (they hold
tokens and passwords); a URL is named by its place in `urls` and its scheme.
"""

from __future__ import annotations

from typing import Any

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.errors import ConfigError
from backupd.notify.base import DeliveryFailed, Transport

INSTALL_HINT = "pip install 'backupd[apprise]'"


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        return None
    return apprise


class AppriseTransport(Transport):
    """Sends title (the subject), body and notify type (failure, warning, success, info) via apprise."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        self.host = host
        self._apprise = _apprise()
        if self._apprise is None:
            raise ConfigError([f"notifier {cfg.name!r}: kind apprise needs the apprise package ({INSTALL_HINT})"])
        assert cfg.urls  # required for the kind by NotifierConfig
        self.services = []
        labels = []
        for index, url in enumerate(cfg.urls):
            label = f"urls[{index}] ({url.partition('://')[0] if '://' in url else '?'}://)"
            service = self._apprise.Apprise.instantiate(url)
            if service is None:
                raise ConfigError([f"notifier {cfg.name!r}: {label} is not a URL apprise knows"
                                   " (see `apprise --details`)"])
            self.services.append(service)
            labels.append(label)
        self.where = ", ".join(labels)  # never the URLs: many hold a token in the host part

    def send(self, event: Event, *, timeout: float) -> None:
        client = self._apprise.Apprise()
        for service in self.services:
            service.socket_connect_timeout = service.socket_read_timeout = timeout
            client.add(service)
        result = client.notify(title=notice.subject(event, self.host), body=notice.body(event, self.host),
                               notify_type=notice.outcome(event))
        if not result:
            status = getattr(getattr(result, "status", None), "name", "FAILURE").lower()
            raise DeliveryFailed(f"apprise: not delivered to all of {self.where} ({status}); apprise does not"
                                 " say why: run `apprise -vv -b test URL` with each URL to see the cause")
