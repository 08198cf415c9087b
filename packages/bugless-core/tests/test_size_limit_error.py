from __future__ import annotations

from grpclib.const import Status

from bugless_core import errors


def test_size_limit_is_resource_exhausted_413_without_retry_after() -> None:
    error = errors.SizeLimitExceeded("file: larger than the 10-byte limit", limit_bytes=10)
    assert isinstance(error, errors.ResourceExhausted)
    assert error.http_status == 413
    assert error.retry_after is None
    assert "retry_after" not in error.metadata
    grpc_error = errors.to_grpc_error(error)
    assert grpc_error.status is Status.RESOURCE_EXHAUSTED


def test_size_limit_round_trips_with_the_limit_and_stays_not_retryable() -> None:
    back = errors.from_grpc_error(
        errors.to_grpc_error(errors.SizeLimitExceeded("too big", limit_bytes=4096))
    )
    assert isinstance(back, errors.SizeLimitExceeded)
    assert back.limit_bytes == 4096
    assert back.retry_after is None
    assert back.message == "too big"


def test_a_rate_limit_still_carries_retry_after() -> None:
    back = errors.from_grpc_error(
        errors.to_grpc_error(errors.ResourceExhausted("slow down", retry_after=0.25))
    )
    assert type(back) is errors.ResourceExhausted
    assert back.retry_after == 0.25
