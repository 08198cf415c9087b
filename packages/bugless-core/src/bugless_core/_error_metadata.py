"""Reading an error's ErrorInfo metadata received from the network (:mod:`bugless_core.errors`).

Kept apart from the hierarchy: what a value must look like to be read as a
number or a wait, whichever server sent it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: ErrorInfo metadata ``errors.from_grpc_error`` reads as whole numbers (``0..2**63-1``).
_WHOLE_NUMBER_KEYS = frozenset(
    {
        "issue_id",
        "expected_version",
        "current_version",
        "limit_bytes",
        "oldest_position",
        "head_position",
        "size",
    }
)
_INT64_MAX = 2**63 - 1


def readable_metadata(received: Mapping[str, str]) -> dict[str, str]:
    """The received metadata without the numbers in it that do not read as numbers.

    The metadata comes over the network from whatever server the client was
    pointed at, so a value may be anything: ``int()`` refuses "²" (which
    ``str.isdigit`` takes) and more than 4300 digits, and ``float()`` reads
    "nan" and "inf", on which ``math.ceil`` (the web's Retry-After) raises. A
    detail that does not read is dropped, so the error stays the status's
    error (without that detail) instead of becoming a traceback, and code that
    reads ``metadata[key]`` of a kept key can rely on it.
    """
    readable: dict[str, str] = {}
    for key, value in received.items():
        if key in _WHOLE_NUMBER_KEYS and not _is_whole_number(value):
            continue
        if key == "retry_after" and not _is_wait(value):
            continue
        readable[key] = value
    return readable


def _is_whole_number(value: str) -> bool:
    # ASCII digits only, and at most 19 of them before int() (whose limit is 4300).
    return 0 < len(value) <= 19 and value.isascii() and value.isdigit() and int(value) <= _INT64_MAX


#: The longest ``retry_after`` read (a year): ResourceExhausted's rounding of
#: 1e306 seconds overflows to inf, and no limit asks a caller to wait longer.
_LONGEST_WAIT = 365 * 86400.0


def _is_wait(value: str) -> bool:
    return wait_seconds(value) is not None


def wait_seconds(value: str) -> float | None:
    """The seconds an ErrorInfo's ``retry_after`` asks to wait; None when it reads as no wait.

    A wait is a number from 0 to a year: not "nan" or "inf" (``float`` reads
    both, and ``math.ceil`` raises on them, ValueError and OverflowError),
    nor anything longer, which no limit asks for. The one rule for both ends:
    a client drops a value that is not a wait (:func:`~bugless_core.errors.from_grpc_error`), and
    a server sends no ``retry-after`` trailer for it.
    """
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= _LONGEST_WAIT else None  # False for nan too
