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

import io
import os
import random
import time
from collections.abc import Callable, Mapping
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import BinaryIO, TypeVar, cast
from urllib.error import HTTPError, URLError
from urllib.request import OpenerDirector, Request, urlopen

from bugless_core.backoff import Backoff
from bugless_core.errors import InvalidArgument

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
    # ASCII digits only: str.isdigit also takes "²", which int refuses.
    if not (option.isascii() and option.isdigit()) or int(option) > 10:
        msg = f"retries={option!r}: give a whole number of retries from 0 to 10"
        raise ValueError(msg)
    return int(option)


def secret_option(options: Mapping[str, str], option: str, env: str = "") -> str:
    """The secret in the file an importer's ``--option OPTION=PATH`` names, else in ``env``.

    Tokens, API keys and passwords come as files (or environment variables),
    never on the command line. A file that cannot be read is the command's
    own input, like its other files: InvalidArgument naming the option and
    the file, marked as the client's (``origin``), so ``bugless import``
    exits 2 with one line rather than 1, or a traceback.

    Returns:
        The file's text without surrounding white space; ``env``'s value
        without a file; "" for neither.
    """
    path = options.get(option, "")
    if not path:
        return os.environ.get(env, "").strip() if env else ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidArgument(
            f"--option {option}={path}: {why}", metadata={"field": option, "origin": "client"}
        ) from exc


def _retry_after(error: HTTPError) -> float | None:
    """The pause a 429/503 asks for in seconds (only the delta-seconds form)."""
    value = error.headers.get("Retry-After") if error.headers else None
    if value is None or not (value.strip().isascii() and value.strip().isdigit()):
        return None  # a date, or no number (the server's to write: "²" passed isdigit)
    return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)


def read_with_retries(
    fetch: Callable[[], T],
    *,
    retries: int = DEFAULT_RETRIES,
    spent: int = 0,
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
        spent: How many of those were spent already (a download asked
            again after its body broke off): the budget is the request's.
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
    failures = spent
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


class Interrupted(OSError):
    """A download's body broke off (the connection dropped after some bytes).

    Its bytes so far are not the file: the reader discards what it made of
    them and, while the request's retries last, calls :attr:`again` to read
    the file from its start (None: none left).
    """

    def __init__(self, message: str, again: Callable[[], BinaryIO] | None) -> None:
        """``message`` names the URL and the bytes read; ``again`` restarts the download."""
        super().__init__(message)
        self.again = again


class Download(io.RawIOBase):
    """A file's HTTP response, read as it comes; a body that breaks off is :class:`Interrupted`.

    The GET's retries (:func:`read_with_retries`) cover the answer, not its
    body: a connection dropped after some bytes (a body short of its
    ``Content-Length``, ``IncompleteRead`` in a chunked one, a reset, a
    timeout) left the file out of the import. The reader has sent those bytes on (the
    Model's upload stream), so they cannot simply be continued here; it is
    told, and asks for the whole file again, within the same budget of
    retries, the pause growing as for any other failure.
    """

    def __init__(
        self,
        request: Request,
        *,
        source: str,
        retries: int,
        opener: OpenerDirector | None = None,
    ) -> None:
        """GET ``request`` (with retries); raises OSError naming ``source`` and the URL.

        ``opener``: the source's own (Roundup's keeps its session cookie),
        else urllib's default.
        """
        super().__init__()
        self.request, self.source, self.retries = request, source, retries
        self._open = opener.open if opener is not None else urlopen
        #: GETs sent so far: each one that did not give a whole file spent a retry.
        self.attempts = 0
        self.received = 0
        self.response = self._get(spent=0)

    @property
    def length(self) -> int | None:
        """The bytes the answer still has to give, if it said (``Content-Length``)."""
        return self.response.length

    def _get(self, spent: int) -> HTTPResponse:
        url = self.request.full_url

        def fetch() -> HTTPResponse:
            self.attempts += 1
            return cast("HTTPResponse", self._open(self.request, timeout=120))

        try:
            return read_with_retries(fetch, retries=self.retries, spent=spent)
        except HTTPError as exc:
            raise OSError(f"{self.source} answered {exc.code} for {url}") from exc
        except (URLError, HTTPException) as exc:
            raise OSError(f"{url}: {getattr(exc, 'reason', exc)}") from exc

    def again(self) -> BinaryIO:
        """The file from its start: a new GET after the pause the failures so far earn."""
        self.response.close()
        time.sleep(HTTP_BACKOFF.delay(self.attempts, random.random))
        self.received = 0
        self.response = self._get(spent=self.attempts)
        return cast("BinaryIO", self)

    def readable(self) -> bool:
        """A download is read, never written or sought."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Up to ``len(buffer)`` bytes of the body; raises :class:`Interrupted` if it broke off.

        ``http.client`` reads a body that ends short of its ``Content-Length``
        as a plain end (its comment: raising would break compatibility):
        that end is a break here, to be read again (the Model refuses an
        upload shorter than its declared size, so the file was left out).
        """
        try:
            count = self.response.readinto(buffer)
            if not count and len(buffer) and self.response.length:
                why = f"{self.response.length} bytes short of its Content-Length"
                raise Interrupted(self._broken(why), self._again())
        except (HTTPException, OSError) as exc:
            if isinstance(exc, Interrupted):
                raise
            raise Interrupted(self._broken(type(exc).__name__), self._again()) from exc
        self.received += count
        return count

    def _broken(self, why: str) -> str:
        return f"{self.request.full_url}: the body broke off after {self.received} bytes ({why})"

    def _again(self) -> Callable[[], BinaryIO] | None:
        """:meth:`again` while retries are left (every GET so far failed, this one too)."""
        return self.again if self.attempts <= self.retries else None

    def close(self) -> None:
        """Close the response (and its connection)."""
        self.response.close()
        super().close()


def open_file(
    request: Request, *, source: str, retries: int, opener: OpenerDirector | None = None
) -> BinaryIO:
    """The file ``request`` GETs (through ``opener``, if given), streamed: a :class:`Download`.

    Raises:
        OSError: naming the source tracker and the URL (what the run reports
            as an unreadable file).
    """
    return cast("BinaryIO", Download(request, source=source, retries=retries, opener=opener))
