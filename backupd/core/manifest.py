"""The manifest: what one backup is. It ends every artifact and, with the artifact's size and
checksum added, forms the sidecar that lets restore points be listed without reading artifacts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from backupd.core.ids import is_backup_id
from backupd.core.vocab import STRATEGIES, Strategy
from backupd.errors import CorruptArtifact


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    source: str
    strategy: str
    parent_id: str | None
    base_id: str | None
    created_at: str  # ISO 8601 UTC, the snapshot instant
    page_size: int
    page_count: int
    changed_pages: int
    journal_mode: str
    schema_hash: str
    tables: dict[str, int]  # table -> row count
    strategy_reason: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    destinations: tuple[str, ...] = ()  # the destinations it was meant for, when not every enabled one
    warnings: tuple[str, ...] = ()  # "source_corrupt: ...", "source_shrunk: ...": the source looked damaged

    @property
    def logical_bytes(self) -> int:
        return self.page_size * self.page_count

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        if self.destinations:
            d["destinations"] = list(self.destinations)
        else:
            del d["destinations"]  # absent, as in manifests written before the field existed
        if self.warnings:
            d["warnings"] = list(self.warnings)
        else:
            del d["warnings"]
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        """Parse and sanity-check; any inconsistency is a CorruptArtifact."""
        if not isinstance(d, dict):
            raise CorruptArtifact("manifest is not an object")
        names = {f.name for f in fields(cls)}
        try:
            m = cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:
            raise CorruptArtifact(f"manifest is incomplete: {exc}") from None
        m.check()
        for name in ("tags", "destinations", "warnings"):
            if isinstance(getattr(m, name), list):
                object.__setattr__(m, name, tuple(getattr(m, name)))
        return m

    def check(self) -> None:
        problems = []
        if not isinstance(self.backup_id, str) or not is_backup_id(self.backup_id):
            problems.append(f"bad backup id {self.backup_id!r}")
        if self.strategy not in STRATEGIES:
            problems.append(f"unknown strategy {self.strategy!r}")
        if (self.strategy == Strategy.FULL) != (self.parent_id is None):
            problems.append("a full backup has no parent; a delta has one")
        for name in ("parent_id", "base_id"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and is_backup_id(value)):
                problems.append(f"bad {name} {value!r}")
        for name in ("source", "journal_mode", "schema_hash", "strategy_reason", "description"):
            if not isinstance(getattr(self, name), str):
                problems.append(f"{name} is not a string")
        if not _is_aware_iso_time(self.created_at):
            problems.append(f"created_at {self.created_at!r} is not an ISO 8601 time with a UTC offset")
        if not _is_int(self.page_size) or self.page_size < 512 or self.page_size > 65536:
            problems.append(f"bad page size {self.page_size!r}")
        for name in ("page_count", "changed_pages"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                problems.append(f"bad {name.replace('_', ' ')} {value!r}")
        if not isinstance(self.tables, dict) or not all(_is_int(n) for n in self.tables.values()):
            problems.append("tables is not an object of row counts")
        for name in ("tags", "destinations"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
                problems.append(f"{name} is not a list of strings")
        if not isinstance(self.metadata, dict):
            problems.append("metadata is not an object")
        if problems:
            raise CorruptArtifact("manifest is invalid: " + "; ".join(problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_aware_iso_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


@dataclass(frozen=True)
class Sidecar:
    """The manifest plus what only exists once the artifact is complete."""

    manifest: Manifest
    artifact_key: str
    artifact_size: int
    artifact_digest: str  # hex BLAKE2b-256 of the artifact's bytes before its trailer
    compression_level: int
    encrypted: bool

    def to_json(self) -> bytes:
        d = {
            "manifest": self.manifest.to_dict(),
            "artifact_key": self.artifact_key,
            "artifact_size": self.artifact_size,
            "artifact_digest": self.artifact_digest,
            "compression_level": self.compression_level,
            "encrypted": self.encrypted,
        }
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Sidecar":
        try:
            d = json.loads(raw)
            return cls(
                manifest=Manifest.from_dict(d["manifest"]),
                artifact_key=str(d["artifact_key"]),
                artifact_size=int(d["artifact_size"]),
                artifact_digest=str(d["artifact_digest"]),
                compression_level=int(d["compression_level"]),
                encrypted=bool(d["encrypted"]),
            )
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            raise CorruptArtifact(f"sidecar manifest is invalid: {exc!r}") from None
