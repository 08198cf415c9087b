"""The Model's caller comes from the signed assertion, never from the request.

Every request message with a ``caller`` field gets it replaced, before its
handler sees it, by what the verified identity assertion in the call's
``bugless-assertion`` metadata says (:class:`~bugless_core.assertions.AssertionVerifier`).
A call without an assertion is anonymous (an empty caller: public reads only,
as for a signed-out visitor); one with an invalid, expired, foreign or revoked
assertion is refused with UNAUTHENTICATED. So a ``Caller{admin: true}`` that
no signed assertion backs does nothing.

A scoped assertion (``scp``, :class:`~bugless_core.assertions.Scope`: the one
a one-click unsubscribe link is redeemed for) is checked here too, the one
place every call with a caller passes: for another method it is refused
before the request is read, and a request whose scoped fields differ (another
issue, ``muted=false``) is refused as it is received, both with
PERMISSION_DENIED saying why, before the handler sees the request. That holds
for every method, whatever its request type: a method whose requests carry no
caller (``GetServerInfo``) does not act for a person and ignores an unscoped
assertion, but one whose header says it is scoped is verified and refused
there like anywhere outside its scope, so what a scoped assertion is good for
never depends on which request types happen to name a caller.

One exception, :data:`SYSTEM_READERS`: the notifier reads the whole change
feed and checks each recipient's view of an issue (``Caller`` of that
recipient) without holding their sessions. A call of its service identity
without an assertion keeps the caller it names; its ACCESS rows make it
read-only, so what a compromised notifier can do is read, which reading the
whole feed already implies. The groups such a caller names are dropped: a
group list is only believed from a signed assertion, so the notifier checks
a recipient who may see a component through a group with that recipient's
assertion (``IssueAssertion``; ``GetNotificationViews`` takes one per
recipient), and with an assertion its calls are checked like anyone's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from grpclib.const import Handler
from grpclib.server import Stream

from bugless_core.assertions import (
    METADATA_KEY,
    AssertionClaims,
    AssertionVerifier,
    names_scoped_type,
)
from bugless_core.grpc import current_identity, current_metadata, handler_errors
from bugless_proto import v1

_Func = Callable[[Stream[Any, Any]], Awaitable[None]]

#: Service identities whose calls without an assertion keep their request's
#: caller (read-only by their ACCESS rows): the notifier.
SYSTEM_READERS = frozenset({"notify"})


async def _verified_claims(
    verifier: AssertionVerifier, *, scoped_only: bool = False
) -> AssertionClaims | None:
    """The verified assertion of the current call; ``None`` without one.

    With ``scoped_only`` (a method without a caller) an assertion whose
    header does not say it is scoped is not verified and counts as none.
    """
    assertion = current_metadata().get(METADATA_KEY)
    if not assertion or not isinstance(assertion, str):
        return None
    if scoped_only and not names_scoped_type(assertion):
        return None
    return await verifier.claims(assertion)


def _has_caller(request_type: Any) -> bool:
    """Whether requests carry a caller, at the top or in a stream's ``header``."""
    return dataclasses.is_dataclass(request_type) and any(
        field.name in ("caller", "header") for field in dataclasses.fields(request_type)
    )


def _replace_caller(message: Any, caller: v1.Caller) -> None:
    if hasattr(message, "caller"):
        message.caller = caller
        return
    # A client stream (UploadAttachment) names its caller in its first
    # message's header; the other messages carry no caller.
    header = getattr(message, "header", None)
    if header is not None and hasattr(header, "caller"):
        header.caller = caller


def _drop_groups(message: Any) -> None:
    """A system reader's own caller, without the groups it names (never believed)."""
    caller = getattr(message, "caller", None)
    if isinstance(caller, v1.Caller):
        caller.groups = []


def _replacing_caller(
    name: str, func: _Func, verifier: AssertionVerifier, *, has_caller: bool
) -> _Func:
    method = name.rsplit("/", 1)[-1]

    async def handle(stream: Stream[Any, Any]) -> None:
        with handler_errors(name):
            claims = await _verified_claims(verifier, scoped_only=not has_caller)
            scope = claims.scope if claims is not None else None
            if scope is not None:
                scope.check_method(method)  # refused before the request is read
            if claims is not None:
                caller: v1.Caller | None = claims.caller()
            else:
                caller = None if current_identity() in SYSTEM_READERS else v1.Caller()
        if scope is None and not has_caller:
            await func(stream)  # nothing to check or replace in its messages
            return
        receive = stream.recv_message

        async def recv_message() -> Any:
            message = await receive()
            if message is None:
                return message
            if scope is not None:
                with handler_errors(name):
                    scope.check_request(message)
            if caller is not None:
                _replace_caller(message, caller)
            else:
                _drop_groups(message)
            return message

        stream.recv_message = recv_message  # type: ignore[method-assign]
        await func(stream)

    return handle


def with_verified_callers(
    handlers: Mapping[str, Handler], verifier: AssertionVerifier
) -> dict[str, Handler]:
    """``handlers`` with every call's assertion checked first.

    The caller of every request that has one is taken from its assertion;
    a scoped assertion is refused on every method outside its scope, whether
    or not the method's requests carry a caller.
    """
    return {
        name: Handler(
            _replacing_caller(
                name, handler.func, verifier, has_caller=_has_caller(handler.request_type)
            ),
            *handler[1:],
        )
        for name, handler in handlers.items()
    }
