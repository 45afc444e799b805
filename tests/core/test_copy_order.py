"""Properties of the copy ordering (backupd.core.copy_order): failed < unverified < verified under
`most_reliable`, and a copy that failed validation is never read first while another copy exists."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core.copy_order import FAILED, UNVERIFIED, VERIFIED, CopyState, order_copies
from backupd.core.vocab import COPY_SELECTIONS as SELECTIONS

TIMES = st.sampled_from([None, "2026-12-01T10:00:00+00:00", "2026-12-02T10:00:00+00:00", "2026-12-03T10:00:00+00:00"])
STATES = st.lists(st.builds(CopyState, destination=st.text("abcdef", min_size=1, max_size=3),
                            priority=st.integers(0, 3), verified_at=TIMES, failed_at=TIMES), max_size=6)

BAD = CopyState("bad", 1, None, "2026-12-01T10:00:00+00:00")
NEW = CopyState("new", 2)


@given(STATES, st.sampled_from(SELECTIONS))
@example([BAD, NEW], "most_reliable")  # issue 8: with no verified copy, the known-bad one was read first
@example([BAD, NEW], "priority")
def test_a_failed_copy_is_never_read_before_another(states, selection):
    ordered = order_copies(states, selection)
    assert sorted(map(id, ordered)) == sorted(map(id, states))  # a permutation
    standings = [s.standing for s in ordered]
    failed_seen = False
    for standing in standings:
        if standing == FAILED:
            failed_seen = True
        else:
            assert not failed_seen, f"a {standing} copy after a failed one: {ordered}"


@given(STATES)
def test_most_reliable_orders_verified_then_unverified_then_failed(states):
    ordered = order_copies(states, "most_reliable")
    standings = [s.standing for s in ordered]
    assert standings == sorted(standings, reverse=True)
    verified = [s for s in ordered if s.standing == VERIFIED]
    assert [s.verified_at for s in verified] == sorted((s.verified_at for s in verified), reverse=True)
    for a, b in zip(ordered, ordered[1:]):  # priority breaks ties
        if a.standing == b.standing and (a.standing != VERIFIED or a.verified_at == b.verified_at):
            assert a.priority <= b.priority


@given(STATES)
def test_priority_orders_the_copies_that_did_not_fail_by_priority(states):
    ordered = [s for s in order_copies(states, "priority") if s.standing != FAILED]
    assert [s.priority for s in ordered] == sorted(s.priority for s in ordered)


def test_the_latest_outcome_decides_the_standing():
    assert CopyState("a", 1, "2026-12-02T00:00:00+00:00", "2026-12-01T00:00:00+00:00").standing == VERIFIED
    assert CopyState("a", 1, "2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00").standing == FAILED
    assert CopyState("a", 1).standing == UNVERIFIED
    with pytest.raises(ValueError):
        order_copies([], "fastest")
