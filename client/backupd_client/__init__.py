"""backupd-client: the typed Python API (`Client`) and the `backupctl` CLI for backupd's control socket.

The wire vocabulary lives in `backupd_client.protocol` (stdlib + msgpack only), which the daemon
imports too; importing it does not import zmq, so the names below are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "client", "ClientError": "errors", "DaemonUnreachable": "errors", "RequestTimeout": "errors",
    "error_for": "errors", "DEFAULT_SOCKET": "protocol", "PROTOCOL_VERSION": "protocol", "ErrorCode": "protocol",
    "JobStatus": "protocol", "Op": "protocol",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
