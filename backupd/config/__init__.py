"""The backupd config: `load_config(path)` returns a frozen, validated `Config` or raises `ConfigError`;
`parse_schedule(mapping, sources)` and `parse_destination(mapping, taken)` validate one schedule or
destination added at run time."""

from backupd.config.destination import DestinationConfig, EncryptionConfig
from backupd.config.load import load_config, parse_destination, parse_schedule
from backupd.config.schedule import ScheduleConfig
from backupd.config.schema import (
    Config,
    ControlConfig,
    DaemonConfig,
    FanoutConfig,
    RestoreConfig,
    RetentionConfig,
    SourceConfig,
    StateConfig,
    StrategyPolicy,
    ValidationConfig,
    ValidationRule,
)

__all__ = [
    "Config",
    "ControlConfig",
    "DaemonConfig",
    "DestinationConfig",
    "EncryptionConfig",
    "FanoutConfig",
    "RestoreConfig",
    "RetentionConfig",
    "ScheduleConfig",
    "SourceConfig",
    "StateConfig",
    "StrategyPolicy",
    "ValidationConfig",
    "ValidationRule",
    "load_config",
    "parse_destination",
    "parse_schedule",
]
