"""flagged_strategy: a flagged snapshot never starts a new chain silently; an unflagged one is untouched."""

from hypothesis import given
from hypothesis import strategies as st

from backupd.core.source_health import flagged_strategy

STRATEGIES = st.sampled_from(["full", "incremental", "differential"])
WARNINGS = st.lists(st.sampled_from(["source_corrupt: page 3", "source_shrunk: 0 pages"]), max_size=2)


@given(STRATEGIES, st.text(max_size=20), WARNINGS, st.sampled_from(["auto", "full", "incremental", "differential"]),
       st.sampled_from([None, "incremental", "differential"]))
def test_flagged_snapshots_never_start_a_chain_silently(strategy, reason, warnings, requested, extendable):
    got, why = flagged_strategy(strategy, reason, warnings, requested, extendable)
    if not warnings:
        assert (got, why) == (strategy, reason)
        return
    assert "flagged" in why and all(w.split(":")[0] in why for w in warnings)
    if strategy == "full" and requested == "auto" and extendable:
        assert got == extendable
    elif strategy == "full":
        assert got == "full"
    else:
        assert got == strategy
