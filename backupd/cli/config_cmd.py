"""`backupd config validate | schema`: the config checked as the daemon would load it, plus what only
the machine can tell, and the config's JSON Schema (from the pydantic model, for editors and CI).

`validate` reports every problem at once, exit 2: the load's (syntax, keys, values, files, variables)
and then the checks of this machine, run as the user who runs it (run it as the service user,
`sudo -u backupd backupd config validate`): key files owned by that user, each source's directory
writable (SQLite creates its `-wal`, `-shm` and `-journal` files there), the state dir writable; with
`--probe`, every enabled destination reached and written to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backupd.config import Config, load_config
from backupd.config.schema import ConfigDocument


def machine_problems(config: Config) -> list[str]:
    """What the load cannot tell: ownership and writability for the user running this."""
    problems: list[str] = []
    uid = os.geteuid()
    for index, dest in enumerate(config.destinations):
        key = dest.encryption.key_file if dest.encryption is not None else None
        if key is not None and key.exists() and key.stat().st_uid != uid:
            problems.append(f"destinations[{index}].encryption.key_file: {key} is owned by uid {key.stat().st_uid},"
                            f" not by the user checking (uid {uid}); the daemon's user must own it"
                            " (chown it to the service user)")
    for index, source in enumerate(config.sources):
        directory = Path(source.path).parent
        if not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"sources[{index}].path: {directory} is not writable by uid {uid}; SQLite creates the"
                            " database's -wal, -shm and -journal files there (under systemd, add the directory to"
                            " ReadWritePaths= in a drop-in)")
    state = _existing_parent(config.state.dir)
    if not os.access(state, os.W_OK | os.X_OK):
        problems.append(f"state.dir: {state} is not writable by uid {uid}; the daemon keeps its catalog there")
    return problems


def probe_problems(config: Config) -> list[str]:
    """Every enabled destination reached and written to now (a probe file, removed again)."""
    from backupd.destinations.registry import open_destination

    problems = []
    for index, dest in enumerate(config.destinations):
        if not dest.enabled:
            continue
        try:
            opened = open_destination(dest)
            try:
                health = opened.health()
            finally:
                close = getattr(opened, "close", None)  # the network kinds hold a connection
                if close is not None:
                    close()
        except Exception as exc:
            problems.append(f"destinations[{index}] ({dest.name}): cannot be opened: {exc}")
            continue
        if not (health.reachable and health.writable):
            why = "; ".join(health.problems) or ("unreachable" if not health.reachable else "not writable")
            problems.append(f"destinations[{index}] ({dest.name}): {why}")
    return problems


def validate(path: Path, *, probe: bool) -> tuple[dict[str, Any], str, int]:
    """The `config validate` result: ConfigError (exit 2) from the load, else the machine's problems."""
    config = load_config(path)
    problems = machine_problems(config) + (probe_problems(config) if probe else [])
    counts = {"sources": len(config.sources), "destinations": len(config.destinations),
              "schedules": len(config.schedules), "notifiers": len(config.notifiers)}
    result = {"config": str(path), "valid": not problems, "problems": problems, "probed": probe, **counts}
    if problems:
        return result, "\n".join([f"{path}: {len(problems)} problem(s):", *(f"  {p}" for p in problems)]), 2
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    return result, f"{path}: valid ({summary}){'; every destination answered' if probe else ''}", 0


def schema() -> dict[str, Any]:
    """The JSON Schema of backupd.toml, keys as written in the file."""
    return ConfigDocument.model_json_schema(by_alias=True)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
