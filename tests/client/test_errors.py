"""One exception class per protocol error code, with the `backupd` CLI's exit codes."""

from __future__ import annotations

import pytest

from backupd_client import errors
from backupd_client.protocol import ErrorCode

USAGE = {"bad_request", "bad_usage", "config_invalid", "unknown_source", "unknown_destination", "target_exists",
         "key_unusable"}


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_code_has_its_class_and_exit_code(code):
    exc = errors.error_for(code.value, "why", {"k": 1})
    assert type(exc) is errors.ERROR_CLASSES[code.value] and type(exc) is not errors.ClientError
    assert (exc.code, exc.message, exc.details, str(exc)) == (code.value, "why", {"k": 1}, "why")
    assert exc.exit_code == (2 if code.value in USAGE else 1)
    assert exc.to_dict() == {"error": "why", "code": code.value, "details": {"k": 1}}


def test_unknown_codes_from_a_newer_daemon_stay_readable():
    exc = errors.error_for("quota_exceeded", "over quota")
    assert type(exc) is errors.ClientError
    assert (exc.code, exc.exit_code, exc.to_dict()) == ("quota_exceeded", 1, {"error": "over quota",
                                                                             "code": "quota_exceeded"})


def test_classes_read_as_their_names():
    assert isinstance(errors.NotFoundError("no job j1"), errors.ClientError)
    assert errors.WrongKeyError("k").code == "wrong_key"
    assert issubclass(errors.DestinationUnavailableError, errors.DestinationError)
    assert issubclass(errors.RequestTimeout, errors.DaemonUnreachable)  # both: no answer from the daemon
