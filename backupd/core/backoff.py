"""Retry policy: how long to wait before the next attempt of a failed job.

The delay after the n-th failed attempt is exponential and capped, then spread by proportional
jitter drawn from `u` (the caller passes `random.random()`, tests pass fixed values):

    raw   = min(base_delay * multiplier ** (n - 1), max_delay)
    delay = raw * (1 - jitter + 2 * jitter * u)          # u in [0, 1): raw * [1 - jitter, 1 + jitter)

so the delay stays within jitter of the raw value, never exceeds max_delay * (1 + jitter), and for
a fixed u grows with n until the cap. `max_attempts` counts every attempt, the first included:
after `max_attempts` failures there is no further retry (None).

>>> policy = RetryPolicy(max_attempts=4, base_delay=30, max_delay=100, jitter=0.2)
>>> [retry_delay(policy, n, 0.5) for n in (1, 2, 3, 4)]
[30.0, 60.0, 100.0, None]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RetryPolicy", "retry_delay"]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3  # attempts in all, the first included; 1 = never retry
    base_delay: float = 30.0  # seconds before the first retry (before jitter)
    max_delay: float = 900.0  # cap on the raw delay, seconds
    multiplier: float = 2.0  # growth factor from one retry to the next
    jitter: float = 0.2  # fraction of the delay added or removed at random, 0..1

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            problems.append(f"max_attempts must be an integer >= 1 (got {self.max_attempts!r})")
        for name in ("base_delay", "max_delay", "multiplier", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{name} must be a finite number (got {value!r})")
        if not problems:
            if self.base_delay < 0:
                problems.append(f"base_delay must be >= 0 (got {self.base_delay:g})")
            if self.max_delay < self.base_delay:
                problems.append(f"max_delay {self.max_delay:g}s is less than base_delay {self.base_delay:g}s")
            if self.multiplier < 1:
                problems.append(f"multiplier must be >= 1 (got {self.multiplier:g})")
            if not 0 <= self.jitter <= 1:
                problems.append(f"jitter must be between 0 and 1 (got {self.jitter:g})")
        if problems:
            raise ValueError("; ".join(problems))


def retry_delay(policy: RetryPolicy, attempt: int, u: float) -> float | None:
    """Seconds to wait after `attempt` failed attempts (1-based), or None when they are used up."""
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an integer >= 1 (got {attempt!r})")
    if not 0 <= u < 1:
        raise ValueError(f"u must be in [0, 1) (got {u!r})")
    if attempt >= policy.max_attempts:
        return None
    try:
        raw = min(policy.base_delay * policy.multiplier ** (attempt - 1), policy.max_delay)
    except OverflowError:
        raw = policy.max_delay
    return raw * (1 - policy.jitter + 2 * policy.jitter * u)
