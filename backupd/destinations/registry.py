"""Destination kind -> factory. New kinds register here and nowhere else."""

from __future__ import annotations

from typing import Any, Callable

from backupd.core.vocab import DestinationKind
from backupd.destinations.base import Destination
from backupd.destinations.local import LocalDestination


def _share(cfg: Any) -> Destination:
    from backupd.destinations.share import from_config

    return from_config(cfg)


def _smb(cfg: Any) -> Destination:
    from backupd.destinations.smb import from_config  # imports smbprotocol only when SMB is configured

    return from_config(cfg)


def _sftp(cfg: Any) -> Destination:
    from backupd.destinations.sftp import from_config  # imports paramiko only when SFTP is configured

    return from_config(cfg)


FACTORIES: dict[str, Callable[[Any], Destination]] = {
    DestinationKind.LOCAL: lambda cfg: LocalDestination(cfg.name, cfg.path),
    DestinationKind.SFTP: _sftp,
    DestinationKind.SHARE: _share,
    DestinationKind.SMB: _smb,
}


def open_destination(cfg: Any) -> Destination:
    """Build the destination a `DestinationConfig` describes."""
    return FACTORIES[cfg.kind](cfg)
