"""Destinations added, disabled, enabled and removed at run time (the `destination.*` control ops).

The book keeps the config file as loaded and the run-time changes (config.overlay, stored in the
state dir), and hands the daemon the config with the changes applied whenever either changes. Jobs
already running keep the destinations they started with; the next job uses the new set.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import structlog

from backupd.config import Config, parse_destination
from backupd.config.overlay import Applied, DestinationOverlay, apply_changes
from backupd.daemon.supervisor import Conflict
from backupd.engine.catalog import Catalog
from backupd.errors import Forbidden

log = structlog.get_logger("backupd.destinations")
SHOWN_BACKUPS = 5


class DestinationBook:
    """Called from the control thread (ops) and the main thread (SIGHUP reload): one lock for both."""

    def __init__(self, file_config: Config, catalog: Catalog, on_change: Callable[[Config], None],
                 schedules_using: Callable[[str], list[str]]):
        self._file_config = file_config
        self._catalog = catalog
        self._on_change = on_change
        self._schedules_using = schedules_using
        self._lock = threading.RLock()
        self._overlay = DestinationOverlay(file_config.state.dir)
        self.applied = self._apply(log_problems=True)

    def close(self) -> None:
        self._overlay.close()

    @property
    def config(self) -> Config:
        return self.applied.config

    def reload(self, file_config: Config) -> Config:
        """A new config file: apply the run-time changes to it."""
        with self._lock:
            self._file_config = file_config
            self.applied = self._apply(log_problems=True)
            return self.config

    def list(self) -> list[dict[str, Any]]:
        return [self._describe(d) for d in self.config.destinations]

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            taken = {d.name for d in self.config.destinations} | self._runtime_names()
            destination = parse_destination(spec, taken)
            self._check_encrypted(destination)
            self._overlay.add(destination.name, spec)
            self._changed()
        log.info("destination_added", destination=destination.name, kind=destination.kind)
        return self._describe(self.config.destination(destination.name))

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        """For a destination of the config file this holds until the file's own `enabled` changes;
        setting it back to what the file says drops the override."""
        with self._lock:
            self.config.destination(name)
            in_file = next((d for d in self._file_config.destinations if d.name == name), None)
            if in_file is not None and in_file.enabled == enabled:
                self._overlay.clear_enabled(name)
            else:
                self._overlay.set_enabled(name, enabled, None if in_file is None else in_file.enabled)
            self._changed()
        described = self._describe(self.config.destination(name))
        if enabled:
            log.info("destination_enabled", destination=name)
        else:
            schedules = self._schedules_using(name)
            log.info("destination_disabled", destination=name, schedules=schedules)
            if schedules:
                described["warning"] = (f"schedule(s) {', '.join(schedules)} send backups to {name!r}:"
                                        " their runs fail until it is enabled again")
        return described

    def remove(self, name: str, force: bool) -> dict[str, Any]:
        """Forget a destination added at run time, and its copies in the catalog (its files stay where
        they are). Refused while a schedule names it, and while it holds the only copy of a backup
        unless `force`."""
        with self._lock:
            if name not in self._runtime_names():
                self.config.destination(name)  # UnknownDestination for an unknown name
                raise Conflict(f"destination {name!r} is defined in the config file",
                               hint="remove it there and reload (SIGHUP or `backupctl reload`), or disable it")
            if schedules := self._schedules_using(name):
                raise Conflict(f"destination {name!r} is used by schedule(s) {', '.join(schedules)}",
                               hint="remove those schedules first (`backupctl schedule rm NAME`)")
            sole = [b.backup_id for b in self._catalog.backups() if [c.destination for c in b.copies] == [name]]
            if sole and not force:
                more = f" and {len(sole) - SHOWN_BACKUPS} more" if len(sole) > SHOWN_BACKUPS else ""
                raise Conflict(f"destination {name!r} holds the only copy of {len(sole)} backup(s): "
                               f"{', '.join(sole[:SHOWN_BACKUPS])}{more}",
                               hint="copy them elsewhere first (`backupctl dest resync`), or remove with --force",
                               details={"backups": sole})
            if all(d.name != name for d in self._file_config.destinations):  # not one the file still defines
                self._catalog.forget_destination(name)
            self._overlay.remove(name)
            self._changed()
        log.info("destination_removed", destination=name, sole_copies=len(sole))
        return {"removed": name, "sole_copies": len(sole)}

    # -- internals -----------------------------------------------------------------------------
    def _check_encrypted(self, destination: Any) -> None:
        """A run-time destination may not store plaintext of backups the config file keeps encrypted."""
        control = self._file_config.control
        encrypted = [d.name for d in self._file_config.destinations if d.encryption is not None]
        if destination.encryption is None and encrypted and not control.allow_unencrypted_destinations:
            raise Forbidden(f"destination {destination.name!r} is not encrypted, and the config file's"
                            f" destination(s) {', '.join(encrypted)} are",
                            hint="give it an [encryption] table, or set [control] allow_unencrypted_destinations"
                                 " = true and reload")

    def _apply(self, log_problems: bool) -> Applied:
        applied = apply_changes(self._file_config, self._overlay.changes())
        for name in applied.outdated:
            self._overlay.clear_enabled(name)
            log.info("runtime_override_dropped", destination=name,
                     reason="the config file's `enabled` changed since it was set at run time; the file's value holds")
        if log_problems:
            for problem in applied.problems:
                log.warning("runtime_destination_left_out", problem=problem)
        return applied

    def _runtime_names(self) -> set[str]:
        """Every destination added at run time, applied or left out."""
        return {c.name for c in self._overlay.changes() if c.spec is not None}

    def _changed(self) -> None:
        self.applied = self._apply(log_problems=False)
        self._on_change(self.config)

    def _describe(self, d: Any) -> dict[str, Any]:
        return {"name": d.name, "kind": d.kind, "enabled": d.enabled, "priority": d.priority,
                "encrypted": d.encryption is not None, "compression_level": d.compression_level,
                "origin": "runtime" if d.name in self.applied.added else "config"}
