"""The config schema: frozen pydantic models for every section of backupd.toml.

Models check shape only (types, ranges, known keys). Checks across sections and against the
file system or environment live in `load.py`. Relative paths resolve against the `base_dir`
given in the validation context (the directory of the config file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from backupd.errors import NotFound, UnknownSource

PROBLEM = "config_problem"  # error type of the checks below; load.py reports their message as is
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_path_text(value: object) -> object:
    if value == "":
        raise PydanticCustomError(PROBLEM, "must not be empty")
    if isinstance(value, str) and "\0" in value:
        raise PydanticCustomError(PROBLEM, "must not contain a NUL character")
    return value


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Make a path absolute against the config file's directory, without following symlinks."""
    base = (info.context or {}).get("base_dir", Path.cwd())
    return Path(os.path.normpath(Path(base) / value))


def _compression_level(value: int) -> int:
    if not 1 <= value <= 22:
        raise PydanticCustomError(PROBLEM, "must be 1..22 (got {got})", {"got": value})
    return value


ConfigPath = Annotated[Path, Strict(False), BeforeValidator(_check_path_text), AfterValidator(_resolve)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Section(BaseModel):
    """Base of every config model: strict TOML types (no "3" for 3), unknown keys rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class StateConfig(_Section):
    dir: ConfigPath = Field(description="Directory for the catalog, schedules and other daemon state.")


class SourceConfig(_Section):
    name: Name = Field(description="Unique source name, used in commands and backup ids.")
    kind: Literal["sqlite"] = Field(description="Source type; only 'sqlite' for now.")
    path: ConfigPath = Field(description="Path of the SQLite database file to back up.")


class EncryptionConfig(_Section):
    key_file: ConfigPath | None = Field(
        None, description="File holding exactly 32 random bytes, mode 0600 (create with `backupd keygen`)."
    )
    passphrase_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable holding a passphrase; the key is derived with Argon2id.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EncryptionConfig:
        if (self.key_file is None) == (self.passphrase_env is None):
            got = "neither" if self.key_file is None else "both"
            raise PydanticCustomError(
                PROBLEM, "set exactly one of key_file or passphrase_env (got {got})", {"got": got}
            )
        return self


class DestinationConfig(_Section):
    name: Name = Field(description="Unique destination name.")
    kind: Literal["local"] = Field(description="Destination type; only 'local' for now.")
    path: ConfigPath = Field(description="Directory that receives the backup artifacts.")
    compression_level: Annotated[int, AfterValidator(_compression_level)] = Field(
        3, description="zstd compression level, 1..22."
    )
    enabled: bool = Field(True, description="Whether backups are sent to this destination.")
    priority: int = Field(
        1, ge=1, description="1 is the most preferred; larger numbers are used after smaller ones."
    )
    encryption: EncryptionConfig | None = Field(None, description="Encrypt artifacts; omit to store them unencrypted.")


class StrategyPolicy(_Section):
    max_chain_length: int = Field(
        30, ge=1, description="`auto` takes a full backup once a chain has this many backups."
    )
    full_change_ratio: float = Field(
        0.5, gt=0, le=1, description="`auto` takes a full backup when more than this fraction of pages changed."
    )
    differential_cost_ratio: float = Field(
        1.5,
        ge=1.0,
        description="`auto` picks differential while it is at most this many times an incremental's size.",
    )


class ValidationRule(_Section):
    id: str = Field(min_length=1, description="Unique rule id, shown in validation reports.")
    sql: str = Field(min_length=1, description="Query whose first column must be true on the restored database.")
    severity: Literal["info", "warning", "error", "critical"] = Field(
        "error", description="How a failing rule counts in the verdict."
    )
    description: str = Field("", description="What the rule asserts, shown in reports.")
    sources: list[str] = Field(default_factory=list, description="Sources the rule applies to; empty means all.")


class ValidationConfig(_Section):
    default_level: Literal["quick", "standard", "deep"] = Field(
        "standard", description="Validation level used when a command does not name one."
    )
    rules: list[ValidationRule] = Field(default_factory=list, description="Custom SQL assertions.")


class ConfigDocument(_Section):
    """The TOML document as written; `Config` adds where it was loaded from."""

    state: StateConfig = Field(description="Where the daemon keeps its state.")
    sources: list[SourceConfig] = Field(description="Databases to back up.")
    destinations: list[DestinationConfig] = Field(description="Where backups are stored.")
    strategy: StrategyPolicy = Field(default_factory=StrategyPolicy, description="How `auto` picks a strategy.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Backup validation.")


class Config(ConfigDocument):
    """A validated config; build it with `load_config`."""

    path: Path = Field(description="Absolute path of the config file (set by load_config, not a TOML key).")

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise UnknownSource(f"unknown source {name!r} (configured: {_names(self.sources)})")

    def destination(self, name: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.name == name:
                return destination
        raise NotFound(f"unknown destination {name!r} (configured: {_names(self.destinations)})")

    def enabled_destinations(self) -> list[DestinationConfig]:
        """Enabled destinations, priority 1 first, ties in config order."""
        return sorted((d for d in self.destinations if d.enabled), key=lambda d: d.priority)


def _names(items: list[SourceConfig] | list[DestinationConfig]) -> str:
    return ", ".join(item.name for item in items)
