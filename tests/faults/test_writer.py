"""A writer holding an invariant (balances that always sum to the same total) commits without pause while
20 backups of every strategy are taken, in WAL and in rollback-journal mode; every restored backup passes
integrity_check, satisfies the invariant and holds a state committed between its start and its end.

The CI run of tests/engine/test_concurrent_writer.py is one trial per mode; the long profile repeats it
with other seeds (other interleavings of writes, checkpoints and VACUUMs) and counts them here.
"""

from __future__ import annotations

import pytest

from tests.engine.test_concurrent_writer import STRATEGIES, run_backups_under_writer

from .conftest import trials


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_writer_invariant_through_20_backups(tmp_path, tally, journal_mode):
    n = trials(ci=0, long=3)
    if not n:
        pytest.skip("the CI profile runs this once per mode as tests/engine/test_concurrent_writer.py")
    for seed in range(100, 100 + n):
        try:
            run_backups_under_writer(tmp_path / f"seed-{seed}", journal_mode, 4096, STRATEGIES[:20], seed=seed)
            tally.trial("20 backups, all restored committed states")
        except AssertionError as e:
            tally.fail(f"seed {seed}: {str(e).splitlines()[0] if str(e) else repr(e)}")
