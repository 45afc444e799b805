"""backupd: a backup daemon for SQLite databases."""

__version__ = "0.1.0"
