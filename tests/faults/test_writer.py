"""A writer holding an invariant (balances that always sum to the same total) commits without pause while
20 backups of every strategy are taken, in WAL and in rollback-journal mode; every restored backup passes
integrity_check, satisfies the invariant and holds a state committed between its start and its end.

tests/engine/test_concurrent_writer.py runs it with one seed; here the CI profile adds one more seed per
mode and the long profile three (other interleavings of writes, checkpoints and VACUUMs).
"""

from __future__ import annotations

import pytest

from tests.engine.test_concurrent_writer import STRATEGIES, run_backups_under_writer

from .conftest import trials


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_writer_invariant_through_20_backups(tmp_path, tally, journal_mode):
    for seed in range(100, 100 + trials(ci=1, long=3)):
        try:
            run_backups_under_writer(tmp_path / f"seed-{seed}", journal_mode, 4096, STRATEGIES[:20], seed=seed)
            tally.trial("20 backups, all restored committed states")
        except AssertionError as e:
            tally.fail(f"seed {seed}: {str(e).splitlines()[0] if str(e) else repr(e)}")
