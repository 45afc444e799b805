"""Free-form metadata of a manual backup: `--meta KEY=VALUE` pairs, recorded in its manifest (so in
the artifact, the sidecar and the catalog) and shown by `list`.

Keys are short names (`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`), values printable text (no control or
format character) of at most MAX_VALUE_CHARS characters, and a backup holds at most MAX_ENTRIES of
them in MAX_TOTAL_BYTES: a manifest stays small, and nothing a terminal or a log line would misread
gets in.

    >>> parse_meta(["ticket=OPS-12", "reason=before migration"])
    {'ticket': 'OPS-12', 'reason': 'before migration'}
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_VALUE_CHARS = 1024
MAX_ENTRIES = 32
MAX_TOTAL_BYTES = 8192
# Unicode categories refused in values: controls, format characters, surrogates, private use,
# unassigned, line and paragraph separators.
UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def parse_meta(items: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings as a checked mapping; ValueError naming the bad item otherwise."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {_short(item)}")
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return check_metadata(out)


def check_metadata(metadata: Any) -> dict[str, str]:
    """`metadata` if it is a mapping of valid keys to valid values within the bounds; ValueError otherwise."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a map of names to text, not {type(metadata).__name__}")
    if len(metadata) > MAX_ENTRIES:
        raise ValueError(f"{len(metadata)} entries: at most {MAX_ENTRIES} are kept per backup")
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"key {_short(key)} is not a name: use letters, digits, '_', '.' and '-', "
                             f"starting with a letter or '_', at most 64 characters")
        if not isinstance(value, str):
            raise ValueError(f"the value of {key!r} must be text, not {type(value).__name__}")
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"the value of {key!r} has {len(value)} characters, at most {MAX_VALUE_CHARS} are kept")
        bad = next((ch for ch in value if unicodedata.category(ch) in UNPRINTABLE), None)
        if bad is not None:
            raise ValueError(f"the value of {key!r} holds the unprintable character U+{ord(bad):04X} "
                             f"(a newline, tab, escape or other control or format character)")
        total += len(key.encode()) + len(value.encode())
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"{total} bytes of metadata: at most {MAX_TOTAL_BYTES} are kept per backup")
    return dict(metadata)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
