"""The email kind: one plain-text mail per event, over STARTTLS, implicit TLS or plain SMTP.

The `Message-ID` is made from the event id (`<id@backupd.HOST>`) and `X-Backupd-Event-Id` repeats it,
so a mail sent again after a lost reply is recognisably the same. The password is read at each send,
from `password_env` or `password_file`. `timeout` bounds the whole exchange: each step gets what is
left of it. A 5xx is still retried (a full mailbox or a fixed relay may take it later), never 'gone'.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.notify.base import Deadline, DeliveryFailed, Transport
from backupd.notify.http import tls_context

_NOT_ATOM = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def message_id(event_id: str, host: str) -> str:
    """`<event-id@backupd.HOST>`, each side reduced to what a Message-ID allows."""
    left = _NOT_ATOM.sub("-", event_id).strip(".") or "event"
    right = _NOT_ATOM.sub("-", host).strip(".") or "localhost"
    return f"<{left}@backupd.{right}>"


def _bound(smtp: smtplib.SMTP, deadline: Deadline) -> None:
    """Give the connection's next step what is left of the attempt's time."""
    if smtp.sock is not None:
        deadline.guard(smtp.sock)
        smtp.sock.settimeout(deadline.left())


class EmailTransport(Transport):
    """Mails the notice to every address in `to`."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        assert cfg.smtp_host and cfg.smtp_port and cfg.from_addr and cfg.to  # required (or defaulted) by the config
        self.smtp_host, self.smtp_port, self.security = cfg.smtp_host, cfg.smtp_port, cfg.security or "starttls"
        self.from_addr, self.to, self.host = cfg.from_addr, list(cfg.to), host
        self.username, self.password_env, self.password_file = cfg.username, cfg.password_env, cfg.password_file
        self.ca_file = cfg.ca_file
        self.where = f"{self.smtp_host}:{self.smtp_port}"

    def message(self, event: Event) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to)
        msg["Subject"] = notice.subject(event, self.host)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(event.id, self.host)
        msg["X-Backupd-Event-Id"] = notice.one_line(event.id)
        msg.set_content(notice.body(event, self.host))
        return msg

    def _password(self) -> str:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if not value:
                raise DeliveryFailed(f"{self.where}: password variable {self.password_env} is not set")
            return value
        assert self.password_file is not None  # the config requires a password source with a username
        return _read_password(self.password_file, self.where)

    def send(self, event: Event, *, timeout: float) -> None:
        msg = self.message(event)
        password = self._password() if self.username else None
        deadline = Deadline(timeout)
        try:
            smtp = self._connect(deadline)
            _bound(smtp, deadline)
            try:
                if self.security == "starttls":
                    _bound(smtp, deadline)
                    smtp.starttls(context=tls_context(self.ca_file))
                if self.username and password is not None:
                    _bound(smtp, deadline)
                    smtp.login(self.username, password)
                _bound(smtp, deadline)
                smtp.send_message(msg, from_addr=self.from_addr, to_addrs=self.to)
            except BaseException:
                smtp.close()
                raise
            _quit(smtp, deadline)  # delivered: a failed QUIT changes nothing
        except (OSError, smtplib.SMTPException, UnicodeEncodeError) as exc:
            raise self._failure(exc, deadline) from None
        finally:
            deadline.close()

    def _failure(self, exc: BaseException, deadline: Deadline) -> DeliveryFailed:
        """`exc` worded for the outbox: the server's reply, or the cause (never a password)."""
        where, timeout = self.where, deadline.timeout
        if deadline.expired or isinstance(exc, TimeoutError) or (
                isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError)):
            return DeliveryFailed(f"{where}: no answer within {timeout:g}s")  # smtplib words a timeout as a disconnect
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()))
            return DeliveryFailed(f"{where}: recipients refused: SMTP {code} {_text(reply)}")
        if isinstance(exc, smtplib.SMTPResponseException):
            return DeliveryFailed(f"{where}: SMTP {exc.smtp_code} {_text(exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryFailed(f"{where}: {exc} (check `security`)")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return DeliveryFailed(f"{where}: the server closed the connection")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryFailed(f"{where}: TLS certificate not trusted ({exc.verify_message});"
                                  " set ca_file to the CA that signed it")
        if isinstance(exc, ssl.SSLError):
            return DeliveryFailed(f"{where}: TLS error ({exc.reason or exc})")
        if isinstance(exc, ConnectionRefusedError):
            return DeliveryFailed(f"{where}: connection refused")
        if isinstance(exc, UnicodeEncodeError):  # its text would quote the password's characters
            return DeliveryFailed(f"{where}: the username or password is not ASCII, which SMTP AUTH needs")
        return DeliveryFailed(f"{where}: {getattr(exc, 'strerror', None) or type(exc).__name__}")

    def _connect(self, deadline: Deadline) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.smtp_host, self.smtp_port, timeout=deadline.left(),
                                    context=tls_context(self.ca_file))
        return smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=deadline.left())


def _read_password(path: Path, where: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliveryFailed(f"{where}: password_file {path} cannot be read"
                             f" ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    if not value:
        raise DeliveryFailed(f"{where}: password_file {path} is empty")
    return value


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return notice.one_line(text)[:200]


def _quit(smtp: smtplib.SMTP, deadline: Deadline) -> None:
    try:
        _bound(smtp, deadline)
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
