"""Which of a request's calls may have written: what "make the whole request again" rests on.

A frontend that answers a refusal of its caller's ended session with "make
the call again" (the API's ``SESSION_RENEWED``) may say so only when nothing
else the request sent may have been applied: reads do not count (running one
again changes nothing, :func:`bugless_core.reads.only_reads`), nor do writes
refused for their assertion (refused before they ran). The frontend sets a
:class:`CallTally` around each request (:data:`CALL_TALLY`); the gRPC client
(:mod:`bugless_core.clients`) counts each call as it is sent with the
caller's assertion (:func:`count_sent`) and takes a refused one off again
(:func:`uncount_if_refused`), and the frontend asks :func:`refused_alone`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from bugless_core.errors import BuglessError, Unauthenticated
from bugless_core.reads import only_reads

#: Reasons a service refuses the identity assertion a call carried with, before
#: running the call (the Model checks the assertion before it reads the request):
#: the session it was issued for has ended, or it is signed with a key the
#: Authenticator no longer publishes (a rotation dropped it while the frontend
#: still held the assertion). Such a call applied nothing, so it may be sent
#: again with a new assertion (``bugless_core.clients.ASSERTION_RENEWAL``).
ASSERTION_REFUSALS = frozenset({"SESSION_ENDED", "INVALID_ASSERTION"})


@dataclass
class CallTally:
    """How many writes one request's handling sent that may have been applied (:data:`CALL_TALLY`).

    A call carrying the caller's assertion is counted as it is sent
    (:func:`count_sent`), to any service, unless it only reads (a look-up
    made first, a username for an assignee, is harmless to repeat); one the
    service refused for its assertion (:data:`ASSERTION_REFUSALS`, refused
    before it ran) is taken off again (:func:`uncount_if_refused`). A
    renewal's own calls (asking the Authenticator for a new session) are not
    counted (:func:`renewing`): they are part of the call they renew, whose
    second sending is counted as any call is.
    """

    writes: int = 0


@dataclass
class _Sending:
    """The call being made inside :func:`sending`: whether it was counted as a write."""

    write: bool = False


#: The tally of the request being handled, set by a frontend that answers a
#: refusal of its caller's ended session with "make the call again" (the API's
#: SESSION_RENEWED): that answer is safe only if nothing else of the request
#: may have written (:func:`refused_alone`). None: nothing is counted.
CALL_TALLY: ContextVar[CallTally | None] = ContextVar("bugless_call_tally", default=None)
#: True while a call's assertion is renewed (the renewal's own calls are not counted).
_RENEWING: ContextVar[bool] = ContextVar("bugless_renewing", default=False)
#: The call being made inside :func:`sending` (None outside one).
_SENDING: ContextVar[_Sending | None] = ContextVar("bugless_sending", default=None)


def count_sent(route: str) -> None:
    """Count a call of ``route`` sent with the caller's assertion, unless it only reads.

    A write sent outside :func:`sending` stays counted: nothing could take it off.
    """
    tally = CALL_TALLY.get()
    if tally is None or _RENEWING.get() or only_reads(route):
        return
    tally.writes += 1
    call = _SENDING.get()
    if call is not None:
        call.write = True


def reset_var(var: ContextVar[Any], token: Token[Any]) -> None:
    """``var.reset(token)``, except where the block is left in another context.

    An async generator that makes a call inside :func:`sending` or
    :func:`bugless_core.clients.call_errors` (a download's stream) and is
    closed by the event loop's finalizer, not by its reader (a transfer cut
    at shutdown), leaves those blocks in a context of its own: the token
    belongs to the reader's context, ``reset`` raises ValueError, and the
    finalizer logs it as a traceback. There is nothing to restore then: the
    value was set in the reader's context, which ends with its request.
    """
    try:
        var.reset(token)
    except ValueError:
        if token.var is not var:  # a bug, not another context
            raise


@contextmanager
def sending() -> Iterator[None]:
    """The block makes one call, which :func:`uncount_if_refused` may take off the tally."""
    reset = _SENDING.set(_Sending())
    try:
        yield
    finally:
        reset_var(_SENDING, reset)


@contextmanager
def renewing() -> Iterator[None]:
    """The calls made in the block renew an assertion: none of them is counted."""
    reset = _RENEWING.set(True)
    try:
        yield
    finally:
        reset_var(_RENEWING, reset)


def uncount_if_refused(error: BuglessError) -> None:
    """Take the write of the current :func:`sending` block off the tally if it was refused unrun."""
    call = _SENDING.get()
    tally = CALL_TALLY.get()
    if (
        isinstance(error, Unauthenticated)
        and error.reason in ASSERTION_REFUSALS
        and call is not None
        and call.write
        and tally is not None
    ):
        tally.writes -= 1
        call.write = False


def refused_alone() -> bool:
    """Whether nothing the request being handled sent may have written.

    A refusal of :data:`ASSERTION_REFUSALS` means the refused call ran
    nothing; but a request that sent a write before it (or beside it) may
    have applied that one, so making the whole request again could apply it
    twice. Reads do not count (running one again changes nothing), nor do
    writes refused so: only when no write may have been applied may the
    request be answered "make it again" (:data:`CALL_TALLY`).
    """
    tally = CALL_TALLY.get()
    return tally is not None and tally.writes <= 0


__all__ = [
    "ASSERTION_REFUSALS",
    "CALL_TALLY",
    "CallTally",
    "count_sent",
    "refused_alone",
    "renewing",
    "reset_var",
    "sending",
    "uncount_if_refused",
]
