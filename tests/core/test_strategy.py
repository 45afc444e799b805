"""Properties of `auto` strategy selection (backupd.core.strategy)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core.strategy import AutoPolicy, ChangeMeasure, choose_strategy


@st.composite
def measures(draw) -> ChangeMeasure:
    pages = draw(st.integers(0, 10_000))
    since_full = draw(st.none() | st.integers(0, max(pages, 1)))
    since_last = draw(st.none() | st.integers(0, since_full if since_full is not None else max(pages, 1)))
    return ChangeMeasure(pages, since_last, since_full, draw(st.integers(0, 60)))


policies = st.builds(
    AutoPolicy,
    max_chain_length=st.integers(1, 60),
    full_change_ratio=st.floats(0.01, 1.0),
    differential_cost_ratio=st.floats(1.0, 10.0),
)


@given(measures(), policies)
@example(ChangeMeasure(0, 0, 0, 0), AutoPolicy())
@example(ChangeMeasure(100, 0, 0, 0), AutoPolicy())
def test_decision_follows_the_rules(m, policy):
    strategy, reason = choose_strategy(m, policy)
    assert reason.strip()
    if m.changed_since_full is None or m.changed_since_last is None:
        expected = "full"
    elif m.chain_length >= policy.max_chain_length:
        expected = "full"
    elif (m.changed_since_full / m.page_count if m.page_count else 1.0) >= policy.full_change_ratio:
        expected = "full"
    elif m.changed_since_full <= policy.differential_cost_ratio * max(m.changed_since_last, 1):
        expected = "differential"
    else:
        expected = "incremental"
    assert strategy == expected


@given(measures(), policies, st.integers(0, 100))
def test_a_longer_allowed_chain_never_forces_a_full(m, policy, more):
    before, _ = choose_strategy(m, policy)
    after, _ = choose_strategy(m, replace(policy, max_chain_length=policy.max_chain_length + more))
    if before != "full":
        assert after == before


@given(measures(), policies)
def test_no_usable_full_means_full(m, policy):
    assert choose_strategy(replace(m, changed_since_full=None), policy)[0] == "full"
    assert choose_strategy(replace(m, changed_since_last=None), policy)[0] == "full"


@given(measures(), policies)
def test_a_chain_at_its_limit_gets_a_full(m, policy):
    m = replace(m, chain_length=policy.max_chain_length + m.chain_length % 3)
    strategy, reason = choose_strategy(m, policy)
    assert strategy == "full"
    if m.changed_since_full is not None and m.changed_since_last is not None:
        assert "max_chain_length" in reason


def test_documented_example():
    assert choose_strategy(ChangeMeasure(100, None, None, 0), AutoPolicy()) == (
        "full",
        "no usable full backup of this source yet",
    )
    assert choose_strategy(ChangeMeasure(1000, 10, 12, 3), AutoPolicy())[0] == "differential"
    assert choose_strategy(ChangeMeasure(1000, 10, 100, 3), AutoPolicy())[0] == "incremental"
    assert choose_strategy(ChangeMeasure(1000, 10, 500, 3), AutoPolicy())[0] == "full"
