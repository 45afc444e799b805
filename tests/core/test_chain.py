"""Properties of chain resolution and restore-point selection (backupd.core.chain) over random histories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.core.chain import delta_destinations, newest, resolve_chain, restore_point_at, spread_to_chains, walk
from backupd.core.ids import new_backup_id
from backupd.errors import MissingChainMember, NoRestorePoint

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Backup:
    backup_id: str
    strategy: str
    parent_id: str | None
    created_at: str


@st.composite
def histories(draw) -> list[Backup]:
    """One source's backups in the order they were made: a full first, then any mix.

    An incremental's parent is the previous backup, a differential's the last full. Gaps may be 0,
    so several backups can share an instant (their ids then order them)."""
    steps = draw(st.lists(st.sampled_from(["full", "incremental", "differential"]), max_size=14))
    gaps = draw(st.lists(st.integers(0, 3 * 86400), min_size=len(steps) + 1, max_size=len(steps) + 1))
    out: list[Backup] = []
    t = T0
    full = None
    for i, (strategy, gap) in enumerate(zip(["full", *steps], gaps)):
        t += timedelta(seconds=gap)
        bid = new_backup_id(t, f"{i:06x}")
        parent = None if strategy == "full" else out[-1].backup_id if strategy == "incremental" else full
        out.append(Backup(bid, strategy, parent, t.isoformat()))
        if strategy == "full":
            full = bid
    return out


def expected_chain(history: list[Backup], index: int) -> list[str]:
    """The chain by definition, computed from positions rather than parent links."""
    b = history[index]
    if b.strategy == "full":
        return [b.backup_id]
    last_full_index = max(i for i in range(index) if history[i].strategy == "full")
    if b.strategy == "differential":
        return [history[last_full_index].backup_id, b.backup_id]
    return expected_chain(history, index - 1) + [b.backup_id]


@given(histories())
def test_every_chain_starts_with_a_full_and_follows_parents(history):
    by_id = {b.backup_id: b for b in history}
    for i, b in enumerate(history):
        chain = resolve_chain(b.backup_id, by_id)
        assert chain[0].strategy == "full" and chain[-1] is b
        assert all(c.strategy != "full" for c in chain[1:])
        assert all(chain[k].parent_id == chain[k - 1].backup_id for k in range(1, len(chain)))
        assert [c.backup_id for c in chain] == expected_chain(history, i)


@given(histories(), st.data())
def test_a_missing_member_breaks_exactly_its_dependents(history, data):
    gone = data.draw(st.sampled_from(history), label="deleted").backup_id
    by_id = {b.backup_id: b for b in history if b.backup_id != gone}
    for i, b in enumerate(history):
        needed = expected_chain(history, i)
        if gone in needed:
            with pytest.raises(MissingChainMember) as exc:
                resolve_chain(b.backup_id, by_id)
            assert exc.value.details["missing"] == gone
            assert gone in str(exc.value)
        else:
            assert [c.backup_id for c in resolve_chain(b.backup_id, by_id)] == needed


@given(histories(), st.data())
def test_a_walk_goes_as_far_as_the_chain_is_known(history, data):
    gone = data.draw(st.sampled_from(history), label="deleted").backup_id
    by_id = {b.backup_id: b for b in history if b.backup_id != gone}
    for i, b in enumerate(history):
        needed = expected_chain(history, i)
        members, gap = walk(b, by_id)
        assert members[-1] is b
        if gone in needed and b.backup_id != gone:
            assert gap is not None and gap.details["missing"] == gone
            assert [m.backup_id for m in members] == needed[needed.index(gone) + 1 :]
        elif b.backup_id != gone:
            assert gap is None and [m.backup_id for m in members] == needed


@given(histories())
def test_a_backup_is_wanted_wherever_a_backup_needing_it_is(history):
    wanted = {b.backup_id: {f"d{i % 3}"} for i, b in enumerate(history)}
    spread = spread_to_chains(wanted, history)
    by_id = {b.backup_id: b for b in history}
    for b in history:
        expected = set().union(*(wanted[o.backup_id] for o in history
                                 if b.backup_id in [c.backup_id for c in resolve_chain(o.backup_id, by_id)]))
        assert spread[b.backup_id] == expected
    assert wanted == {b.backup_id: {f"d{i % 3}"} for i, b in enumerate(history)}  # the input is left alone


def test_a_delta_without_a_parent_or_in_a_cycle_is_missing_not_a_hang():
    a = Backup(new_backup_id(T0, "00000a"), "incremental", None, T0.isoformat())
    with pytest.raises(MissingChainMember):
        resolve_chain(a.backup_id, {a.backup_id: a})
    b_id, c_id = new_backup_id(T0, "00000b"), new_backup_id(T0, "00000c")
    cycle = {
        b_id: Backup(b_id, "incremental", c_id, T0.isoformat()),
        c_id: Backup(c_id, "differential", b_id, T0.isoformat()),
    }
    with pytest.raises(MissingChainMember, match="cyclic"):
        resolve_chain(b_id, cycle)


@given(histories(), st.integers(-86400, 60 * 86400))
def test_restore_point_at_is_the_newest_at_or_before(history, offset):
    at = T0 + timedelta(seconds=offset)
    eligible = [b for b in history if datetime.fromisoformat(b.created_at) <= at]
    if not eligible:
        with pytest.raises(NoRestorePoint):
            restore_point_at(history, at)
        return
    point, gap = restore_point_at(history, at)
    created = datetime.fromisoformat(point.created_at)
    assert created <= at and gap == at - created and gap >= timedelta(0)
    assert point is eligible[-1]  # made last among those at or before `at` (ids break ties)
    assert not any(created < datetime.fromisoformat(b.created_at) <= at for b in history)


@given(histories(), st.randoms(use_true_random=False))
def test_selection_does_not_depend_on_order(history, rnd):
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert newest(shuffled) is history[-1]
    at = datetime.fromisoformat(history[-1].created_at)
    assert restore_point_at(shuffled, at) == (history[-1], timedelta(0))


def test_restore_point_exactly_at_a_backup_and_the_gap():
    history = [
        Backup(new_backup_id(T0, "000001"), "full", None, T0.isoformat()),
        Backup(new_backup_id(T0 + timedelta(hours=1), "000002"), "full", None, (T0 + timedelta(hours=1)).isoformat()),
    ]
    assert restore_point_at(history, T0 + timedelta(hours=1)) == (history[1], timedelta(0))
    assert restore_point_at(history, T0 + timedelta(minutes=59)) == (history[0], timedelta(minutes=59))
    with pytest.raises(NoRestorePoint) as exc:
        restore_point_at(history, T0 - timedelta(microseconds=1))
    assert exc.value.hint
    assert newest([]) is None


@given(st.lists(st.sampled_from("ABCDEF"), unique=True, min_size=1),
       st.dictionaries(st.sampled_from("ABCDEF"), st.sampled_from(["no copy", "wrong key"])))
def test_a_destination_holding_the_chain_never_gets_a_full_because_another_lacks_it(dests, lacking):
    """Issue 8 item 2: the delta goes to every destination holding the chain; a full only when none does."""
    lacking = {d: r for d, r in lacking.items() if d in dests}
    holders, note = delta_destinations(dests, lacking)
    assert set(holders) == set(dests) - set(lacking)
    assert holders or set(lacking) == set(dests)
    if holders and lacking:
        assert all(f"destination {d} lacks the chain" in note for d in lacking)
        assert f"delta on {', '.join(holders)}" in note
    else:
        assert note == ""

