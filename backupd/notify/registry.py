"""Each notifier kind's transport, built from its [[notifiers]] table."""

from __future__ import annotations

from typing import Protocol

from backupd.config.notifiers import NotifierConfig
from backupd.core.vocab import NotifierKind
from backupd.notify.apprise_kind import AppriseTransport
from backupd.notify.base import Transport
from backupd.notify.command import CommandTransport
from backupd.notify.log_kind import LogTransport
from backupd.notify.ntfy import NtfyTransport
from backupd.notify.ping import PingTransport
from backupd.notify.smtp import EmailTransport
from backupd.notify.webhook import WebhookTransport


class Factory(Protocol):
    """How every transport is built: from its config, with this machine's name for subjects and bodies."""

    def __call__(self, cfg: NotifierConfig, *, host: str) -> Transport: ...


TRANSPORTS: dict[NotifierKind, Factory] = {
    NotifierKind.WEBHOOK: WebhookTransport,
    NotifierKind.EMAIL: EmailTransport,
    NotifierKind.PING: PingTransport,
    NotifierKind.NTFY: NtfyTransport,
    NotifierKind.COMMAND: CommandTransport,
    NotifierKind.LOG: LogTransport,
    NotifierKind.APPRISE: AppriseTransport,
}


def transport_for(cfg: NotifierConfig, *, host: str) -> Transport:
    """The transport of `cfg`'s kind. `host` (this machine's name) goes into subjects and bodies. Raises
    ConfigError when the notifier cannot be used as configured (an unreadable secret file, apprise
    not installed)."""
    return TRANSPORTS[cfg.kind](cfg, host=host)
