"""What escapes a handler becomes the status it answers with; cancellation passes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core import errors
from bugless_core.grpc import grpc_errors, handler_errors


def test_a_bugless_error_becomes_its_status() -> None:
    """The status of the error's class, its message, the error kept as the cause."""
    error = errors.NotFound("issue 7")
    with pytest.raises(GRPCError) as raised, handler_errors("get_issue"):
        raise error
    assert raised.value.status is Status.NOT_FOUND
    assert raised.value.message == "issue 7"
    assert raised.value.__cause__ is error


def test_a_grpc_error_passes_unchanged() -> None:
    """A status raised on purpose is the one the caller gets."""
    error = GRPCError(Status.UNIMPLEMENTED, "no")
    with pytest.raises(GRPCError) as raised, handler_errors("watch"):
        raise error
    assert raised.value is error


def test_anything_else_is_logged_and_internal(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback reaches the caller: a generic INTERNAL, the traceback in the log."""
    with (
        caplog.at_level(logging.ERROR, "bugless_core.grpc"),
        pytest.raises(GRPCError) as raised,
        handler_errors("search_issues"),
    ):
        raise ValueError("secret detail")
    assert raised.value.status is Status.INTERNAL
    assert raised.value.message == "internal error in search_issues; the server log has details"
    assert "secret detail" not in str(raised.value.message)
    assert isinstance(raised.value.__cause__, ValueError)
    [record] = caplog.records
    assert record.getMessage() == "unexpected error in search_issues"
    assert record.exc_info is not None


def test_cancellation_passes_untouched() -> None:
    """A cancelled handler stays cancelled (BaseException, not a status)."""
    with pytest.raises(asyncio.CancelledError), handler_errors("watch"):
        raise asyncio.CancelledError


def test_a_block_without_error_returns_its_value() -> None:
    """The wrapped unary handler's reply comes back as it is."""

    @grpc_errors
    async def handler(value: int) -> int:
        return value + 1

    assert asyncio.run(handler(1)) == 2
