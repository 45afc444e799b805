"""The client README's Python example runs as written, against a real daemon with a source `app`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "client" / "README.md"


def test_the_client_readme_python_example_runs_as_written(installation, daemon_for):
    [example] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    inst = installation(app="small")
    d = daemon_for(inst).start()
    r = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120,
                       env={"BACKUPD_SOCKET": str(inst.socket), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    status, backup_id = r.stdout.splitlines()[-1].split()
    assert status == "completed" and backup_id in {b["id"] for b in d.client().restore_points("app")}
    d.stop()
    stopped = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60,
                             env={"BACKUPD_SOCKET": str(inst.socket), "PATH": "/usr/bin:/bin"})
    assert stopped.returncode == 1 and stopped.stderr.startswith("backup failed: cannot reach backupd"), stopped.stderr
