"""One HTTP GET that survives what a long import over the network meets.

An import of a large tracker reads thousands of pages over hours; a proxy's
502, a 503 while the tracker restarts, a 429 from its rate limiter or a
connection reset would otherwise stop the whole run at issue 4,000 of
10,000 (resuming skips the imported ones, but only if someone runs it
again). :func:`read_with_retries` repeats such a request a few times with a
growing pause (or the pause the server's ``Retry-After`` asks for) and gives
up with the last failure; every other answer (401, 403, 404, a bad body) is
the caller's to judge at once, since repeating it would only repeat it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from http.client import HTTPException
from urllib.error import HTTPError, URLError

#: Answers worth asking again: rate limited, or the server (or a proxy) failing for now.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Pauses before the 2nd, 3rd, ... attempt (seconds): five attempts over ~7.5 s.
DEFAULT_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: The longest pause a ``Retry-After`` may ask for; longer ones are cut to it.
MAX_RETRY_AFTER_SECONDS = 60.0


def retry_delays(option: str | None) -> tuple[float, ...]:
    """The pauses for an importer's ``retries=N`` option (default: :data:`DEFAULT_DELAYS`).

    Args:
        option: The option's text, or None when not given.

    Returns:
        N pauses doubling from half a second (``retries=0``: none, fail at once).

    Raises:
        ValueError: ``option`` is not a whole number from 0 to 10.
    """
    if option is None or option == "":
        return DEFAULT_DELAYS
    if not option.isdigit() or int(option) > 10:
        msg = f"retries={option!r}: give a whole number of retries from 0 to 10"
        raise ValueError(msg)
    return tuple(0.5 * 2**n for n in range(int(option)))


def _retry_after(error: HTTPError) -> float | None:
    """The pause a 429/503 asks for in seconds (only the delta-seconds form)."""
    value = error.headers.get("Retry-After") if error.headers else None
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)


def read_with_retries(
    fetch: Callable[[], bytes],
    *,
    delays: Sequence[float] = DEFAULT_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """``fetch()``'s body, asking again on a passing failure.

    Args:
        fetch: Makes the request and returns the body; raises what urllib raises.
        delays: The pause before each repeat; its length is the number of repeats.
        sleep: How to pause (the tests' clock, or ``time.sleep``).

    Returns:
        The body of the first attempt that succeeded.

    Raises:
        HTTPError: A status not in :data:`RETRYABLE_STATUSES`, at once, or the
            last retryable one when every attempt failed.
        URLError: Or OSError / HTTPException: the last network failure.
    """
    attempt = 0
    while True:
        try:
            return fetch()
        except HTTPError as error:
            if error.code not in RETRYABLE_STATUSES or attempt >= len(delays):
                raise
            asked = _retry_after(error)
            pause = delays[attempt] if asked is None else asked
            error.close()
        except (URLError, OSError, HTTPException):
            if attempt >= len(delays):
                raise
            pause = delays[attempt]
        sleep(pause)
        attempt += 1
