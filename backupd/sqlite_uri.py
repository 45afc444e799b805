"""How backupd opens an SQLite file by its path: always as a `file:` URI with every unsafe byte escaped.

SQLite reads a `file:` name as a URI: `?` starts the query, `#` the fragment and `%XX` is decoded, so a
path holding any of them, opened as `f"file:{path}"`, names another file (and `mode=rwc` would create
it). `sqlite_uri` percent-escapes every byte of the path outside `A-Z a-z 0-9 _ . - ~ /`, so any path
the file system allows (non-UTF-8 bytes included, taken from `os.fsencode`) opens exactly that file.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Literal
from urllib.parse import quote_from_bytes

Mode = Literal["ro", "rw", "rwc"]


def sqlite_uri(path: str | bytes | os.PathLike, *, mode: Mode = "rw") -> str:
    """The `file:` URI of `path` for SQLite: `/tmp/a#b/x.db` -> `file:///tmp/a%23b/x.db?mode=rw`.

    An absolute path gets an empty authority (`file://` + path, so a path starting with `//` is not read
    as a host); a relative one stays relative to the working directory, as SQLite resolves it."""
    raw = os.fsencode(path)
    escaped = quote_from_bytes(raw, safe="/")
    prefix = "file://" if raw.startswith(b"/") else "file:"
    return f"{prefix}{escaped}?mode={mode}"


def connect(path: str | bytes | os.PathLike, *, mode: Mode = "rw", **kwargs: Any) -> sqlite3.Connection:
    """`sqlite3.connect` on the file at `path` (through `sqlite_uri`); `kwargs` go to `sqlite3.connect`."""
    return sqlite3.connect(sqlite_uri(path, mode=mode), uri=True, **kwargs)
