"""The ntfy kind: one push to a topic, titled with the subject, loud as the event is.

Headers: `Title` (the subject, RFC 2047 encoded when not ASCII; ntfy decodes it), `Priority` (1-5),
`Tags` (an emoji shortcode first), `Authorization: Bearer` from `token_env` when set, read at each
send so a rotated token is picked up. The body is the notice text, cut to ntfy's 4 KB message limit.
"""

from __future__ import annotations

import base64
import os

from backupd.config.notifiers import NotifierConfig
from backupd.core import notice
from backupd.core.events import Event
from backupd.notify import http
from backupd.notify.base import DeliveryFailed, Transport

MESSAGE_LIMIT = 4096  # bytes; a longer body would become an attachment, or be refused


def header_text(value: str) -> str:
    """`value` as an HTTP header value: as is when ASCII, else one RFC 2047 encoded word."""
    if value.isascii():
        return value
    return f"=?utf-8?b?{base64.b64encode(value.encode()).decode()}?="


class NtfyTransport(Transport):
    """POSTs the notice to the topic `url`."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        assert cfg.url is not None  # required for the kind by NotifierConfig
        self.url, self.host, self.ca_file = cfg.url, host, cfg.ca_file
        self.headers = dict(cfg.headers or {})
        self.token_env = cfg.token_env

    def send(self, event: Event, *, timeout: float) -> None:
        headers = {**self.headers, "Title": header_text(notice.subject(event, self.host)),
                   "Priority": str(notice.priority(event)), "Tags": header_text(",".join(notice.tags(event))),
                   "Content-Type": "text/plain; charset=utf-8"}
        if self.token_env:
            token = os.environ.get(self.token_env)
            if not token:
                raise DeliveryFailed(f"{http.host_of(self.url)}: token variable {self.token_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        body = http.truncate(notice.body(event, self.host), MESSAGE_LIMIT)
        http.post(self.url, body, headers, timeout=timeout, ca_file=self.ca_file)
