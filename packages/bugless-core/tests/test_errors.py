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
        (errors.OutOfRange("x"), Status.OUT_OF_RANGE, 400),
        (errors.NotFound("x"), Status.NOT_FOUND, 404),
        (errors.AlreadyExists("x"), Status.ALREADY_EXISTS, 409),
        (errors.Conflict("x"), Status.ABORTED, 409),
        (errors.FailedPrecondition("x"), Status.FAILED_PRECONDITION, 409),
        (errors.PermissionDenied("x"), Status.PERMISSION_DENIED, 403),
        (errors.Unauthenticated("x"), Status.UNAUTHENTICATED, 401),
        (errors.ResourceExhausted("x", retry_after=2), Status.RESOURCE_EXHAUSTED, 429),
        (errors.Unavailable("x"), Status.UNAVAILABLE, 503),
        (errors.Unimplemented("x"), Status.UNIMPLEMENTED, 501),
        (errors.CapabilityMissing("x", capability="watch"), Status.UNIMPLEMENTED, 501),
        (errors.MethodNotServed("x"), Status.FAILED_PRECONDITION, 501),
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


@pytest.mark.parametrize(
    "details",
    [
        pytest.param([], id="no ErrorInfo"),
        pytest.param([("OUT_OF_RANGE", {})], id="reason only"),
        pytest.param([("RANGE_NOT_SATISFIABLE", {})], id="range reason without a size"),
    ],
)
def test_an_out_of_range_without_a_size_is_bad_input_not_a_server_failure(
    details: list[tuple[str, dict[str, str]]],
) -> None:
    """gRPC's OUT_OF_RANGE is INVALID_ARGUMENT for a value that may become valid
    (google.rpc.Code maps both to HTTP 400), so without the size that makes it a
    :class:`RangeNotSatisfiable` it is an :class:`OutOfRange`: an InvalidArgument,
    HTTP 400, exit 2 (1 when a service answered it), sent on with its own status.

    Before, ``_BY_STATUS`` had no OUT_OF_RANGE: it became a plain BuglessError,
    an HTTP 500 and on the wire an INTERNAL.
    """
    from grpclib.exceptions import GRPCError

    from bugless_core.cli import EXIT_ERROR, EXIT_USAGE, exit_status_of

    sent = [
        errors.to_grpc_error(errors.InvalidArgument("x", reason=r, metadata=m)).details[0]
        for r, m in details
    ]
    back = errors.from_grpc_error(GRPCError(Status.OUT_OF_RANGE, "offset: 9 is too far", sent))
    assert type(back) is errors.OutOfRange
    assert isinstance(back, errors.InvalidArgument)
    assert (back.message, back.http_status) == ("offset: 9 is too far", 400)
    assert back.reason == (details[0][0] if details else "OUT_OF_RANGE")
    assert errors.to_grpc_error(back).status is Status.OUT_OF_RANGE
    assert exit_status_of(back) == EXIT_USAGE
    assert exit_status_of(back, answered_by_service=True) == EXIT_ERROR
    # A batch item's status reads the same way.
    item = errors.from_status(Status.OUT_OF_RANGE.value, "offset: 9 is too far")
    assert (type(item), item.http_status) == (errors.OutOfRange, 400)


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


def test_a_stalled_download_reaches_a_client_as_it_did_from_the_api_and_the_web() -> None:
    """One DownloadStalled for the API and the web, answered as each answered its own.

    Both servers defined it, alike: DEADLINE_EXCEEDED, HTTP 408, reason
    DOWNLOAD_STALLED, the message the server wrote. A client still gets an
    Unavailable (a stall is worth retrying) with that reason and message.
    """
    message = "the download stalled: the browser read nothing for 30 s"
    grpc_error = errors.to_grpc_error(errors.DownloadStalled(message))
    assert (grpc_error.status, grpc_error.message) == (Status.DEADLINE_EXCEEDED, message)
    assert errors.DownloadStalled.http_status == 408
    back = errors.from_grpc_error(grpc_error)
    assert (type(back), back.reason, back.message) == (
        errors.Unavailable,
        "DOWNLOAD_STALLED",
        message,
    )


