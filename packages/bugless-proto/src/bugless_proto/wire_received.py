"""Received messages that keep the upb message they were read from.

A server that keys on a request's wire form (the Model's search page: its
compiled plan and its page tokens' fingerprint are keyed by the query's
encoded bytes, :mod:`bugless_model_postgres._search_plans`) would otherwise
encode the decoded request again: 4-23 µs a page on the 1,000,000-issue
benchmark's queries (bench/JOURNAL.md, "Session 12"), against ~1 µs for upb
to write a part of the message it read. For the classes :func:`keep_received`
names, the gRPC codec (``bugless_core.grpc.UpbCodec``) decodes through
:func:`decode`, which keeps the upb message in the decoding task's context;
:func:`received_form` hands it back for that message. grpclib decodes a
request in the task that then runs its handler, so the handler and what it
calls can ask. Every other class decodes as before, and a message made any
other way (in process, or read through betterproto2 because it carried
unknown fields) has no received form.
"""

from __future__ import annotations

from collections.abc import Set
from contextvars import ContextVar
from typing import TypeVar

import betterproto2
from google.protobuf.message import Message as UpbMessage

from bugless_proto import wire

M = TypeVar("M", bound=betterproto2.Message)

_KEPT: set[type] = set()
#: The classes whose decoded messages keep their upb form (read-only here).
KEPT: Set[type] = _KEPT
#: The last message of a kept class decoded in this context, and its upb form.
_RECEIVED: ContextVar[tuple[object, UpbMessage] | None] = ContextVar(
    "bugless_proto.wire_received", default=None
)


def keep_received(cls: type[betterproto2.Message]) -> None:
    """Keep the upb form of the ``cls`` messages the codec decodes from now on.

    Meant for a server's request class: only the last kept message of a
    task is kept, until the task ends (or the next one is decoded), so name
    classes that arrive once per call.
    """
    _KEPT.add(cls)


def decode(cls: type[M], data: bytes) -> M:
    """:func:`bugless_proto.wire.decode`, keeping the upb message read (if upb read it)."""
    message, upb = wire.plan(cls).decode_kept(data)
    if upb is not None:
        _RECEIVED.set((message, upb))
    return message  # type: ignore[return-value]  # the plan of cls decodes a cls


def received_form(message: object) -> UpbMessage | None:
    """The upb message ``message`` was decoded from, if :func:`decode` read it in this context.

    None for a message made otherwise, or not the last kept one decoded
    here. The upb message is as received: it does not follow changes made to
    ``message`` since (the Model's only change to a request is its caller,
    from the call's identity assertion; ``bugless_core.model._callers``).
    """
    kept = _RECEIVED.get()
    if kept is None or kept[0] is not message:
        return None
    return kept[1]
