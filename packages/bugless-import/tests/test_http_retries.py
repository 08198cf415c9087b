"""The retry rules of ``read_with_retries``, on urllib's own errors.

The loopback Redmine (``test_redmine.py``) shows retries end to end; here
each rule on its own, with a clock that records the pauses instead of
sleeping them.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from urllib.error import HTTPError, URLError

import pytest

from bugless_import.sources._http import (
    DEFAULT_DELAYS,
    MAX_RETRY_AFTER_SECONDS,
    read_with_retries,
    retry_delays,
)


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
    assert read_with_retries(fetch, sleep=pauses.append) == b"ok"
    assert len(calls) == 4
    assert pauses == list(DEFAULT_DELAYS[:3])


def test_retry_after_is_honoured_up_to_a_minute() -> None:
    fetch, _ = _answers(
        _status(429, "3"), _status(503, "86400"), _status(503, "Wed, 21 Oct"), b"ok"
    )
    pauses: list[float] = []
    assert read_with_retries(fetch, sleep=pauses.append) == b"ok"
    assert pauses == [3.0, MAX_RETRY_AFTER_SECONDS, DEFAULT_DELAYS[2]], "a date: the own pause"


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
        read_with_retries(fetch, delays=(0.1, 0.2), sleep=pauses.append)
    assert raised.value.code == 504
    assert (len(calls), pauses) == (3, [0.1, 0.2])


@pytest.mark.parametrize(
    ("option", "delays"),
    [(None, DEFAULT_DELAYS), ("", DEFAULT_DELAYS), ("0", ()), ("3", (0.5, 1.0, 2.0))],
)
def test_the_retries_option(option: str | None, delays: tuple[float, ...]) -> None:
    assert retry_delays(option) == delays


@pytest.mark.parametrize("option", ["-1", "two", "11", "1.5"])
def test_a_bad_retries_option_is_refused_by_name(option: str) -> None:
    with pytest.raises(ValueError, match=f"retries={option!r}: give a whole number"):
        retry_delays(option)
