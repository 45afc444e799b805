"""The shipped systemd unit passes `systemd-analyze verify` (it needs no running systemd)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_service_unit_verifies(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install the systemd package (.ci/run does)"
    unit = tmp_path / "backupd.service"
    # verify checks that ExecStart exists; the package installs /usr/bin/backupd, a checkout does not
    unit.write_text((ROOT / "systemd" / "backupd.service").read_text().replace("/usr/bin/backupd", "/bin/true"))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    text = unit.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=mixed"):
        assert needed in text
