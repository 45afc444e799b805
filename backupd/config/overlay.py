"""Destinations changed at run time: added, disabled, enabled or removed through the control socket.

The config file stays the operator's and is never rewritten. The changes live in the state dir
(table `runtime_destinations` of catalog.db), survive restarts and reloads, and apply to one-shot
`backupd` commands too (`with_runtime_destinations`), so the daemon and the CLI see the same
destinations. A destination added at run time is stored as the table it was given and validated
again each time it is applied: one that no longer validates (a key file removed) or whose name the
config file now uses is left out, with the reason. Disabling or enabling a destination of the config
file holds until the file's own `enabled` changes: the newest decision wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backupd.config.load import parse_destination
from backupd.config.schema import Config, DestinationConfig
from backupd.errors import ConfigError
from backupd.state.db import STATE_DB, StateDB


@dataclass(frozen=True)
class Change:
    name: str
    spec: dict[str, Any] | None  # None: a destination of the config file
    enabled: bool | None
    file_enabled: bool | None = None  # what the config file said when `enabled` was set


@dataclass(frozen=True)
class Applied:
    config: Config
    added: frozenset[str]  # names of the destinations that came from run-time additions
    problems: tuple[str, ...]  # run-time additions left out, and why
    outdated: tuple[str, ...] = ()  # destinations whose run-time enabled flag the config file has since changed


class DestinationOverlay:
    """The stored run-time changes (a repository over `state.db.StateDB`)."""

    def __init__(self, state_dir: Path):
        self._db = StateDB(Path(state_dir) / STATE_DB)

    def close(self) -> None:
        self._db.close()

    def changes(self) -> list[Change]:
        rows = self._db.execute(
            "SELECT name, spec, enabled, file_enabled FROM runtime_destinations ORDER BY rowid").fetchall()
        return [Change(n, json.loads(s) if s else None, _flag(e), _flag(f)) for n, s, e, f in rows]

    def add(self, name: str, spec: Mapping[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO runtime_destinations VALUES (?, ?, NULL, NULL)",
                         (name, json.dumps(spec)))

    def set_enabled(self, name: str, enabled: bool, file_enabled: bool | None) -> None:
        """Override `enabled`; `file_enabled` is what the config file says now (None: added at run time)."""
        self._db.execute(
            "INSERT INTO runtime_destinations (name, spec, enabled, file_enabled) VALUES (?, NULL, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, file_enabled = excluded.file_enabled",
            (name, int(enabled), None if file_enabled is None else int(file_enabled)),
        )

    def clear_enabled(self, name: str) -> None:
        """Back to what the config file says (for a config-file destination)."""
        self._db.execute("DELETE FROM runtime_destinations WHERE name = ? AND spec IS NULL", (name,))

    def remove(self, name: str) -> None:
        self._db.execute("DELETE FROM runtime_destinations WHERE name = ?", (name,))


def apply_changes(config: Config, changes: list[Change], environ: Mapping[str, str] | None = None) -> Applied:
    """`config` with the run-time changes applied: additions appended, enabled flags overridden."""
    file_enabled = {d.name: d.enabled for d in config.destinations}
    file_names = set(file_enabled)
    outdated = tuple(c.name for c in changes if c.spec is None and c.name in file_enabled
                     and c.file_enabled is not None and c.file_enabled != file_enabled[c.name])
    flags = {c.name: c.enabled for c in changes if c.enabled is not None and c.name not in outdated
             and not (c.spec is not None and c.name in file_names)}  # a shadowed addition changes nothing
    destinations: list[DestinationConfig] = list(config.destinations)
    added, problems = set(), []
    for change in changes:
        if change.spec is None:
            continue
        if change.name in file_names:
            problems.append(f"destination {change.name!r} added at run time is now defined in the config file;"
                            " the config file's wins (remove the run-time one with `backupctl dest rm`)")
            continue
        try:
            destinations.append(parse_destination(change.spec, {d.name for d in destinations}, environ=environ))
        except ConfigError as exc:
            problems.append(f"destination {change.name!r} added at run time is left out: {'; '.join(exc.problems)}")
            continue
        added.add(change.name)
    destinations = [d.model_copy(update={"enabled": flags[d.name]}) if d.name in flags else d for d in destinations]
    return Applied(config.model_copy(update={"destinations": destinations}), frozenset(added), tuple(problems),
                   outdated)


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def with_runtime_destinations(config: Config) -> Applied:
    """`config` as the daemon sees it: with the changes stored in its state dir (none when there is none yet)."""
    if not (Path(config.state.dir) / STATE_DB).exists():
        return Applied(config, frozenset(), ())
    overlay = DestinationOverlay(config.state.dir)
    try:
        return apply_changes(config, overlay.changes())
    finally:
        overlay.close()
