"""Real servers the tests start on loopback (sshd, smbd), and what they share."""

from __future__ import annotations

import shutil
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(binary: str, package: str) -> str:
    """The path of a server binary; a missing one FAILS the run (CI installs it), never skips."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"{binary} not found: install {package} (apt-get install {package}); these tests never skip")
    return path
