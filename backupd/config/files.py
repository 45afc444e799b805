"""Checks of the files a config names for logins and secrets: they exist, are regular files, and a
secret is readable by its owner only. Shared by the destinations' and the notifiers' load-time checks."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path


def login_file_problem(path: Path, *, secret: bool) -> str | None:
    """Why `path` cannot serve as a login file (a secret must be mode 0600 or stricter); None when it can."""
    shown, quoted = repr(str(path)), shlex.quote(str(path))
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{shown} does not exist; check the path"
    except OSError as exc:
        return f"{shown} cannot be read ({exc.strerror}); check the path and its directories"
    if not stat.S_ISREG(info.st_mode):
        return f"{shown} is not a regular file"
    mode = stat.S_IMODE(info.st_mode)
    if secret and mode & 0o077:
        access = "readable" if mode & 0o044 else "accessible"
        return f"{shown} is {access} by group or others (mode {mode:04o}); run: chmod 600 {quoted}"
    return None
