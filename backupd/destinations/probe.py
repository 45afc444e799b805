"""Health probe files: `health()` writes `.probe-<hex>` in a destination's root and deletes it.

A probe that dies between the two (a dropped connection, a killed process) leaves its file, so every
probe first removes the `.probe-*` files it finds, and removes its own even when writing it failed.
Removing another process's probe mid-way is harmless: each probe tolerates its own file being gone.
"""

from __future__ import annotations

import secrets

PROBE_PREFIX = ".probe-"
PROBE_DATA = b"backupd health probe"


def probe_name() -> str:
    """A fresh probe file name, `.probe-<8 hex digits>`."""
    return f"{PROBE_PREFIX}{secrets.token_hex(4)}"


def is_probe(name: str) -> bool:
    return name.startswith(PROBE_PREFIX)
