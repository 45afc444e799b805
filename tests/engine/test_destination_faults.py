"""Backups onto a real small filesystem that fails: full while the sidecar is written, read-only
between files. The error names the destination and the cause with its own code (never `internal
error`), and a failed backup removes what it wrote at once, not at the next backup.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

from backupd.destinations.base import TEMP_SUFFIX
from tests.destinations.conftest import tmpfs  # noqa: F401 - the fixture these tests use

from .dbtools import SOURCE, Env, cli, create_db, destination_files, fill_text, make_env, sidecar_ids

PAGE = 4096


def env_on(tmp_path, mount_point) -> tuple[Env, Path]:
    """An installation whose local destination is on the tmpfs at `mount_point`, with a ~3 MiB source;
    (env, the destination's directory)."""
    made = make_env(tmp_path / "env", encrypted=False)
    dest_dir = mount_point / "backups"
    made.config.write_text(made.config.read_text().replace('path = "backups"', f'path = "{dest_dir}"'))
    conn = create_db(made.db)
    fill_text(conn, "docs", 3, seed=11)
    conn.close()
    return replace(made, dest=dest_dir), dest_dir


def leave_free(mount_point: Path, size: int) -> None:
    """Fill the tmpfs so that exactly the pages `size` bytes need stay free."""
    st = os.statvfs(mount_point)
    (mount_point / "filler").write_bytes(bytes(st.f_bavail * st.f_frsize - -(-size // PAGE) * PAGE))


def files(dest_dir) -> list[str]:
    return sorted(str(p.relative_to(dest_dir)) for p in dest_dir.rglob("*") if p.is_file())


def backup(env, strategy: str = "full"):
    return cli("backup", "-c", env.config, "--source", SOURCE, "--strategy", strategy, "--json")


def test_disk_full_while_writing_the_sidecar_removes_the_artifact_at_once(tmp_path, tmpfs):  # noqa: F811
    mnt = tmpfs("size=16m")
    env, dest_dir = env_on(tmp_path, mnt)
    first = backup(env)
    assert first.code == 0, first.stderr
    kept = files(dest_dir)
    artifact = next(dest_dir.rglob("*.bkpd")).stat().st_size
    leave_free(mnt, artifact)  # room for the next (identical) artifact, and not one page for its sidecar

    r = backup(env)
    assert r.code == 1, (r.stdout, r.stderr)
    err = r.error()
    assert err["code"] == "destination_full", err
    assert "destination 'local'" in err["error"] and ".manifest: no space left on device" in err["error"], err
    assert "internal error" not in r.stderr
    assert files(dest_dir) == kept, "the failed backup's artifact is still on the destination"

    (mnt / "filler").unlink()
    again = backup(env, "incremental")
    assert again.code == 0, again.stderr
    assert len(sidecar_ids(env)) == 2


def test_a_read_only_destination_with_crash_leftovers_is_a_clear_error(tmp_path, tmpfs):  # noqa: F811
    mnt = tmpfs("size=16m")
    env, dest_dir = env_on(tmp_path, mnt)
    assert backup(env).code == 0
    stale = dest_dir / SOURCE / f".20990101T000000.000000Z-000000.bkpd.abcd1234{TEMP_SUFFIX}"
    stale.write_bytes(b"what a killed backup left")
    tmpfs.remount(mnt, "ro")

    r = backup(env, "incremental")
    assert r.code == 1, (r.stdout, r.stderr)
    err = r.error()
    assert err["code"] == "destination_read_only", err
    assert err["error"].startswith("destination 'local': ") and "read-only file system" in err["error"], err
    assert "remount it read-write" in err["error"]

    tmpfs.remount(mnt, "rw")
    r = backup(env, "incremental")
    assert r.code == 0, r.stderr
    assert not stale.exists()


def test_remounted_read_only_at_random_moments_every_failure_is_classified(tmp_path, tmpfs):  # noqa: F811
    """The remount succeeds only while no file is open for writing: between the artifact and the sidecar,
    before the first upload, after the last. Whatever it hits, the error says read-only, and once the
    destination is writable again the next backup succeeds and leaves nothing behind."""
    mnt = tmpfs("size=64m")
    env, dest_dir = env_on(tmp_path, mnt)
    assert backup(env).code == 0
    codes = []
    for trial in range(6):
        stop = threading.Event()

        def remount_when_possible() -> None:
            while not stop.is_set():
                if subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0:
                    return

        t = threading.Thread(target=remount_when_possible)
        t.start()
        r = backup(env, "full" if trial % 2 else "incremental")
        stop.set()
        t.join()
        if r.code:
            assert "internal error" not in r.stderr, r.stderr
            codes.append(r.error()["code"])
        else:
            codes.append("completed")
        tmpfs.remount(mnt, "rw")
        after = backup(env, "incremental")
        assert after.code == 0, after.stderr
        temps = [f for f in destination_files(env) if f.endswith(TEMP_SUFFIX)]
        assert temps == []
    assert set(codes) <= {"destination_read_only", "completed"}, codes
    assert "destination_read_only" in codes, codes


def test_resync_onto_a_disk_that_fills_at_the_sidecar_removes_the_artifact_at_once(tmp_path, tmpfs):  # noqa: F811
    env = make_env(tmp_path / "env", encrypted=False)
    conn = create_db(env.db)
    fill_text(conn, "docs", 3, seed=11)
    conn.close()
    assert backup(env).code == 0
    artifact = next(env.dest.rglob("*.bkpd")).stat().st_size
    mnt = tmpfs("size=16m")
    usb = mnt / "backups"
    env.config.write_text(env.config.read_text() + f'\n[[destinations]]\nname = "usb"\nkind = "local"\n'
                          f'path = "{usb}"\ncompression_level = 1\n')
    usb.mkdir()
    leave_free(mnt, artifact)

    r = cli("resync", "-c", env.config, "--source", SOURCE, "--json")
    assert r.code == 1, (r.stdout, r.stderr)
    assert "usb" in r.stdout and "no space left on device" in r.stdout and ".manifest" in r.stdout, r.stdout
    assert files(usb) == [], "the artifact resync wrote is still there without its sidecar"


def test_a_read_only_destination_holding_an_orphan_does_not_stop_the_backup_on_the_others(tmp_path, tmpfs):  # noqa: F811
    """The artifact a failed copy could not remove (the medium went read-only) stays an orphan there;
    the next backup must still reach the healthy destination, reporting the read-only one."""
    env = make_env(tmp_path / "env", encrypted=False)
    conn = create_db(env.db)
    fill_text(conn, "docs", 1, seed=11)
    conn.close()
    mnt = tmpfs("size=16m")
    usb = mnt / "backups"
    env.config.write_text(env.config.read_text() + f'\n[[destinations]]\nname = "usb"\nkind = "local"\n'
                          f'path = "{usb}"\n[fanout]\nsuccess_policy = "any"\n')
    assert backup(env).code == 0
    orphan = usb / SOURCE / "20261201T000000.000000Z-0a0b0c.bkpd"
    orphan.write_bytes(b"the artifact of a copy whose sidecar failed")
    tmpfs.remount(mnt, "ro")

    r = backup(env, "incremental")
    assert r.code == 0, r.stderr
    out = r.json()
    assert out["status"] == "completed_with_warnings" and out["destinations"] == ["local"], out
    assert "read-only file system" in out["failed_destinations"]["usb"], out
