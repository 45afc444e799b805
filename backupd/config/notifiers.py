"""The [[notifiers]] table: which keys each notifier kind takes, and the events it is sent.

Shape only, as for every section; the checks against the file system and the environment (the
webhook's secret file, the email password, the apprise extra) are in `notifier_checks.py`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from backupd.config.fields import ENV_NAME_PATTERN, ConfigPath, Name, PositiveDuration, Section, one_of, problem
from backupd.core.events import DEFAULT_NOTIFY_PATTERNS, DEFAULT_PING_PATTERNS, check_pattern
from backupd.core.vocab import NotifierKind

_K = NotifierKind
DELIVERY_TIMEOUT_S = 10.0  # per attempt, unless `timeout` says less
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}

# Keys only some kinds take: key -> the kinds that allow it, and the kinds that require it.
_KIND_KEYS: dict[str, tuple[tuple[NotifierKind, ...], tuple[NotifierKind, ...]]] = {
    "url": ((_K.WEBHOOK, _K.PING, _K.NTFY), (_K.WEBHOOK, _K.PING, _K.NTFY)),
    "secret_file": ((_K.WEBHOOK,), ()),
    "headers": ((_K.WEBHOOK, _K.NTFY), ()),
    "ca_file": ((_K.WEBHOOK, _K.PING, _K.NTFY, _K.EMAIL), ()),
    "token_env": ((_K.NTFY,), ()),
    "smtp_host": ((_K.EMAIL,), (_K.EMAIL,)),
    "smtp_port": ((_K.EMAIL,), ()),
    "security": ((_K.EMAIL,), ()),
    "username": ((_K.EMAIL,), ()),
    "password_env": ((_K.EMAIL,), ()),
    "password_file": ((_K.EMAIL,), ()),
    "from_addr": ((_K.EMAIL,), (_K.EMAIL,)),
    "to": ((_K.EMAIL,), (_K.EMAIL,)),
    "command": ((_K.COMMAND,), (_K.COMMAND,)),
    "urls": ((_K.APPRISE,), (_K.APPRISE,)),
}


def _kind_key(description: str, **kw: Any) -> Any:
    """A key only some kinds take (see _KIND_KEYS); validated even when absent, to report it missing."""
    return Field(None, validate_default=True, description=description, **kw)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise problem(f"must be an http:// or https:// URL (got {value!r})")
    return value


def _patterns(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise problem(str(exc)) from None
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
_Text = Annotated[str, Field(min_length=1)]


class NotifierConfig(Section):
    """One [[notifiers]] table. Keys of other kinds are errors; `events` gets its kind's default and
    an email's `smtp_port` and `security` theirs (starttls on 587)."""

    name: Name = Field(description="Unique notifier name, named by schedules' `notify` and `backupctl notify`.")
    kind: Annotated[NotifierKind, one_of(NotifierKind)] = Field(
        description="How it delivers: webhook, email, ping, ntfy, command, log or apprise."
    )
    events: Annotated[list[str], AfterValidator(_patterns)] | None = Field(
        None,
        description="Event types it is sent, as patterns (`backup.failed`, `backup.*`, `*.failed`); default:"
        " failures, partials, freshness and alerts (ping: every backup's start and outcome, and freshness).",
    )
    enabled: bool = Field(True, description="Set to false to keep the notifier without sending to it.")
    timeout_s: PositiveDuration = Field(
        DELIVERY_TIMEOUT_S, alias="timeout", description="Give up on one delivery attempt after this long (at most 10s)."
    )
    url: HttpUrl | None = _kind_key("webhook: the URL events are POSTed to; ping: the check's URL; ntfy: the topic URL.")
    secret_file: ConfigPath | None = _kind_key(
        "webhook: file (mode 0600) of `whsec_` secrets, one per line (several during a rotation); each signs"
        " every request per Standard Webhooks v1. Omit to send unsigned."
    )
    headers: dict[str, str] | None = _kind_key("webhook/ntfy: extra HTTP headers sent with every request.")
    ca_file: ConfigPath | None = _kind_key(
        "webhook/ping/ntfy/email: PEM file of the CA certificates that sign the receiver's TLS certificate"
        " (a private CA); omit to trust the system's."
    )
    token_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = _kind_key(
        "ntfy: environment variable holding an access token (sent as a bearer token)."
    )
    smtp_host: _Text | None = _kind_key("email: the SMTP server's host name or address.")
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = _kind_key(
        "email: the SMTP server's port (default 587 for starttls, 465 for tls, 25 for none)."
    )
    security: str | None = _kind_key("email: 'starttls' (the default), 'tls' (implicit TLS) or 'none'.")
    username: _Text | None = _kind_key("email: user name to log in with; omit to send without logging in.")
    password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = _kind_key(
        "email: environment variable holding the password."
    )
    password_file: ConfigPath | None = _kind_key("email: file (mode 0600) holding the password.")
    from_addr: _Text | None = _kind_key("email: the From address.", alias="from")
    to: list[_Text] | None = _kind_key("email: the recipients (at least one).")
    command: list[_Text] | None = _kind_key(
        "command: the program and its arguments (no shell); it reads the event as JSON on stdin."
    )
    urls: list[_Text] | None = _kind_key("apprise: apprise URLs (needs `pip install 'backupd[apprise]'`).")

    @field_validator(*_KIND_KEYS, mode="after")
    @classmethod
    def _kind_allows(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind")
        allowed, required = _KIND_KEYS[info.field_name or ""]
        if kind is None:  # the kind itself is wrong: reported on its own
            return value
        if value is not None and kind not in allowed:
            raise problem(f"not allowed for kind {kind!r}")
        if value is None and kind in required:
            raise problem("required key missing")
        if isinstance(value, list) and not value:
            raise problem("must not be empty")
        return value

    @field_validator("security", mode="after")
    @classmethod
    def _security(cls, value: str | None) -> str | None:
        if value is not None and value not in SMTP_PORTS:
            raise problem(f"unknown security {value!r} (expected {', '.join(SMTP_PORTS)})")
        return value

    @field_validator("timeout_s", mode="after")
    @classmethod
    def _at_most_ten_seconds(cls, value: float) -> float:
        if value > DELIVERY_TIMEOUT_S:
            raise problem(f"must be at most {DELIVERY_TIMEOUT_S:g}s (a slow receiver must not hold its queue)")
        return value

    @model_validator(mode="after")
    def _kind_defaults(self) -> NotifierConfig:
        if self.kind == _K.EMAIL:
            if self.password_env is not None and self.password_file is not None:
                raise problem("set at most one of password_env or password_file (got both)")
            if (self.password_env or self.password_file) and self.username is None:
                raise problem("a password needs a username")
            if self.username is not None and not (self.password_env or self.password_file):
                raise problem("a username needs a password: set password_env or password_file")
            # defaults that depend on the kind; the model is frozen, so set them the way pydantic does
            security = self.security or "starttls"
            object.__setattr__(self, "security", security)
            if self.smtp_port is None:
                object.__setattr__(self, "smtp_port", SMTP_PORTS[security])
        if self.events is None:
            defaults = DEFAULT_PING_PATTERNS if self.kind == _K.PING else DEFAULT_NOTIFY_PATTERNS
            object.__setattr__(self, "events", list(defaults))
        return self
