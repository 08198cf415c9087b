"""``run_bugless``: a command that hangs is an error with a message, not a traceback."""

from __future__ import annotations

import os

import pytest

from bugless_dev.processes import ServiceFailed, run_bugless


def test_a_command_that_does_not_finish_in_time_is_a_service_failure() -> None:
    with pytest.raises(ServiceFailed, match=r"`bugless --help` did not finish within 0.01 s"):
        run_bugless(["--help"], os.environ, timeout=0.01)


def test_a_command_that_finishes_returns_its_output() -> None:
    assert "Usage" in run_bugless(["--help"], os.environ, timeout=600).stdout
