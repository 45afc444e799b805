"""What only a local directory can show: its temp-file naming, failures of the filesystem beneath it
(a root that cannot exist, a read-only filesystem, a full disk), and its registry entry.

The suite runs as root, so permission bits cannot make a directory unwritable; the failures here are
real ones: a root whose parent is a regular file, and small tmpfs mounts (read-only and full).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from backupd.config.schema import DestinationConfig
from backupd.destinations.base import classify_os_error, get_bytes, put_bytes
from backupd.destinations.local import LocalDestination
from backupd.destinations.registry import open_destination
from backupd.errors import (DestinationError, DestinationFull, DestinationIOError, DestinationPermissionDenied,
                            DestinationReadOnly, DestinationStale, DestinationUnavailable)

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.backupd-tmp$")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_upload_writes_a_hidden_temp_file_beside_its_target(tmp_path):
    dest = LocalDestination("local", tmp_path / "root")
    up = dest.open_write("kb/a.bkpd")
    up.write(b"x")
    (temp,) = os.listdir(tmp_path / "root" / "kb")
    assert TEMP_NAME.match(temp) and TEMP_NAME.match(temp)["name"] == "a.bkpd"  # what plant_local_temp imitates
    up.commit()
    assert os.listdir(tmp_path / "root" / "kb") == ["a.bkpd"]


def test_without_directory_fsync(tmp_path):
    dest = LocalDestination("share", tmp_path / "root", sync_dir=False)
    put_bytes(dest, "kb/a.bkpd", b"data")
    assert get_bytes(dest, "kb/a.bkpd") == b"data"
    dest.delete("kb/a.bkpd")
    assert dest.list("") == []


def test_a_root_that_cannot_be_created(tmp_path):
    (tmp_path / "plain-file").write_text("not a directory")
    root = tmp_path / "plain-file" / "backups"
    dest = LocalDestination("offsite", root)

    with pytest.raises(DestinationError) as exc:
        put_bytes(dest, "kb/a.bkpd", b"data")
    assert exc.value.code == "destination_error"
    assert "'offsite'" in str(exc.value) and str(root) in str(exc.value) and "Not a directory" in str(exc.value)

    health = dest.health()
    assert (health.status, health.reachable, health.writable) == ("unhealthy", False, False)
    assert health.problems and str(root) in health.problems[0]
    assert dest.free_space() is None
    assert dest.list("") == [] and dest.remove_stale_temp("") == []


def test_a_key_whose_directory_is_an_object(tmp_path):
    dest = LocalDestination("local", tmp_path / "root")
    put_bytes(dest, "kb", b"an object, not a directory")
    with pytest.raises(DestinationError, match="writing kb/a.bkpd"):
        dest.open_write("kb/a.bkpd")
    put_bytes(dest, "crm/a.bkpd", b"an object under a directory")
    with pytest.raises(DestinationError, match="writing crm"):
        put_bytes(dest, "crm", b"would replace a directory")
    assert files_under(tmp_path / "root") == ["crm/a.bkpd", "kb"]  # no temp file left behind


# --- real small filesystems ------------------------------------------------------------------------


def test_a_full_disk_is_reported_and_leaves_earlier_objects_intact(tmpfs):
    mnt = tmpfs("size=64k")
    dest = LocalDestination("usb", mnt / "backups")
    put_bytes(dest, "kb/old.bkpd", b"an earlier backup")

    with pytest.raises(DestinationFull, match="no space left on device") as exc:
        with dest.open_write("kb/new.bkpd") as up:
            for _ in range(16):
                up.write(bytes(64 * 1024))
    assert exc.value.code == "destination_full" and not exc.value.retryable
    assert exc.value.hint and "free space" in exc.value.hint
    assert "'usb'" in str(exc.value) and "kb/new.bkpd" in str(exc.value)

    assert files_under(mnt) == ["backups/kb/old.bkpd"]  # the temp file is gone
    assert get_bytes(dest, "kb/old.bkpd") == b"an earlier backup"
    assert dest.remove_stale_temp("") == []
    assert dest.health().status == "ok"  # the space the failed upload took is free again


def test_a_full_disk_during_an_overwrite_keeps_the_old_object(tmpfs):
    mnt = tmpfs("size=64k")
    dest = LocalDestination("usb", mnt)
    put_bytes(dest, "kb/a.bkpd", b"old")
    with pytest.raises(DestinationError, match="no space left"):
        put_bytes(dest, "kb/a.bkpd", bytes(1024 * 1024))
    assert get_bytes(dest, "kb/a.bkpd") == b"old"
    assert files_under(mnt) == ["kb/a.bkpd"]


def test_a_read_only_filesystem(tmpfs):
    mnt = tmpfs("size=1m")
    dest = LocalDestination("ro", mnt / "backups")
    put_bytes(dest, "kb/a.bkpd", b"written before the remount")
    tmpfs.remount(mnt, "ro")

    with pytest.raises(DestinationReadOnly, match="read-only file system") as exc:
        put_bytes(dest, "kb/b.bkpd", b"new")
    assert exc.value.code == "destination_read_only" and not exc.value.retryable
    assert "'ro'" in str(exc.value) and "remount it read-write" in exc.value.hint
    with pytest.raises(DestinationReadOnly, match="deleting kb/a.bkpd"):
        dest.delete("kb/a.bkpd")

    assert get_bytes(dest, "kb/a.bkpd") == b"written before the remount"
    assert [o.key for o in dest.list("")] == ["kb/a.bkpd"]
    health = dest.health()
    assert (health.status, health.reachable, health.writable) == ("unhealthy", True, False)
    assert health.problems and "Read-only" in health.problems[0]


def test_the_registry_builds_a_local_destination(tmp_path):
    cfg = DestinationConfig(name="local", kind="local", path=tmp_path / "root")
    dest = open_destination(cfg)
    assert isinstance(dest, LocalDestination) and (dest.name, dest.kind) == ("local", "local")
    put_bytes(dest, "kb/a.bkpd", b"via the registry")
    assert (tmp_path / "root" / "kb" / "a.bkpd").read_bytes() == b"via the registry"


def test_a_read_that_fails_with_eio_is_a_classified_retryable_error():
    """/proc/self/mem answers a read at offset 0 with EIO: a real I/O error without a failing disk."""
    dest = LocalDestination("proc", Path("/proc/self"))
    with dest.open_read("mem") as f:
        with pytest.raises(DestinationIOError, match="reading mem: input/output error") as exc:
            f.read(10)
    assert exc.value.code == "destination_io_error" and exc.value.retryable and "'proc'" in str(exc.value)


@pytest.mark.parametrize("code, cls, retryable", [
    (errno.ENOSPC, DestinationFull, False), (errno.EDQUOT, DestinationFull, False),
    (errno.EROFS, DestinationReadOnly, False), (errno.EACCES, DestinationPermissionDenied, False),
    (errno.EPERM, DestinationPermissionDenied, False), (errno.ESTALE, DestinationStale, True),
    (errno.EIO, DestinationIOError, True), (errno.ENOTCONN, DestinationUnavailable, True),
    # a dropped or refused connection (a share's, a server's) is retried, whichever errno says so
    (errno.ECONNRESET, DestinationUnavailable, True), (errno.ECONNREFUSED, DestinationUnavailable, True),
    (errno.ECONNABORTED, DestinationUnavailable, True), (errno.EPIPE, DestinationUnavailable, True),
    (errno.EHOSTUNREACH, DestinationUnavailable, True), (errno.ENETUNREACH, DestinationUnavailable, True),
    (errno.ENETDOWN, DestinationUnavailable, True), (errno.EAGAIN, DestinationUnavailable, True),
    (errno.EBUSY, DestinationUnavailable, True), (errno.EINTR, DestinationUnavailable, True),
])
def test_every_destination_classifies_os_errors_by_one_table(code, cls, retryable):
    err = classify_os_error(OSError(code, os.strerror(code)), "destination 'nas': writing kb/a.bkpd")
    assert type(err) is cls and err.retryable is retryable and err.hint
    assert str(err).startswith("destination 'nas': writing kb/a.bkpd: ")
    other = classify_os_error(OSError(errno.EMLINK, os.strerror(errno.EMLINK)), "destination 'nas': writing x")
    assert type(other) is DestinationError and "Too many links" in str(other) and not other.retryable

