"""Health probe files never pile up: a probe removes the `.probe-*` files an earlier probe left when its
connection dropped or its process died half-way (every kind), and its own file when writing it fails."""

from __future__ import annotations

from pathlib import Path

import smbclient

from backupd.destinations.base import Destination, put_bytes
from backupd.destinations.local import LocalDestination
from backupd.destinations.sftp import SftpDestination
from backupd.destinations.smb import SmbDestination

STALE = (".probe-0badf00d", ".probe-deadbeef")


def plant_in_root(dest: Destination, name: str) -> None:
    """A file in the destination's root, as a probe that died before deleting it leaves one."""
    if isinstance(dest, SmbDestination):
        with dest._errors("planting a probe file"):
            dest._ensure_root()
            with smbclient.open_file(dest._path(name), mode="xb", **dest._kw()) as f:
                f.write(b"backupd health probe")
        return
    root = dest.root if isinstance(dest, LocalDestination) else Path(dest.root)  # sftp: the server is local
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(b"backupd health probe")


def root_names(dest: Destination) -> set[str]:
    if isinstance(dest, SmbDestination):
        return {e.name for e in smbclient.scandir(dest._path(""), **dest._kw())}
    assert isinstance(dest, (LocalDestination, SftpDestination))
    return {p.name for p in Path(dest.root).iterdir()}


def test_a_probe_removes_the_probe_files_earlier_probes_left(destination):
    put_bytes(destination, "kb/a.bkpd", b"an artifact")
    for name in STALE:
        plant_in_root(destination, name)
    assert set(STALE) <= root_names(destination)
    h = destination.health()
    assert (h.status, h.writable) == ("ok", True), h
    assert root_names(destination) == {"kb"}
    assert [o.key for o in destination.list("")] == ["kb/a.bkpd"]


def test_a_probe_that_cannot_write_its_file_leaves_none(tmpfs):
    root = tmpfs("size=64k")
    dest = LocalDestination("small", root)
    filler = root / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the file system: creating a file still works
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    h = dest.health()
    assert not h.writable and "No space left" in " ".join(h.problems), h
    assert sorted(p.name for p in root.iterdir()) == ["filler"]
