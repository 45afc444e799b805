"""`inventory` on a real daemon with two destinations: a backup taken while one was disabled is a copy
missing there once it is enabled again, a verified copy counts towards the coverage, and `backupctl
inventory` shows it all as tables; `backupd inventory` answers the same from the catalog."""

from __future__ import annotations

import json
import subprocess

from .harness import BACKUPD

SECOND = '\n[[destinations]]\nname = "sure"\nkind = "local"\npath = "sure"\npriority = 2\n'


def test_inventory_counts_copies_chains_missing_copies_and_verification(installation, daemon_for):
    inst = installation(demo="small", extra=SECOND)
    d = daemon_for(inst).start()
    first = d.ctl_json("backup", "--source", "demo", "--wait")
    assert d.ctl("dest", "disable", "sure").returncode == 0
    second = d.ctl_json("backup", "--source", "demo", "--wait")
    assert d.ctl("dest", "enable", "sure").returncode == 0
    verified = d.ctl_json("validate", first["id"], "--level", "standard", "--destination", "sure", "--wait")
    assert verified["verdict"] == "pass", verified

    inv = d.ctl_json("inventory")
    points = d.client().restore_points("demo")
    stored = sum(b["stored_bytes"] for b in points)
    assert inv["totals"] == {"backups": 2, "restore_points": 2, "stored_bytes": stored,
                             "logical_bytes": sum(b["logical_bytes"] for b in points)}
    src = inv["by_source"]["demo"]
    assert (src["oldest"], src["newest"]) == (first["created_at"], second["created_at"])
    assert src["chain_length"] == (1 if second["strategy"] == "full" else 2) and src["verified"] == 1
    assert sum(s["backups"] for s in inv["by_strategy"].values()) == 2
    local, sure = inv["by_destination"]["local"], inv["by_destination"]["sure"]
    assert (local["backups"], local["missing"], local["chain_length"]) == (2, [], {"demo": src["chain_length"]})
    assert (sure["backups"], sure["restore_points"], sure["missing"]) == (1, 1, [second["id"]])
    assert sure["chain_length"] == {"demo": 1} and local["stored_bytes"] + sure["stored_bytes"] == stored
    assert inv["verification"] == {"days": 30, "backups": 2, "verified": 1, "coverage": 0.5}

    offline = subprocess.run([str(BACKUPD), "inventory", "-c", str(inst.config), "--json"], capture_output=True,
                             text=True, timeout=60)
    assert offline.returncode == 0 and json.loads(offline.stdout) == inv, offline.stderr

    text = d.ctl("inventory", "--days", "7")
    assert text.returncode == 0, text.stderr
    assert "MISSING" in text.stdout and f"1 ({second['id']})" in text.stdout, text.stdout
    assert "verified in the last 7 days: 1 of 2 backups (50%)" in text.stdout, text.stdout
    bad = d.ctl("--json", "inventory", "--days", "0")
    assert bad.returncode == 2 and '"bad_request"' in bad.stdout + bad.stderr, (bad.stdout, bad.stderr)

    d.ctl_json("dest", "resync", "--wait")
    assert d.ctl_json("inventory")["by_destination"]["sure"]["missing"] == []
    d.stop()