def test_unknown_status_keeps_the_message() -> None:
    from grpclib.exceptions import GRPCError

    back = errors.from_grpc_error(GRPCError(Status.INTERNAL, "oops"))
    assert type(back) is errors.BuglessError
    assert back.message == "oops"


def test_a_capability_the_backend_lacks_round_trips_as_unimplemented_naming_it() -> None:
    """What the Model says of Watch on a backend without watches, passed on as said."""
    said = errors.CapabilityMissing("the x backend cannot watch", capability="watch")
    back = errors.from_grpc_error(errors.to_grpc_error(said))
    assert isinstance(back, errors.CapabilityMissing)
    assert (back.message, back.reason, back.capability) == (
        "the x backend cannot watch",
        "CAPABILITY_MISSING",
        "watch",
    )
    assert errors.to_grpc_error(back).status is Status.UNIMPLEMENTED


def test_another_unimplemented_is_passed_on_as_unimplemented_not_internal() -> None:
    """An older Model's capability refusal carried no reason: still not an outage, nor "old"."""
    from grpclib.exceptions import GRPCError

    older = "the x backend has no change feed; check GetServerInfo capabilities"
    back = errors.from_grpc_error(GRPCError(Status.UNIMPLEMENTED, older))
    assert type(back) is errors.Unimplemented
    assert back.message == older
    assert errors.to_grpc_error(back).status is Status.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("service", "server"),
    [("Model", "Model"), ("Authenticator", "Authenticator"), ("Issues", "API")],
)
def test_a_method_the_server_does_not_serve_names_the_server_to_upgrade(
    service: str, server: str
) -> None:
    """A bugless server's own answer (``unserved_message``) names the server to upgrade.

    FAILED_PRECONDITION, not UNAVAILABLE: nothing changes until an operator
    upgrades it, so no client retries it; and a frontend passing it on keeps it.
    """
    from grpclib.exceptions import GRPCError

    from bugless_core.grpc._cork import unserved_message

    answer = GRPCError(Status.UNIMPLEMENTED, unserved_message(f"/bugless.v1.{service}/Frob"))
    back = errors.from_grpc_error(answer)
    assert isinstance(back, errors.MethodNotServed)
    assert back.message == (
        f"the {server} does not serve Frob, so it is of a release older than its "
        f"caller's: upgrade the {server} first, as docs/upgrades.md orders"
    )
    assert back.metadata == {"service": f"bugless.v1.{service}", "method": "Frob"}
    passed_on = errors.to_grpc_error(back)
    assert passed_on.status is Status.FAILED_PRECONDITION
    again = errors.from_grpc_error(passed_on)
    assert isinstance(again, errors.MethodNotServed)
    assert (again.message, again.metadata) == (back.message, back.metadata)
    assert errors.method_not_served(answer)


@pytest.mark.parametrize(
    ("status", "message"),
    [(Status.UNKNOWN, "Missing content-type header"), (Status.UNIMPLEMENTED, "Method not found")],
)
def test_a_grpclib_servers_bare_answer_is_a_method_not_served(status: Status, message: str) -> None:
    """Servers of early releases answered a method they lack as grpclib's ``Server`` does."""
    from grpclib.exceptions import GRPCError

    back = errors.from_grpc_error(GRPCError(status, message))
    assert isinstance(back, errors.MethodNotServed)
    assert "upgrade it first, as docs/upgrades.md orders" in back.message
    assert not errors.method_not_served(GRPCError(Status.UNKNOWN, "something else"))
    assert not errors.method_not_served(
        errors.to_grpc_error(errors.CapabilityMissing("x", capability="watch"))
    )


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


#: Values a server may send where a number belongs, none of which is one:
#: int() refuses "²" (which str.isdigit takes) and 5000 digits; float() reads
#: "nan" and "inf", on which math.ceil (the web's Retry-After) raises.
UNREADABLE_WHOLE_NUMBERS = ["²", "x7", "", "-1", "+3", " 4", "3_0", "1e3", "9" * 5000, str(2**63)]
UNREADABLE_WAITS = ["soon", "", "nan", "inf", "-inf", "-2", "1e306", "9" * 5000]


def _received(
    status: Status, message: str, reason: str, metadata: dict[str, str]
) -> errors.BuglessError:
    """What a client makes of a status with this ErrorInfo, as a server could send it."""
    return errors.from_status(status.value, message, reason, metadata)


