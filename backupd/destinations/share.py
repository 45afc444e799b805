"""A network share (NFS, CIFS) mounted by the system: local storage minus capabilities, plus a mount guard.

Like pgBackRest's CIFS storage (STYLE.md 1.8) it is the local destination without directory fsync,
which network filesystems do not honour. The guard: when a share is not mounted its path is a plain
directory on the local disk, and backups written there would silently fill it. So every write
(`open_write`, `delete`, `remove_stale_temp`) and `health()` first checks the mount:

- with `mount_point` set (recommended): `mount_point` must be a mount point (`is_mount`: listed in
  /proc/self/mountinfo, so a bind mount of a directory of the same file system counts too), and `root`
  must lie under `mount_point`;
- without it: the deepest mount point among `root`'s ancestors is taken as the share's mount point,
  and it must not be `/`. This catches the common failure (the share is not mounted, so the path is on
  the root filesystem) but not a path that falls back to some other local mount; set `mount_point`
  to be exact.

Reads, listing and stat are not guarded: on an unmounted share they see an empty or missing directory,
which reads as "no objects", never as a write to the wrong disk.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from backupd.destinations.base import Health
from backupd.destinations.local import LocalDestination, LocalUpload
from backupd.errors import DestinationError

HINT = "mount the share (or fix mount_point)"
MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(rb"\\([0-7]{3})")


def _mount_points() -> set[bytes]:
    """Every mount point of this process's mount namespace, from /proc/self/mountinfo (empty if unreadable).

    Field 5 of each line is the mount point, with space, tab, newline and backslash as `\\ooo` escapes."""
    try:
        with open(MOUNTINFO, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    fields = (line.split(b" ") for line in lines)
    return {_OCTAL.sub(lambda m: bytes([int(m[1], 8)]), f[4]) for f in fields if len(f) > 4}


def is_mount(path: Path, mount_points: set[bytes] | None = None) -> bool:
    """True when `path` is a mount point. `os.path.ismount` compares devices and so misses a bind mount of
    a directory on the same file system; the mount table (read now unless given) does not."""
    if os.path.ismount(path):
        return True
    return os.fsencode(os.path.realpath(path)) in (_mount_points() if mount_points is None else mount_points)


def nearest_mount(path: Path) -> Path:
    """The deepest existing ancestor of `path` (or `path` itself) that is a mount point."""
    p = Path(os.path.abspath(path))
    points = _mount_points()
    while True:
        if p.exists() and is_mount(p, points):
            return p
        if p.parent == p:
            return p
        p = p.parent


class ShareDestination(LocalDestination):
    """Objects are files under `root` on a mounted share; writes are refused while it is not mounted."""

    kind = "share"

    def __init__(self, name: str, root: Path, mount_point: Path | None = None):
        super().__init__(name, root, sync_dir=False)
        self.mount_point = Path(mount_point) if mount_point is not None else None

    def check_mounted(self) -> None:
        """Raise DestinationError unless the share is mounted and `root` lies on it."""
        root = Path(os.path.abspath(self.root))
        if self.mount_point is not None:
            mount = Path(os.path.abspath(self.mount_point))
            if root != mount and mount not in root.parents:
                raise DestinationError(
                    f"destination {self.name!r}: path {root} is not under mount_point {mount}",
                    hint="set path to a directory inside the mounted share",
                )
            if not is_mount(mount):
                raise DestinationError(
                    f"destination {self.name!r}: {mount} is not mounted; refusing to write so backups never fill the local disk",
                    hint=HINT,
                )
            return
        mount = nearest_mount(root)
        if mount.parent == mount:  # only "/" above the path: the share's mount point is missing
            raise DestinationError(
                f"destination {self.name!r}: no share is mounted above {root}; refusing to write so backups never fill the local disk",
                hint="mount the share (or set mount_point)",
            )

    def open_write(self, key: str) -> LocalUpload:
        self.check_mounted()
        return super().open_write(key)

    def delete(self, key: str) -> None:
        self.check_mounted()
        super().delete(key)

    def remove_stale_temp(self, prefix: str = "") -> list[str]:
        self.check_mounted()
        return super().remove_stale_temp(prefix)

    def free_space(self) -> int | None:
        try:
            self.check_mounted()
        except DestinationError:
            return None  # the local disk's free space would be a lie
        return super().free_space()

    def health(self) -> Health:
        start = time.monotonic()
        try:
            self.check_mounted()
        except DestinationError as exc:
            return Health(False, False, None, (time.monotonic() - start) * 1000, (str(exc),))
        return super().health()


def from_config(cfg) -> ShareDestination:
    """Build from a DestinationConfig of kind 'share' (path, mount_point)."""
    return ShareDestination(cfg.name, cfg.path, mount_point=getattr(cfg, "mount_point", None))
