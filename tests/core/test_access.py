"""Roles of control-socket peers (backupd.core.access): properties over users, groups and lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backupd.core.access import Peer, Role, allows, parse_peer_address, role_of

names = st.sampled_from(["alice", "bob", "ops", "backupd", "carol"])
peers = st.builds(Peer, uid=st.integers(1, 70000), gid=st.integers(0, 70000), pid=st.integers(1, 1 << 22),
                  user=st.none() | names, groups=st.frozensets(names, max_size=3))
principals = st.lists(names | names.map(lambda n: "@" + n), max_size=4)


@given(peers, principals, principals)
def test_a_peer_is_admin_only_when_listed_and_reader_only_when_listed(peer, readers, admins):
    role = role_of(peer, readers=readers, admins=admins, service_uid=0)
    listed = lambda ps: (peer.user in ps) or any(p[1:] in peer.groups for p in ps if p.startswith("@"))  # noqa: E731
    assert (role is Role.ADMIN) == listed(admins)
    assert (role is Role.READER) == (listed(readers) and not listed(admins))


@given(peers, principals, principals)
def test_root_and_the_service_user_are_always_admins(peer, readers, admins):
    assert role_of(peer, readers=readers, admins=admins, service_uid=peer.uid) is Role.ADMIN
    root = Peer(0, 0, 1, "root")
    assert role_of(root, readers=readers, admins=admins, service_uid=peer.uid) is Role.ADMIN


def test_a_group_entry_never_matches_a_user_of_that_name_and_back():
    alice = Peer(1000, 1000, 5, "alice", frozenset({"staff"}))
    assert role_of(alice, readers=["@alice", "staff"], admins=[], service_uid=999) is None


def test_admins_may_do_what_readers_may_and_no_role_may_do_nothing():
    assert allows(Role.ADMIN, Role.READER) and allows(Role.ADMIN, Role.ADMIN) and allows(Role.READER, Role.READER)
    assert not allows(Role.READER, Role.ADMIN) and not allows(None, Role.READER)


@given(st.integers(0, 1 << 32), st.integers(0, 1 << 32), st.integers(0, 1 << 22))
def test_peer_address_round_trips(uid, gid, pid):
    assert parse_peer_address(f"localhost:{uid}:{gid}:{pid}") == (uid, gid, pid)


def test_addresses_without_credentials_are_refused():
    for text in ("", "localhost", "127.0.0.1:5555", "localhost:1:2", "localhost:a:2:3", "localhost:\u00b2:2:3"):
        assert parse_peer_address(text) is None
