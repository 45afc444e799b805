"""When the outbox tries a notification again: the Standard Webhooks retry schedule.

Attempt 1 goes at once; each failed attempt n is followed by attempt n + 1 after `DELAYS_S[n - 1]`
(5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h), counted from the enqueue time (so the schedule does
not drift with slow attempts) and never sooner than that delay after the failure itself (so a daemon
that was down does not fire the missed attempts back to back). The outbox gives up, the delivery
`expired`, once the next attempt would fall more than `GIVE_UP_AFTER_S` (24 h) after the enqueue.

`scale` shrinks every delay and the give-up window alike (tests only; `BACKUPD_REDELIVERY_SCALE`).

>>> from datetime import datetime, timezone
>>> t0 = datetime(2026, 12, 4, tzinfo=timezone.utc)
>>> [(next_attempt(t0, n) - t0).total_seconds() for n in range(4)]
[0.0, 5.0, 305.0, 2105.0]
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["DELAYS_S", "GIVE_UP_AFTER_S", "next_attempt", "offsets"]

DELAYS_S: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)  # the last one repeats
GIVE_UP_AFTER_S = 24 * 3600.0


def _delay(failed_attempts: int) -> float:
    """The wait after the `failed_attempts`-th failure (>= 1)."""
    return DELAYS_S[min(failed_attempts, len(DELAYS_S)) - 1]


def offsets(scale: float = 1.0) -> list[float]:
    """Every attempt's offset from the enqueue time, in seconds, until the give-up window: [0, 5, 305, ...]."""
    out, at, n = [0.0], 0.0, 1
    while (at := at + _delay(n) * scale) <= GIVE_UP_AFTER_S * scale:
        out.append(at)
        n += 1
    return out


def next_attempt(enqueued_at: datetime, attempts: int, *, failed_at: datetime | None = None,
                 scale: float = 1.0) -> datetime | None:
    """When attempt `attempts + 1` is due, after `attempts` failed ones (the last at `failed_at`, if
    known); None once that would be more than 24 h after `enqueued_at` (give up)."""
    if attempts < 0 or scale <= 0:
        raise ValueError(f"attempts must be >= 0 and scale > 0 (got {attempts}, {scale})")
    if attempts == 0:
        return enqueued_at
    planned = sum(_delay(n) for n in range(1, attempts + 1)) * scale
    if planned > GIVE_UP_AFTER_S * scale:
        return None
    due = enqueued_at + timedelta(seconds=planned)
    if failed_at is not None:
        due = max(due, failed_at + timedelta(seconds=_delay(attempts) * scale))
    return due if due - enqueued_at <= timedelta(seconds=GIVE_UP_AFTER_S * scale) else None
