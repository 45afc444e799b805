"""core.backoff: exponential, capped, jittered retry delays."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.core.backoff import RetryPolicy, retry_delay

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 12),
    base_delay=st.floats(0, 600),
    max_delay=st.floats(600, 7200),
    multiplier=st.floats(1, 4),
    jitter=st.floats(0, 1),
)
units = st.floats(0, 1, exclude_max=True)


def test_defaults_double_from_30s_and_stop_after_3_attempts():
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay, policy.multiplier, policy.jitter) == (
        3, 30.0, 900.0, 2.0, 0.2,
    )  # fmt: skip
    assert [retry_delay(policy, n, 0.5) for n in (1, 2, 3)] == [30.0, 60.0, None]


def test_jitter_is_proportional_and_drawn_from_u():
    policy = RetryPolicy(max_attempts=10, base_delay=100, max_delay=1000, jitter=0.2)
    assert retry_delay(policy, 1, 0.0) == pytest.approx(80.0)
    assert retry_delay(policy, 1, 0.5) == pytest.approx(100.0)
    assert retry_delay(policy, 1, 0.999999) == pytest.approx(120.0, abs=1e-3)
    assert retry_delay(policy, 9, 0.5) == pytest.approx(1000.0)  # 100 * 2**8 capped at max_delay


def test_no_jitter_is_exact():
    policy = RetryPolicy(max_attempts=5, base_delay=1, max_delay=5, jitter=0)
    assert [retry_delay(policy, n, 0.3) for n in range(1, 6)] == [1, 2, 4, 5, None]


def test_huge_attempt_numbers_stay_capped():
    policy = RetryPolicy(max_attempts=10**6, base_delay=1, max_delay=60, multiplier=1000, jitter=0)
    assert retry_delay(policy, 10**5, 0.0) == 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1 (got 0)"),
        ({"base_delay": -1}, "base_delay must be >= 0 (got -1)"),
        ({"base_delay": 60, "max_delay": 10}, "max_delay 10s is less than base_delay 60s"),
        ({"multiplier": 0.5}, "multiplier must be >= 1 (got 0.5)"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1 (got 1.5)"),
        ({"max_delay": float("inf")}, "max_delay must be a finite number (got inf)"),
    ],
)
def test_invalid_policies(kwargs, message):
    with pytest.raises(ValueError) as caught:
        RetryPolicy(**kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(("attempt", "u"), [(0, 0.5), (1, 1.0), (1, -0.1), (True, 0.5)])
def test_invalid_arguments(attempt, u):
    with pytest.raises(ValueError):
        retry_delay(RetryPolicy(), attempt, u)


@given(policy=policies, attempt=st.integers(1, 40), u=units)
def test_delays_are_non_negative_capped_and_none_exactly_when_exhausted(policy, attempt, u):
    delay = retry_delay(policy, attempt, u)
    if attempt >= policy.max_attempts:
        assert delay is None
    else:
        assert delay is not None and 0 <= delay <= policy.max_delay * (1 + policy.jitter) + 1e-9


@given(policy=policies, attempt=st.integers(1, 40), u=units)
def test_delays_grow_with_the_attempt_until_the_cap(policy, attempt, u):
    first, second = retry_delay(policy, attempt, u), retry_delay(policy, attempt + 1, u)
    if second is not None:
        assert second >= first - 1e-9
