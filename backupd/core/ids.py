"""Backup ids and the names artifacts get on a destination.

A backup id is `YYYYMMDDTHHMMSS.ffffffZ-xxxxxx`: the snapshot instant in UTC (so ids sort by time)
plus 6 random hex digits. Every file a backup leaves on a destination is named `<source>/<id>.<ext>`,
and `parse_key` is the one place that recognises such names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

ARTIFACT_EXT = "bkpd"
SIDECAR_EXT = "manifest"
# ASCII only and anchored with \Z: `$` would also accept a trailing newline, `\d` any Unicode digit.
_ID_RE = re.compile(r"\A(\d{8}T\d{6}\.\d{6})Z-([0-9a-f]{6})\Z", re.ASCII)
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)


def new_backup_id(instant: datetime, random_hex: str) -> str:
    """`new_backup_id(datetime(2026,11,26,16,0,55,123456,tz=UTC), "3f9a1c")` -> '20261126T160055.123456Z-3f9a1c'."""
    if instant.tzinfo is None:
        raise ValueError("backup id instant must be timezone-aware")
    if not re.fullmatch(r"[0-9a-f]{6}", random_hex):
        raise ValueError(f"random part must be 6 hex digits (got {random_hex!r})")
    t = instant.astimezone(timezone.utc)
    # strftime("%Y") does not zero-pad years before 1000; the id's 8-digit date part needs it
    return f"{t.year:04d}" + t.strftime("%m%dT%H%M%S.%f") + "Z-" + random_hex


def is_backup_id(value: str) -> bool:
    """True when `value` is a backup id naming a real instant (so `backup_id_time` accepts it)."""
    try:
        backup_id_time(value)
    except ValueError:
        return False
    return True


def backup_id_time(backup_id: str) -> datetime:
    """The instant encoded in a backup id; ValueError when it is not one."""
    m = _ID_RE.match(backup_id)
    if not m:
        raise ValueError(f"not a backup id: {backup_id!r}")
    try:
        return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"not a backup id (no such instant): {backup_id!r}") from None


def is_valid_name(name: str) -> bool:
    """Source and destination names: safe as one path component."""
    return bool(_NAME_RE.match(name))


def artifact_key(source: str, backup_id: str) -> str:
    return f"{source}/{backup_id}.{ARTIFACT_EXT}"


def sidecar_key(source: str, backup_id: str) -> str:
    return f"{source}/{backup_id}.{SIDECAR_EXT}"


@dataclass(frozen=True)
class ParsedKey:
    source: str
    backup_id: str
    kind: str  # "artifact" | "sidecar"


def parse_key(key: str) -> ParsedKey | None:
    """Recognise an artifact or sidecar key; None for anything else (temp files, strangers)."""
    parts = key.split("/")
    if len(parts) != 2 or not is_valid_name(parts[0]):
        return None
    stem, _, ext = parts[1].rpartition(".")
    kind = {ARTIFACT_EXT: "artifact", SIDECAR_EXT: "sidecar"}.get(ext)
    if kind is None or not is_backup_id(stem):
        return None
    return ParsedKey(parts[0], stem, kind)
