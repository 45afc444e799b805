"""The one contract every notifier kind keeps, each against its real receiver (see conftest.Rig):
a delivered event arrives once, under its id; a receiver that is down, hangs or refuses is a
DeliveryFailed (retried later, not 'gone') that names the host and never the URL's secret path."""

from __future__ import annotations

import time

import pytest

from backupd.notify.base import DeliveryFailed
from tests.notify.conftest import Rig, make_event

TIMEOUT = 0.5
# the SMTP receiver takes AUTH over plain SMTP (security 'none') and implicit TLS; aiosmtpd warns about it
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def failure(rig: Rig) -> DeliveryFailed:
    transport = rig.make()
    with pytest.raises(DeliveryFailed) as caught:
        transport.send(make_event(), timeout=TIMEOUT)
    error = caught.value
    assert not error.gone
    assert rig.names in error.message
    assert not any(secret in error.message for secret in rig.hidden), error.message
    return error


def test_a_delivered_event_arrives_once_under_its_id(rig: Rig):
    event = make_event()
    rig.make().send(event, timeout=5)
    deadline = time.monotonic() + 5
    while not rig.ids() and time.monotonic() < deadline:  # mail is handed over asynchronously
        time.sleep(0.02)
    assert rig.ids() == [event.id]


def test_a_receiver_that_is_down_fails_the_attempt(failing_rig: Rig):
    rig = failing_rig
    rig.down()
    error = failure(rig)
    assert not rig.says_why or any(word in error.message for word in ("refused", "not found")), error.message


def test_a_receiver_that_hangs_fails_within_the_timeout(failing_rig: Rig):
    rig = failing_rig
    rig.hang()
    started = time.monotonic()
    error = failure(rig)
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert not rig.says_why or f"{TIMEOUT:g}s" in error.message, error.message


def test_a_receiver_that_refuses_fails_the_attempt(failing_rig: Rig):
    rig = failing_rig
    rig.refuse()
    assert rig.refusal in failure(rig).message
