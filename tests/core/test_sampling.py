"""Properties of sampled validation (backupd.core.sampling): each run checks its share, and
ceil(100 / percent) successive runs, each starting where the last one stopped, cover every block."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from backupd.core.sampling import check_percent, runs_to_cover, sample_blocks, sample_size

PERCENTS = st.floats(1, 100) | st.integers(1, 100)


@given(st.integers(0, 1000), PERCENTS, st.integers(0, 10_000), st.text(max_size=20))
@example(1, 100, 0, "x")
@example(7, 33.3, 5, "x")
@example(3000, 1.5, 2999, "x")
def test_successive_runs_cover_every_block(count, percent, offset, seed):
    covered: set[int] = set()
    for _ in range(runs_to_cover(percent)):
        sample = sample_blocks(count, percent, offset, seed)
        assert len(sample.blocks) == sample_size(count, percent)
        assert all(0 <= b < count for b in sample.blocks)
        covered |= sample.blocks
        offset = sample.next_offset
    assert covered == set(range(count))


@given(st.integers(1, 500), PERCENTS, st.integers(0, 1000), st.text(max_size=8))
def test_a_run_checks_its_share_and_is_deterministic(count, percent, offset, seed):
    sample = sample_blocks(count, percent, offset, seed)
    assert len(sample.blocks) == max(1, math.ceil(count * percent / 100)) or len(sample.blocks) == count
    assert sample == sample_blocks(count, percent, offset, seed)
    assert 0 <= sample.next_offset < count


def test_full_percent_checks_everything_and_bad_percents_are_refused():
    assert sample_blocks(9, 100, 4, "s").blocks == frozenset(range(9))
    assert sample_blocks(0, 50, 3, "s").blocks == frozenset()
    for bad in (0, -1, 100.5, float("nan"), True, "10"):
        with pytest.raises(ValueError):
            check_percent(bad)
