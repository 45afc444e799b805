"""Who may command the daemon: the role a control-socket peer holds, from its credentials and the
`[control] readers` / `admins` lists. Pure: the daemon reads the credentials and looks the names up
(backupd.daemon.access); this module only decides.

A principal is a user name, or `@name` for every member of a group (primary or supplementary). Root
and the daemon's own user are always admins, and an admin may do whatever a reader may.

    >>> alice = Peer(uid=1000, gid=1000, pid=42, user="alice", groups=frozenset({"alice", "ops"}))
    >>> role_of(alice, readers=["@ops"], admins=[], service_uid=999)
    <Role.READER: 'reader'>
    >>> parse_peer_address("localhost:1000:1000:42")
    (1000, 1000, 42)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

GROUP_PREFIX = "@"
PRINCIPAL_PATTERN = r"^@?[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$"


class Role(str, Enum):
    READER = "reader"  # read-only ops: status, health, listings, job progress
    ADMIN = "admin"  # everything else: backups, restores, schedules, destinations, cancel, reload

    def __str__(self) -> str:
        return self.value


_RANK = {Role.READER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a control connection, as the kernel reported it (SO_PEERCRED)."""

    uid: int
    gid: int
    pid: int
    user: str | None = None  # None: the uid has no name
    groups: frozenset[str] = field(default_factory=frozenset)  # names of its primary and supplementary groups


def parse_peer_address(text: str) -> tuple[int, int, int] | None:
    """(uid, gid, pid) from libzmq's Peer-Address of an ipc connection, `localhost:UID:GID:PID` (libzmq
    appends SO_PEERCRED's fields to the address); None for any other shape."""
    parts = text.rsplit(":", 3)
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
        return None
    return int(parts[1]), int(parts[2]), int(parts[3])


def matches(peer: Peer, principals: Iterable[str]) -> bool:
    """Whether the peer's user, or one of its groups (`@name`), is listed."""
    for principal in principals:
        if principal.startswith(GROUP_PREFIX):
            if principal[len(GROUP_PREFIX):] in peer.groups:
                return True
        elif peer.user is not None and principal == peer.user:
            return True
    return False


def role_of(peer: Peer, *, readers: Iterable[str], admins: Iterable[str], service_uid: int) -> Role | None:
    """The highest role the peer holds; None when it holds none."""
    if peer.uid in (0, service_uid) or matches(peer, admins):
        return Role.ADMIN
    if matches(peer, readers):
        return Role.READER
    return None


def allows(role: Role | None, needed: Role) -> bool:
    return role is not None and _RANK[role] >= _RANK[needed]
