"""The manifest: what one backup is. It ends every artifact and, with the artifact's size and
checksum added, forms the sidecar that lets restore points be listed without reading artifacts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from backupd.core.ids import is_backup_id
from backupd.errors import CorruptArtifact

STRATEGIES = ("full", "incremental", "differential")


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

    @property
    def logical_bytes(self) -> int:
        return self.page_size * self.page_count

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
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
        if isinstance(m.tags, list):
            object.__setattr__(m, "tags", tuple(m.tags))
        return m

    def check(self) -> None:
        problems = []
        if not is_backup_id(self.backup_id):
            problems.append(f"bad backup id {self.backup_id!r}")
        if self.strategy not in STRATEGIES:
            problems.append(f"unknown strategy {self.strategy!r}")
        if (self.strategy == "full") != (self.parent_id is None):
            problems.append("a full backup has no parent; a delta has one")
        if not isinstance(self.page_size, int) or self.page_size < 512 or self.page_size > 65536:
            problems.append(f"bad page size {self.page_size!r}")
        if not isinstance(self.page_count, int) or self.page_count < 0:
            problems.append(f"bad page count {self.page_count!r}")
        if not isinstance(self.tables, dict):
            problems.append("tables is not an object")
        if problems:
            raise CorruptArtifact("manifest is invalid: " + "; ".join(problems))


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
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"sidecar manifest is invalid: {exc!r}") from None
