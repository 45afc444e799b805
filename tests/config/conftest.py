"""Helpers for config tests: a tiny TOML emitter and a valid config document to start from."""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

KEY_BYTES = bytes(range(32))


def toml_value(value: Any) -> str:
    """Render a value as TOML; tables become inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in data.items())


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def write_key(path: Path, mode: int = 0o600, data: bytes = KEY_BYTES) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def valid_document() -> dict[str, Any]:
    """A valid config as a dict; relative paths resolve against the config file's directory."""
    return {
        "state": {"dir": "state"},
        "sources": [
            {"name": "kb", "kind": "sqlite", "path": "/srv/app/kb.db"},
            {"name": "crm", "kind": "sqlite", "path": "crm.db"},
        ],
        "destinations": [
            {"name": "local", "kind": "local", "path": "/srv/backups", "encryption": {"key_file": "backup.key"}},
            {"name": "spare", "kind": "local", "path": "spare", "compression_level": 9, "priority": 2},
        ],
        "strategy": {"max_chain_length": 10, "full_change_ratio": 0.25, "differential_cost_ratio": 2},
        "validation": {
            "default_level": "deep",
            "rules": [{"id": "kb_not_empty", "sql": "SELECT count(*) >= 1 FROM kb_entries", "sources": ["kb"]}],
        },
    }


def valid_document_with_schedules() -> dict[str, Any]:
    """`valid_document()` plus [control], [daemon] and two schedules using every schedule key."""
    document = valid_document()
    document["control"] = {"socket": "run/control.sock", "max_message_bytes": "1MiB"}
    document["daemon"] = {"max_concurrent_jobs": 2, "shutdown_timeout": "60s", "catch_up_grace": "1h",
                          "recheck_interval": "30s", "max_hold": "6h"}  # fmt: skip
    document["schedules"] = [
        {
            "name": "nightly", "source": "kb", "cron": "30 2 * * *", "strategy": "full", "timezone": "Europe/Berlin",
            "enabled": True, "description": "every night", "tags": ["nightly"], "validate_after_backup": True,
            "max_staleness": "26h",
            "retry": {"max_attempts": 3, "base_delay": "30s", "max_delay": "15m", "multiplier": 2, "jitter": 0.2},
            "conditions": {
                "blackout": [{"days": ["mon-fri"], "start": "09:00", "end": "17:00"}],
                "maintenance": [{"start": "22:00", "end": "06:00"}],
                "max_cpu_percent": 80, "max_load_per_core": 1.5, "min_free_memory": "256MiB", "max_concurrent_jobs": 1,
            },
        },
        {"name": "often", "source": "crm", "cron": "*/10 * * * * *"},
    ]  # fmt: skip
    return document


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A directory holding a valid key file `backup.key` for `valid_document()`."""
    write_key(tmp_path / "backup.key")
    return tmp_path


@pytest.fixture
def write_config(config_dir: Path):
    """Write a dict (or raw text) as `backupd.toml` in `config_dir` and return its path."""

    def write(content: dict[str, Any] | str) -> Path:
        path = config_dir / "backupd.toml"
        path.write_text(content if isinstance(content, str) else toml_document(content), encoding="utf-8")
        return path

    return write