@pytest.mark.parametrize("key", ["issue_id", "expected_version", "current_version"])
@pytest.mark.parametrize("value", UNREADABLE_WHOLE_NUMBERS)
def test_an_issue_version_conflict_with_an_unreadable_number_is_a_version_conflict(
    key: str, value: str
) -> None:
    """Before, int() raised ValueError: the caller got a traceback instead of the conflict."""
    metadata = {"issue_id": "7", "expected_version": "3", "current_version": "5", key: value}
    back = _received(Status.ABORTED, "stale", "VERSION_CONFLICT", metadata)
    assert type(back) is errors.VersionConflict
    assert (back.message, back.reason) == ("stale", "VERSION_CONFLICT")
    assert key not in back.metadata
    assert {k: v for k, v in metadata.items() if k != key} == back.metadata


@pytest.mark.parametrize("value", UNREADABLE_WHOLE_NUMBERS)
def test_a_size_limit_with_an_unreadable_limit_is_a_size_limit_without_one(value: str) -> None:
    """Still no retry_after: waiting cannot help, so a client must not retry it."""
    back = _received(
        Status.RESOURCE_EXHAUSTED, "too big", "SIZE_LIMIT_EXCEEDED", {"limit_bytes": value}
    )
    assert isinstance(back, errors.SizeLimitExceeded)
    assert (back.message, back.limit_bytes, back.retry_after) == ("too big", None, None)
    assert back.metadata == {}


@pytest.mark.parametrize("key", ["oldest_position", "head_position"])
@pytest.mark.parametrize("value", UNREADABLE_WHOLE_NUMBERS)
def test_a_pruned_feed_position_with_an_unreadable_position_is_a_plain_precondition(
    key: str, value: str
) -> None:
    """Before, reading the position off the error raised ValueError.

    The consumer of the notify queue reads ``metadata.get("head_position")``
    of any FailedPrecondition: the unreadable one is not there to read.
    """
    metadata = {"oldest_position": "40", "head_position": "90", key: value}
    back = _received(Status.FAILED_PRECONDITION, "gone", "FEED_POSITION_PRUNED", metadata)
    assert type(back) is errors.FailedPrecondition
    assert (back.message, back.reason) == ("gone", "FEED_POSITION_PRUNED")
    assert key not in back.metadata


@pytest.mark.parametrize("value", UNREADABLE_WHOLE_NUMBERS)
def test_an_out_of_range_with_an_unreadable_size_keeps_its_message(value: str) -> None:
    back = _received(Status.OUT_OF_RANGE, "past the end", "RANGE_NOT_SATISFIABLE", {"size": value})
    assert type(back) is errors.OutOfRange
    assert (back.message, back.http_status) == ("past the end", 400)
    assert back.metadata == {}


@pytest.mark.parametrize("value", UNREADABLE_WAITS)
def test_a_rate_limit_with_an_unreadable_retry_after_waits_the_default_second(
    value: str,
) -> None:
    """Before, float("soon") raised ValueError, and "nan" or "inf" made the web's
    Retry-After (math.ceil) raise ValueError or OverflowError."""
    back = _received(
        Status.RESOURCE_EXHAUSTED, "slow down", "RESOURCE_EXHAUSTED", {"retry_after": value}
    )
    assert isinstance(back, errors.ResourceExhausted)
    assert (back.message, back.retry_after) == ("slow down", 1.0)
    assert back.metadata == {"retry_after": "1.000"}


def test_the_largest_readable_numbers_are_read() -> None:
    """The bound is int64's (ids, versions, sizes, positions are int64 in the protos)."""
    largest = str(2**63 - 1)
    back = _received(
        Status.OUT_OF_RANGE, "past the end", "RANGE_NOT_SATISFIABLE", {"size": largest}
    )
    assert isinstance(back, errors.RangeNotSatisfiable)
    assert back.size == 2**63 - 1
    limit = _received(
        Status.RESOURCE_EXHAUSTED, "too big", "SIZE_LIMIT_EXCEEDED", {"limit_bytes": "0"}
    )
    assert isinstance(limit, errors.SizeLimitExceeded)
    assert limit.limit_bytes == 0
