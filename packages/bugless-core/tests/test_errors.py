from __future__ import annotations

import math
import subprocess
import sys

import pytest
from grpclib.const import Status

from bugless_core import errors


@pytest.mark.parametrize(
    ("error", "status", "http"),
    [
        (errors.InvalidArgument("x"), Status.INVALID_ARGUMENT, 400),
        (errors.NotFound("x"), Status.NOT_FOUND, 404),
        (errors.AlreadyExists("x"), Status.ALREADY_EXISTS, 409),
        (errors.Conflict("x"), Status.ABORTED, 409),
        (errors.FailedPrecondition("x"), Status.FAILED_PRECONDITION, 409),
        (errors.PermissionDenied("x"), Status.PERMISSION_DENIED, 403),
        (errors.Unauthenticated("x"), Status.UNAUTHENTICATED, 401),
        (errors.ResourceExhausted("x", retry_after=2), Status.RESOURCE_EXHAUSTED, 429),
        (errors.Unavailable("x"), Status.UNAVAILABLE, 503),
    ],
)
def test_each_error_maps_to_one_grpc_status_and_one_http_status(
    error: errors.BuglessError, status: Status, http: int
) -> None:
    grpc_error = errors.to_grpc_error(error)
    assert grpc_error.status is status
    assert grpc_error.message == "x"
    assert error.http_status == http
    back = errors.from_grpc_error(grpc_error)
    assert type(back) is type(error) or isinstance(back, type(error))
    assert back.message == "x"


def test_version_conflict_round_trips_with_current_version() -> None:
    grpc_error = errors.to_grpc_error(errors.IssueVersionConflict(7, 3, 5))
    assert grpc_error.status is Status.ABORTED
    assert grpc_error.message is not None
    assert "version 5, not 3" in grpc_error.message
    back = errors.from_grpc_error(grpc_error)
    assert isinstance(back, errors.IssueVersionConflict)
    assert (back.issue_id, back.expected_version, back.current_version) == (7, 3, 5)


def test_a_pruned_feed_position_round_trips_with_where_the_feed_now_is() -> None:
    """A watcher or feed reader catches the one class, and reads the positions off it."""
    metadata = {"oldest_position": "40", "head_position": "90"}
    grpc_error = errors.to_grpc_error(errors.FeedPositionPruned("gone", metadata=metadata))
    assert grpc_error.status is Status.FAILED_PRECONDITION
    back = errors.from_grpc_error(grpc_error)
    assert isinstance(back, errors.FeedPositionPruned)
    assert (back.reason, back.oldest_position, back.head_position) == (
        "FEED_POSITION_PRUNED",
        40,
        90,
    )
    # Any other precondition stays a plain one.
    other = errors.from_grpc_error(errors.to_grpc_error(errors.FailedPrecondition("cycle")))
    assert type(other) is errors.FailedPrecondition


def test_a_range_past_the_end_round_trips_with_the_size() -> None:
    """The web reads the size off it for ``Content-Range: bytes */SIZE`` (416)."""
    error = errors.RangeNotSatisfiable("offset: 9 is past the end", size=4)
    assert error.http_status == 416
    grpc_error = errors.to_grpc_error(error)
    assert grpc_error.status is Status.OUT_OF_RANGE
    back = errors.from_grpc_error(grpc_error)
    assert isinstance(back, errors.RangeNotSatisfiable)
    assert isinstance(back, errors.InvalidArgument)
    assert (back.size, back.message) == (4, "offset: 9 is past the end")


def test_an_out_of_range_whose_size_is_not_ascii_digits_is_no_range_error() -> None:
    """A size str.isdigit takes but int refuses ("²") is not read as one.

    Before, from_grpc_error raised ValueError from int(), so the caller got a
    traceback instead of the status's error.
    """
    from grpclib.exceptions import GRPCError

    sent = errors.to_grpc_error(errors.InvalidArgument("past the end", metadata={"size": "²"}))
    back = errors.from_grpc_error(GRPCError(Status.OUT_OF_RANGE, sent.message, sent.details))
    assert not isinstance(back, errors.RangeNotSatisfiable)
    assert back.message == "past the end"


def test_retry_after_round_trips() -> None:
    back = errors.from_grpc_error(
        errors.to_grpc_error(errors.ResourceExhausted("slow down", retry_after=1.5))
    )
    assert isinstance(back, errors.ResourceExhausted)
    assert back.retry_after == 1.5


def test_a_wait_crossing_the_wire_is_never_shorter_than_it_was() -> None:
    """29.0004 s arrived as 29.000, so its whole seconds came out one under.

    The web's Retry-After (whole seconds, rounded up) then said 29 where the
    message, from the exact wait, said 30 (smallfix's find).
    """
    for wait in (29.0004, 0.0001, 1.0, 2.9995):
        back = errors.from_grpc_error(
            errors.to_grpc_error(errors.ResourceExhausted("slow down", retry_after=wait))
        )
        assert isinstance(back, errors.ResourceExhausted)
        assert back.retry_after is not None
        assert back.retry_after >= wait
        assert math.ceil(back.retry_after) == math.ceil(wait)


def test_unknown_status_keeps_the_message() -> None:
    from grpclib.exceptions import GRPCError

    back = errors.from_grpc_error(GRPCError(Status.INTERNAL, "oops"))
    assert type(back) is errors.BuglessError
    assert back.message == "oops"


def test_importing_the_errors_loads_no_protobuf_until_a_status_is_converted() -> None:
    """Every command imports the hierarchy; protobuf comes with the first conversion only."""
    probe = (
        "import sys\n"
        "from bugless_core import errors\n"
        "before = 'google.protobuf' in sys.modules\n"
        "errors.from_grpc_error(errors.to_grpc_error(errors.NotFound('x')))\n"
        "print(before, 'google.protobuf' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "True"]
