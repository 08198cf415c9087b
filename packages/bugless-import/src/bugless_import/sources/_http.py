"""One HTTP GET that survives what a long import over the network meets.

An import of a large tracker reads thousands of pages over hours; a proxy's
502, a 503 while the tracker restarts, a 429 from its rate limiter or a
connection reset would otherwise stop the whole run at issue 4,000 of
10,000 (resuming skips the imported ones, but only if someone runs it
again). :func:`read_with_retries` repeats such a request a few times with a
growing pause (or the pause the server's ``Retry-After`` asks for) and gives
up with the last failure; every other answer (401, 403, 404, a bad body) is
the caller's to judge at once, since repeating it would only repeat it.

The pauses are :data:`HTTP_BACKOFF`, the code base's one retry rule
(:class:`bugless_core.backoff.Backoff`): doubling from half a second, at most
a minute, each drawn between half and all of its nominal length.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from http.client import HTTPException
from typing import BinaryIO, TypeVar, cast
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from bugless_core.backoff import Backoff

T = TypeVar("T")

#: Answers worth asking again: rate limited, or the server (or a proxy) failing for now.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The longest pause, whoever chooses it: a ``Retry-After`` asking for more is
#: cut to it, and the doubling pauses stop growing at it.
MAX_RETRY_AFTER_SECONDS = 60.0
#: The pause before each repeat: nominally 0.5, 1, 2, 4 ... seconds, capped at
#: a minute (:data:`MAX_RETRY_AFTER_SECONDS`). The cap: a minute covers a
#: tracker's restart or a proxy's failover between two tries, and a pause
#: never exceeds what a server may ask for itself; ``retries=10``, the most,
#: now spans about four minutes of trying (it was 8.5, its last pause 256 s),
#: beyond which someone should look, and a resumed run skips what was
#: imported. The floor of half (``jitter=0.5``): a server that failed is not
#: asked again at once; the drawn half keeps importers that met the same
#: restart (several projects imported side by side) from asking again in step.
HTTP_BACKOFF = Backoff(first_seconds=0.5, max_seconds=MAX_RETRY_AFTER_SECONDS, jitter=0.5)
#: Repeats when the ``retries`` option is not given: five attempts over ~4-7.5 s.
DEFAULT_RETRIES = 4


def retry_count(option: str | None) -> int:
    """The number of repeats an importer's ``retries=N`` option asks for.

    Args:
        option: The option's text, or None when not given (:data:`DEFAULT_RETRIES`).

    Returns:
        N (``retries=0``: none, fail at once).

    Raises:
        ValueError: ``option`` is not a whole number from 0 to 10.
    """
    if option is None or option == "":
        return DEFAULT_RETRIES
    if not option.isdigit() or int(option) > 10:
        msg = f"retries={option!r}: give a whole number of retries from 0 to 10"
        raise ValueError(msg)
    return int(option)


def _retry_after(error: HTTPError) -> float | None:
    """The pause a 429/503 asks for in seconds (only the delta-seconds form)."""
    value = error.headers.get("Retry-After") if error.headers else None
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)


def read_with_retries(
    fetch: Callable[[], T],
    *,
    retries: int = DEFAULT_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """``fetch()``'s answer, asking again on a passing failure.

    Args:
        fetch: Makes the request and returns the body, or the open response
            when the caller streams it (a failure while the body is read is
            then the caller's: the bytes already consumed cannot be asked
            for again); raises what urllib raises.
        retries: How many times to ask again (the attempts are one more).
        sleep: How to pause (the tests' clock, or ``time.sleep``).
        draw: The jitter's random source (:meth:`Backoff.delay`; tests pass a
            fixed or seeded one).

    Returns:
        What the first attempt that succeeded returned.

    Raises:
        HTTPError: A status not in :data:`RETRYABLE_STATUSES`, at once, or the
            last retryable one when every attempt failed.
        URLError: Or OSError / HTTPException: the last network failure.
    """
    failures = 0
    while True:
        try:
            return fetch()
        except HTTPError as error:
            if error.code not in RETRYABLE_STATUSES or failures >= retries:
                raise
            failures += 1
            asked = _retry_after(error)
            pause = HTTP_BACKOFF.delay(failures, draw) if asked is None else asked
            error.close()
        except (URLError, OSError, HTTPException):
            if failures >= retries:
                raise
            failures += 1
            pause = HTTP_BACKOFF.delay(failures, draw)
        sleep(pause)


def open_file(request: Request, *, source: str, retries: int) -> BinaryIO:
    """The response to a file's GET, opened with :func:`read_with_retries`, to stream from.

    Raises:
        OSError: naming the source tracker and the URL (what the run reports
            as an unreadable file).
    """
    url = request.full_url

    def fetch() -> BinaryIO:
        return cast("BinaryIO", urlopen(request, timeout=120))

    try:
        return read_with_retries(fetch, retries=retries)
    except HTTPError as exc:
        raise OSError(f"{source} answered {exc.code} for {url}") from exc
    except (URLError, HTTPException) as exc:
        raise OSError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
