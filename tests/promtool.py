"""promtool (Debian package `prometheus`, installed by .ci/run): the tests' one way to run it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `promtool ARGS`; fails (never skips) when it is missing, naming what to install."""
    exe = shutil.which("promtool")
    assert exe is not None, "promtool is missing: apt-get install prometheus (as .ci/run does)"
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


def check_metrics(text: str) -> None:
    """`promtool check metrics` on the exposition `text`: no error and no lint warning."""
    done = promtool("check", "metrics", stdin=text)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr
