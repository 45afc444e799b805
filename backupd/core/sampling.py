"""Which blocks a sampled validation (`verify --sample PERCENT`) checks in depth.

The blocks of one copy are put in a pseudo-random order fixed by a seed (the backup id and the
destination), and each run takes the next `ceil(count * percent / 100)` blocks of that order from
the copy's rotation offset, wrapping around; the caller stores the returned offset for the next run.
So each run checks a random-looking share, and `ceil(100 / percent)` successive runs check every
block at least once.

    >>> s = sample_blocks(10, 30, 0, "seed")
    >>> len(s.blocks), s.next_offset
    (3, 3)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    blocks: frozenset[int]  # block indexes 0..count-1 to check
    next_offset: int  # where the next run starts


def check_percent(percent: float) -> float:
    """`percent` as a float in (0, 100]; ValueError otherwise."""
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise ValueError(f"a sample is a percentage of blocks above 0 and at most 100, not {percent!r}")
    return float(percent)


def sample_size(count: int, percent: float) -> int:
    """How many of `count` blocks one run checks: at least one when there is any."""
    return min(count, max(1, math.ceil(count * check_percent(percent) / 100))) if count else 0


def runs_to_cover(percent: float) -> int:
    """Successive runs after which every block has been checked."""
    return math.ceil(100 / check_percent(percent))


def sample_blocks(count: int, percent: float, offset: int, seed: str) -> Sample:
    """The blocks of a copy with `count` blocks that one run checks, starting at rotation `offset`."""
    if count <= 0:
        return Sample(frozenset(), 0)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    k = sample_size(count, percent)
    start = offset % count
    return Sample(frozenset(order[(start + i) % count] for i in range(k)), (start + k) % count)
