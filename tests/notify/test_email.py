"""What the email kind sends, and how it logs in and verifies the server, against aiosmtpd."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backupd.core import notice
from backupd.notify.base import DeliveryFailed
from tests.notify.conftest import HOST, SMTP_PASSWORD, SMTP_USER, build, make_event
from tests.servers.receivers import smtp_receiver

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def mail(receiver, **keys):
    return build("email", smtp_host="127.0.0.1", smtp_port=receiver.port, ca_file=str(receiver.cert),
                 **{"from": "backupd@db1.example.org", "to": ["ops@example.org", "dba@example.org"], **keys})


def test_the_mail_carries_subject_body_and_a_message_id_from_the_event(tmp_path):
    with smtp_receiver(tmp_path) as receiver:
        event = make_event()
        mail(receiver).send(event, timeout=5)
        mail(receiver).send(event, timeout=5)  # a resend after a lost reply
        first, second = receiver.wait_for(2)
    assert first["Subject"] == notice.subject(event, HOST) == "[backupd@db1] backup failed: app (nightly)"
    assert first["From"] == "backupd@db1.example.org" and first["To"] == "ops@example.org, dba@example.org"
    assert first["Message-ID"] == second["Message-ID"] == f"<{event.id}@backupd.{HOST}>"
    assert first["X-Backupd-Event-Id"] == event.id and first["Date"]
    assert first.get_content().replace("\r\n", "\n") == notice.body(event, HOST)
    assert receiver.box.envelopes[0] == ("backupd@db1.example.org", ["ops@example.org", "dba@example.org"], False)


def test_login_with_the_password_from_a_file(tmp_path):
    password_file = tmp_path / "smtp.password"
    password_file.write_text(SMTP_PASSWORD + "\n")
    with smtp_receiver(tmp_path, username=SMTP_USER, password=SMTP_PASSWORD) as receiver:
        mail(receiver, username=SMTP_USER, password_file=str(password_file)).send(make_event(), timeout=5)
        receiver.wait_for(1)
        assert receiver.box.envelopes[0][2] is True  # authenticated
        password_file.write_text("stale\n")  # read at each send: a changed file is used at once
        with pytest.raises(DeliveryFailed, match=r"SMTP 535") as caught:
            mail(receiver, username=SMTP_USER, password_file=str(password_file)).send(make_event(), timeout=5)
    assert "stale" not in caught.value.message and not caught.value.gone


def test_a_missing_password_variable_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SMTP_PW", raising=False)
    with smtp_receiver(tmp_path, username=SMTP_USER, password=SMTP_PASSWORD) as receiver:
        with pytest.raises(DeliveryFailed, match="password variable SMTP_PW is not set"):
            mail(receiver, username=SMTP_USER, password_env="SMTP_PW").send(make_event(), timeout=5)


def test_a_username_without_a_password_is_a_config_error():
    with pytest.raises(ValidationError, match="a username needs a password: set password_env or password_file"):
        build("email", smtp_host="127.0.0.1", username=SMTP_USER, **{"from": "b@db1", "to": ["ops@example.org"]})


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_verifies_the_server_against_ca_file(tmp_path, security):
    with smtp_receiver(tmp_path, security=security) as receiver:
        mail(receiver, security=security).send(make_event(), timeout=5)
        assert len(receiver.wait_for(1)) == 1
        untrusting = build("email", smtp_host="127.0.0.1", smtp_port=receiver.port, security=security,
                           **{"from": "backupd@db1", "to": ["ops@example.org"]})
        with pytest.raises(DeliveryFailed) as caught:
            untrusting.send(make_event(), timeout=5)
    assert caught.value.message.startswith(f"127.0.0.1:{receiver.port}: TLS certificate not trusted")


def test_plain_smtp_to_a_server_that_requires_starttls_is_refused(tmp_path):
    with smtp_receiver(tmp_path, security="starttls") as receiver:
        with pytest.raises(DeliveryFailed, match=r"SMTP 530") as caught:
            mail(receiver, security="none").send(make_event(), timeout=5)
    assert not caught.value.gone  # 5xx is retried too: a fixed relay may take it later
