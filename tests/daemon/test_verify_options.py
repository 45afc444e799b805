"""`backupctl` against a real daemon: metadata and validation of a manual backup (`backup --meta
KEY=VALUE --validate LEVEL`), and which copies `validate` checks (`--destination`, `--all-copies`,
`--sample PERCENT`)."""

from __future__ import annotations

import json


def test_backup_metadata_and_validation_through_the_daemon(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()

    done = d.ctl_json("backup", "--source", "demo", "--wait", "--meta", "ticket=OPS-12",
                      "--meta", "reason=before the migration", "--validate", "standard")
    assert done["status"] == "completed", done
    assert done["metadata"] == {"ticket": "OPS-12", "reason": "before the migration"}
    assert done["validation"]["level"] == "standard" and done["validation"]["verdict"] == "pass"
    [listed] = d.ctl_json("ls")
    assert listed["metadata"] == done["metadata"]
    human = d.ctl("ls")
    assert "reason=before the migration ticket=OPS-12" in human.stdout, human.stdout
    shown = d.ctl("backup", "--source", "demo", "--wait", "--validate", "quick")
    assert shown.returncode == 0 and "verdict: pass" in shown.stdout, shown

    for bad, why in ((["--meta", "no value"], "expected KEY=VALUE"), (["--meta", "bad key=1"], "is not a name"),
                     (["--meta", "k=line\nbreak"], "unprintable character"), (["--meta", "k=" + "x" * 2000], "at most 1024")):
        proc = d.ctl("--json", "backup", "--source", "demo", *bad)
        assert proc.returncode == 2, proc
        assert json.loads(proc.stderr)["code"] == "bad_usage" and why in proc.stderr, proc.stderr
    assert len(d.ctl_json("jobs", "--kind", "backup")) == 2, "a refused request queues nothing"


def test_validate_chooses_its_copies_and_samples_through_the_daemon(installation, daemon_for):
    inst = installation(demo="small")
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")

    report = d.ctl_json("validate", backup["id"], "--level", "standard", "--destination", "local",
                        "--sample", "50", "--wait")
    assert report["verdict"] == "pass" and report["sample_percent"] == 50, report
    [blocks] = [c for c in report["checks"] if c["id"] == "blocks_authentic"]
    assert blocks["details"]["destination"] == "local" and "sampled" in blocks["message"]
    everything = d.ctl_json("validate", backup["id"], "--all-copies", "--wait")
    assert everything["verdict"] == "pass" and "sample_percent" not in everything

    unknown = d.ctl("--json", "validate", backup["id"], "--destination", "elsewhere")
    assert unknown.returncode == 2 and json.loads(unknown.stderr)["code"] == "unknown_destination", unknown
    quick = d.ctl("--json", "validate", backup["id"], "--level", "quick", "--sample", "10")
    assert quick.returncode == 2 and "needs level standard" in quick.stderr, quick
    both = d.ctl("validate", backup["id"], "--destination", "local", "--all-copies")
    assert both.returncode == 2, both
    assert len(d.ctl_json("jobs", "--kind", "validate")) == 2, "a refused request queues nothing"


def test_a_restore_reads_first_the_copy_its_request_selects(installation, daemon_for):
    """`restore.create`'s copy_selection reaches the job's engine: "local" (priority 1) is read first by
    default, "sure" (priority 2, the one verified) with most_reliable, so only the default restore
    meets local's damaged copy and falls back."""
    inst = installation(demo="small", extra='\n[[destinations]]\nname = "sure"\nkind = "local"\npath = "sure"\n'
                                             'priority = 2\n')
    d = daemon_for(inst).start()
    backup = d.ctl_json("backup", "--source", "demo", "--wait")
    verified = d.ctl_json("validate", backup["id"], "--level", "standard", "--destination", "sure", "--wait")
    assert verified["verdict"] == "pass", verified
    artifact = inst.dest / "demo" / f"{backup['id']}.bkpd"
    raw = bytearray(artifact.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    artifact.write_bytes(bytes(raw))

    chosen = d.ctl("restore", "--source", "demo", "--backup", backup["id"], "--to", str(inst.root / "r1.db"),
                   "--copy-selection", "most_reliable", "--wait")
    assert chosen.returncode == 0, chosen
    assert d.events("restore_copy_failed") == [], "most_reliable read the verified copy first"
    default = d.ctl("restore", "--source", "demo", "--backup", backup["id"], "--to", str(inst.root / "r2.db"),
                    "--wait")
    assert default.returncode == 0, default
    fell_back = d.wait_event("restore_copy_failed")
    assert (fell_back["destination"], fell_back["next_destination"]) == ("local", "sure")
