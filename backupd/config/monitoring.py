"""`[monitoring]`: where the daemon exposes its metrics besides the control op `metrics`."""

from __future__ import annotations

from pydantic import Field, field_validator

from backupd.config.fields import ConfigPath, PositiveDuration, Section, problem
from backupd.config.notifiers import HttpUrl

HEARTBEAT_INTERVAL_S = 300.0
MIN_HEARTBEAT_INTERVAL_S = 60.0


class MonitoringConfig(Section):
    textfile: ConfigPath | None = Field(
        None,
        description="A node_exporter textfile-collector file (name ending `.prom`) the metrics are written to,"
        " atomically, after every job and every 60 s; omit for none.",
    )
    listen: str | None = Field(
        None,
        description="HOST:PORT of an HTTP listener serving /metrics and /healthz (e.g. \"127.0.0.1:9847\");"
        " omit for none (the default).",
    )

    heartbeat_url: HttpUrl | None = Field(
        None,
        description="A dead-man's-switch URL (Healthchecks, Uptime Kuma push, ...) pinged every"
        " `heartbeat_interval` while every source is fresh; omit for none.",
    )
    heartbeat_interval_s: PositiveDuration = Field(
        HEARTBEAT_INTERVAL_S, alias="heartbeat_interval", description="How often the heartbeat is pinged (at least 1m)."
    )

    @field_validator("heartbeat_interval_s")
    @classmethod
    def _at_least_a_minute(cls, value: float) -> float:
        if value < MIN_HEARTBEAT_INTERVAL_S:
            raise problem(f"must be at least {MIN_HEARTBEAT_INTERVAL_S:g}s (got {value:g}s)")
        return value

    @field_validator("textfile")
    @classmethod
    def _prom_suffix(cls, value: object) -> object:
        if value is not None and not str(value).endswith(".prom"):
            raise problem("must end in .prom (node_exporter's textfile collector reads only those)")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise problem(f"must be HOST:PORT with a port from 1 to 65535 (got {value!r})")
        return value

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """`listen` as (host, port), brackets of an IPv6 host removed; None when off."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
