"""Where a flagged backup (issue 8 item 4) must be seen besides `list` and `verify`: the one-shot
`backup` warns on stderr (exit 0, the backup is stored), and a restore refused by integrity_check
names the damage recorded at backup time as the cause instead of calling the backup corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .dbtools import cli
from .test_source_check import _corrupt_page_header, _drop_row_from_index, _setup, _truncate


def _backup(cfg: Path) -> tuple[dict, str]:
    proc = cli("backup", "-c", str(cfg), "--source", "db", "--strategy", "full", "--json")
    assert proc.code == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize("damage, check, code", [
    (_corrupt_page_header, "quick", "source_corrupt"),
    (_drop_row_from_index, "full", "source_corrupt"),
    (_truncate, "quick", "source_shrunk"),
])
def test_backup_of_a_flagged_source_warns_on_stderr(tmp_path: Path, damage, check, code):
    cfg = _setup(tmp_path, check)
    assert "warning" not in _backup(cfg)[1]
    damage(tmp_path / "src.db")
    flagged, err = _backup(cfg)
    assert flagged["status"] == "completed_with_warnings"
    assert f"backupd: warning: {code}:" in err


def test_restore_refused_by_integrity_check_names_the_damaged_source(tmp_path: Path):
    cfg = _setup(tmp_path, "full")
    _drop_row_from_index(tmp_path / "src.db")
    flagged, _ = _backup(cfg)
    to = tmp_path / "back.db"
    proc = cli("restore", "-c", str(cfg), "--source", "db", "--backup", flagged["id"], "--to", str(to), "--json")
    assert proc.code == 1
    assert "taken of a source already damaged (source_corrupt" in proc.stderr
    assert not to.exists()
