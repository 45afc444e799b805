"""config/backupd.toml stays in step with schema.py, and loads once the demo key exists."""

from __future__ import annotations

import re
import shutil
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from backupd.config import load_config
from backupd.config.fields import FromSection
from backupd.config.schema import ConfigDocument
from backupd.errors import ConfigError
from tests.config.conftest import write_key

BUNDLED = Path(__file__).resolve().parents[2] / "config" / "backupd.toml"


def _models(annotation) -> list[type[BaseModel]]:
    """Models under an annotation, including the TOML sections behind core objects (FromSection)."""
    if isinstance(annotation, FromSection):
        return [annotation.section]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def schema_fields(model: type[BaseModel]) -> dict[str, object]:
    """Every field of `model` and the models under it, by TOML key (the alias where there is one)."""
    fields: dict[str, object] = {}
    for name, field in model.model_fields.items():
        fields[field.alias or name] = field
        for inner in _models(field.annotation) + [m for meta in field.metadata for m in _models(meta)]:
            fields |= schema_fields(inner)
    return fields


def documented_keys(text: str) -> set[str]:
    """Keys and table names in the sample, commented out or not."""
    keys = set(re.findall(r"^\s*#?\s*([a-z_]+)\s*=", text, re.MULTILINE))
    tables = re.findall(r"^\s*#?\s*\[+([a-z_.]+)\]+", text, re.MULTILINE)
    return keys | {part for table in tables for part in table.split(".")}


def test_every_schema_field_is_documented_in_the_bundled_config_and_nothing_else():
    assert documented_keys(BUNDLED.read_text()) == set(schema_fields(ConfigDocument))


def test_every_schema_field_has_a_description():
    assert [name for name, field in schema_fields(ConfigDocument).items() if not field.description] == []


def bundled_copy(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    return Path(shutil.copy(BUNDLED, tmp_path / "config" / "backupd.toml"))


def test_bundled_config_only_lacks_the_demo_key(tmp_path):
    path = bundled_copy(tmp_path)
    key = tmp_path / "demo" / "backup.key"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"destinations[0].encryption.key_file: '{key}' does not exist; create one with: backupd keygen {key}"
    ]


def test_bundled_config_loads_with_the_demo_key(tmp_path):
    path = bundled_copy(tmp_path)
    (tmp_path / "demo").mkdir()
    write_key(tmp_path / "demo" / "backup.key")

    cfg = load_config(path)

    demo = tmp_path / "demo"
    assert cfg.state.dir == demo / "state"
    assert [(s.name, s.kind, s.path) for s in cfg.sources] == [("demo", "sqlite", demo / "demo.db")]
    (local,) = cfg.enabled_destinations()
    assert (local.name, local.kind, local.path, local.compression_level) == ("local", "local", demo / "backups", 3)
    assert local.encryption.key_file == demo / "backup.key"
    assert cfg.control.socket == demo / "run" / "control.sock"
    assert cfg.daemon.max_concurrent_jobs == 2
    (schedule,) = cfg.schedules
    assert (schedule.name, schedule.source, schedule.strategy) == ("demo-every-30s", "demo", "auto")
    assert schedule.enabled and schedule.cron == "*/30 * * * * *"
    assert schedule.cron_spec.second == {0, 30} and schedule.cron_spec.minute == frozenset(range(60))
