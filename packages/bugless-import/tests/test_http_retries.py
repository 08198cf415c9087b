"""The retry rules of ``read_with_retries``, on urllib's own errors.

The loopback Redmine (``test_redmine.py``) shows retries end to end; here
each rule on its own, with a clock that records the pauses instead of
sleeping them, and a fixed jitter draw (0: the nominal pause, ~1: its floor).
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from urllib.error import HTTPError, URLError

import pytest

from bugless_import.sources._http import (
    DEFAULT_RETRIES,
    HTTP_BACKOFF,
    MAX_RETRY_AFTER_SECONDS,
    read_with_retries,
    retry_count,
)

#: The nominal pauses of the default five attempts.
DEFAULT_PAUSES = [0.5, 1.0, 2.0, 4.0]
#: The highest draw :func:`random.random` can return (it never returns 1).
HIGHEST_DRAW = 1.0 - 2**-53


def _nominal() -> float:
    return 0.0


def _status(code: int, retry_after: str | None = None) -> HTTPError:
    headers = Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return HTTPError("http://tracker.test/x", code, "status", headers, None)


def _answers(*outcomes: Exception | bytes) -> tuple[Callable[[], bytes], list[int]]:
    """A fetch that fails or answers in turn, and how often it was called."""
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return fetch, calls


def test_passing_failures_are_repeated_with_growing_pauses() -> None:
    fetch, calls = _answers(_status(502), URLError("reset"), ConnectionResetError(), b"ok")
    pauses: list[float] = []
    assert read_with_retries(fetch, sleep=pauses.append, draw=_nominal) == b"ok"
    assert len(calls) == 4
    assert pauses == DEFAULT_PAUSES[:3]


def test_retry_after_is_honoured_up_to_a_minute() -> None:
    fetch, _ = _answers(
        _status(429, "3"), _status(503, "86400"), _status(503, "Wed, 21 Oct"), b"ok"
    )
    pauses: list[float] = []
    assert read_with_retries(fetch, sleep=pauses.append, draw=_nominal) == b"ok"
    assert pauses == [3.0, MAX_RETRY_AFTER_SECONDS, DEFAULT_PAUSES[2]], "a date: the own pause"


def test_a_retry_after_that_is_no_number_gets_the_own_pause() -> None:
    """A superscript two is a digit to str.isdigit, not to float: it raised ValueError."""
    fetch, calls = _answers(_status(503, "\N{SUPERSCRIPT TWO}"), b"ok")
    pauses: list[float] = []
    assert read_with_retries(fetch, sleep=pauses.append, draw=_nominal) == b"ok"
    assert (len(calls), pauses) == (2, DEFAULT_PAUSES[:1])


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_answers_that_would_only_repeat_are_raised_at_once(code: int) -> None:
    fetch, calls = _answers(_status(code), b"never")
    pauses: list[float] = []
    with pytest.raises(HTTPError) as raised:
        read_with_retries(fetch, sleep=pauses.append)
    assert raised.value.code == code
    assert (len(calls), pauses) == (1, [])


def test_the_last_failure_is_raised_when_every_attempt_failed() -> None:
    fetch, calls = _answers(_status(503), _status(503), _status(504))
    pauses: list[float] = []
    with pytest.raises(HTTPError) as raised:
        read_with_retries(fetch, retries=2, sleep=pauses.append, draw=_nominal)
    assert raised.value.code == 504
    assert (len(calls), pauses) == (3, DEFAULT_PAUSES[:2])


@pytest.mark.parametrize(
    ("draw", "pauses"),
    [
        (_nominal, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]),
        (lambda: HIGHEST_DRAW, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]),
    ],
    ids=["highest", "lowest"],
)
def test_the_pauses_double_from_half_a_second_to_a_minute_with_a_floor_of_half(
    draw: Callable[[], float], pauses: list[float]
) -> None:
    """The bounds of every pause of the most retries (10): it used to reach 256 s."""
    fetch, calls = _answers(*[_status(503)] * 10, b"ok")
    slept: list[float] = []
    assert read_with_retries(fetch, retries=10, sleep=slept.append, draw=draw) == b"ok"
    assert len(calls) == 11
    assert slept == pytest.approx(pauses)
    assert HTTP_BACKOFF.max_seconds == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("option", "retries"),
    [(None, DEFAULT_RETRIES), ("", DEFAULT_RETRIES), ("0", 0), ("3", 3), ("10", 10)],
)
def test_the_retries_option(option: str | None, retries: int) -> None:
    assert retry_count(option) == retries


@pytest.mark.parametrize("option", ["-1", "two", "11", "1.5", "\N{SUPERSCRIPT TWO}"])
def test_a_bad_retries_option_is_refused_by_name(option: str) -> None:
    with pytest.raises(ValueError, match=f"retries={option!r}: give a whole number"):
        retry_count(option)
