"""The backupd config: `load_config(path)` returns a frozen, validated `Config` or raises `ConfigError`."""

from backupd.config.load import load_config
from backupd.config.schema import (
    Config,
    DestinationConfig,
    EncryptionConfig,
    SourceConfig,
    StateConfig,
    StrategyPolicy,
    ValidationConfig,
    ValidationRule,
)

__all__ = [
    "Config",
    "DestinationConfig",
    "EncryptionConfig",
    "SourceConfig",
    "StateConfig",
    "StrategyPolicy",
    "ValidationConfig",
    "ValidationRule",
    "load_config",
]
