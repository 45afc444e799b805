"""The webhook kind: the event's wire form as JSON, signed per Standard Webhooks v1.

`webhook-id` is the event id (the same on every retry, so receivers deduplicate), `webhook-timestamp`
the attempt's unix time, and `webhook-signature` one `v1,<base64 HMAC-SHA256>` of `id.timestamp.body`
per secret in `secret_file`: during a rotation the receiver accepts whichever key it knows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from pathlib import Path

from backupd.config.notifiers import NotifierConfig
from backupd.core.events import Event
from backupd.errors import ConfigError
from backupd.notify import http
from backupd.notify.base import Transport

SECRET_PREFIX = "whsec_"


def read_secrets(path: Path, *, notifier: str) -> list[bytes]:
    """The keys in a secret file: one `whsec_<base64>` per line; blank lines and `#` comments skipped.
    ConfigError naming the file (never its contents) when it is unreadable, empty or malformed."""
    where = f"notifier {notifier!r}: secret_file {path}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{where}: cannot be read ({getattr(exc, 'strerror', None) or exc})"]) from None
    keys = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(SECRET_PREFIX):
            raise ConfigError([f"{where}: line {number} is not a {SECRET_PREFIX}<base64> secret"])
        try:
            keys.append(base64.b64decode(line[len(SECRET_PREFIX):], validate=True))
        except binascii.Error:
            raise ConfigError([f"{where}: line {number} is not valid base64 after {SECRET_PREFIX}"]) from None
    if not keys:
        raise ConfigError([f"{where}: holds no {SECRET_PREFIX} secret"])
    return keys


def signature(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<sig>` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


class WebhookTransport(Transport):
    """POSTs `event.to_wire()` as compact JSON to `url`, with `headers` and the signature headers."""

    def __init__(self, cfg: NotifierConfig, *, host: str):
        super().__init__(cfg.name)
        assert cfg.url is not None  # required for the kind by NotifierConfig
        self.url = cfg.url
        self.headers = dict(cfg.headers or {})
        self.ca_file = cfg.ca_file
        self.keys = read_secrets(cfg.secret_file, notifier=cfg.name) if cfg.secret_file else []

    def send(self, event: Event, *, timeout: float) -> None:
        body = json.dumps(event.to_wire(), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {**self.headers, "content-type": "application/json", "webhook-id": event.id,
                   "webhook-timestamp": str(timestamp)}
        if self.keys:
            headers["webhook-signature"] = signature(self.keys, event.id, timestamp, body)
        http.post(self.url, body, headers, timeout=timeout, ca_file=self.ca_file)
