"""Who may command the daemon, and where a restore through it may write: the control socket's edge
of backupd.core.access.

`AccessControl` turns the credentials libzmq read from the peer's socket (SO_PEERCRED) into a
`Peer` with its user and group names, and checks every request against the role its op needs,
logging each refusal and each authorized admin op with the peer's uid and pid.
`check_restore_target` keeps restores under `[restore] allowed_dirs`, symlinks resolved.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from backupd.core.access import Peer, Role, allows, parse_peer_address, role_of
from backupd.errors import Forbidden, UsageError

log = structlog.get_logger("backupd.access")
NAMES_TTL_S = 10.0  # user and group names are looked up (NSS) at most this often per uid and gid


class AccessControl:
    """Checks requests against the current config's `[control] readers` and `admins`."""

    def __init__(self, config: Callable[[], Any], service_uid: int | None = None, clock=time.monotonic):
        self._config = config
        self.service_uid = os.geteuid() if service_uid is None else service_uid
        self._clock = clock
        self._names: dict[tuple[int, int], tuple[float, str | None, frozenset[str]]] = {}

    def peer(self, address: str | None) -> Peer | None:
        """The peer behind a libzmq Peer-Address (`localhost:UID:GID:PID`); None if it names no credentials."""
        creds = parse_peer_address(address) if address else None
        if creds is None:
            return None
        uid, gid, pid = creds
        user, groups = self._names_of(uid, gid)
        return Peer(uid, gid, pid, user, groups)

    def authorize(self, peer: Peer | None, op: str, needed: Role) -> None:
        """Raise Forbidden unless `peer` holds `needed`; an authorized admin op is logged."""
        control = self._config().control
        role = None if peer is None else role_of(peer, readers=control.reader_principals(), admins=control.admins,
                                                 service_uid=self.service_uid)
        who = _fields(peer)
        if not allows(role, needed):
            log.warning("control_request_refused", op=op, needed=str(needed), role=role and str(role), **who)
            if peer is None:
                raise Forbidden(f"{op}: the peer's credentials could not be read",
                                hint="connect over the control socket's ipc:// path")
            name = peer.user or f"uid {peer.uid}"
            raise Forbidden(f"{op}: user {name} may not do this (it needs the {needed} role, the user has "
                            f"{'the ' + str(role) + ' role' if role else 'none'})",
                            hint=f"list the user or one of its groups (@group) in [control] {needed}s and reload",
                            details={"op": op, "needed": str(needed), "role": role and str(role)})
        if needed is Role.ADMIN:
            log.info("control_request_authorized", op=op, role=str(role), **who)

    def _names_of(self, uid: int, gid: int) -> tuple[str | None, frozenset[str]]:
        now = self._clock()
        cached = self._names.get((uid, gid))
        if cached is not None and now - cached[0] < NAMES_TTL_S:
            return cached[1], cached[2]
        try:
            user = pwd.getpwuid(uid).pw_name
            gids = set(os.getgrouplist(user, gid))
        except KeyError:
            user, gids = None, {gid}
        groups = set()
        for g in gids:
            try:
                groups.add(grp.getgrgid(g).gr_name)
            except KeyError:
                pass
        if len(self._names) > 1024:
            self._names.clear()
        self._names[(uid, gid)] = (now, user, frozenset(groups))
        return user, frozenset(groups)


def _fields(peer: Peer | None) -> dict[str, Any]:
    if peer is None:
        return {"uid": None, "gid": None, "pid": None, "user": None}
    return {"uid": peer.uid, "gid": peer.gid, "pid": peer.pid, "user": peer.user}


def check_restore_target(to: Path, allowed_dirs: Sequence[Path]) -> None:
    """Raise Forbidden unless a restore through the daemon may write `to`: its directory, every symlink
    resolved, is one of `allowed_dirs` (resolved too) or below one, and `to` itself is no symlink. Run
    before anything is written."""
    if to.name in ("", ".", ".."):
        raise UsageError(f"restore target {str(to)!r} does not name a file")
    roots = [Path(os.path.realpath(d)) for d in allowed_dirs]
    parent = Path(os.path.realpath(to.parent))
    if not any(parent.is_relative_to(root) for root in roots):
        via = f" (through a symlink to {parent})" if parent != Path(os.path.normpath(to.parent)) else ""
        raise Forbidden(f"restore target {to} is outside the directories a restore may write in{via}: "
                        + ", ".join(str(r) for r in roots),
                        hint="restore under one of them, or add the directory to [restore] allowed_dirs and reload",
                        details={"allowed_dirs": [str(r) for r in roots]})
    try:
        is_link = stat.S_ISLNK(os.lstat(to).st_mode)
    except FileNotFoundError:
        is_link = False
    except OSError as exc:
        raise UsageError(f"restore target {to}: {exc.strerror}") from None
    if is_link:
        raise Forbidden(f"restore target {to} is a symbolic link",
                        hint="restore to the file it points to, or to a new path")
