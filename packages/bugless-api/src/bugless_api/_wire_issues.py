"""Issues passed from the Model to a bot in their wire form, usernames put in.

A coalesced CreateIssue or GetIssue gets its issue out of the Model's
``BatchCreateIssuesResponse`` or ``BatchGetIssuesResponse``. Turned into
betterproto2 objects and back, an issue cost the API ~11 µs to decode (its
timestamps become ``datetime``) and ~6 µs to encode again, for the one change
the gateway makes to it: user ids become usernames. Here the reply is parsed
by upb (C, ~0.4 µs an issue), the people are renamed in the upb message, and
the issue goes to the bot as the bytes upb writes: the same message a
betterproto2 round trip would send.

This module and :class:`bugless_api._users.UserRefs` both know which fields
of an :class:`~bugless_proto.v1.Issue` hold people (see ``common.proto``); a
new user field of ``Issue`` needs a line in both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bugless_core.clients import call
from bugless_proto import v1, wire

#: The upb class a ``BatchCreateIssuesResponse`` is parsed into.
BATCH_CREATE_REPLY: type[Any] = wire.upb_class(v1.BatchCreateIssuesResponse)
#: The upb class a ``BatchGetIssuesResponse`` is parsed into.
BATCH_GET_REPLY: type[Any] = wire.upb_class(v1.BatchGetIssuesResponse)
_USER = int(v1.CustomFieldType.USER)
_BATCH_CREATE_ROUTE = "/bugless.v1.Model/BatchCreateIssues"
_BATCH_GET_ROUTE = "/bugless.v1.Model/BatchGetIssues"


async def batch_get_issues(
    model: v1.ModelStub, request: v1.BatchGetIssuesRequest, *, deadline_seconds: float | None
) -> Any:
    """The Model's ``BatchGetIssues``, its reply parsed by upb (:data:`BATCH_GET_REPLY`)."""
    return await _upb_call(model, _BATCH_GET_ROUTE, request, BATCH_GET_REPLY, deadline_seconds)


async def batch_create_issues(
    model: v1.ModelStub, request: v1.BatchCreateIssuesRequest, *, deadline_seconds: float | None
) -> Any:
    """The Model's ``BatchCreateIssues``, its reply parsed by upb (:data:`BATCH_CREATE_REPLY`)."""
    route, reply_class = _BATCH_CREATE_ROUTE, BATCH_CREATE_REPLY
    return await _upb_call(model, route, request, reply_class, deadline_seconds)


async def _upb_call(
    model: v1.ModelStub,
    route: str,
    request: v1.BatchGetIssuesRequest | v1.BatchCreateIssuesRequest,
    reply_class: type[Any],
    deadline_seconds: float | None,
) -> Any:
    # The stub's own unary sender with upb's reply class: the same channel,
    # interceptors, deadline and error mapping as its generated methods.
    return await call(model._unary_unary, route, request, reply_class, timeout=deadline_seconds)


class EncodedIssue(v1.Issue):
    """An ``Issue`` reply that is its wire form only; grpclib's codec sends the bytes.

    Made without betterproto2's ``__init__`` (~0.3 µs against ~5 µs): its
    fields do not exist, so reading one (or comparing two) raises
    ``AttributeError`` rather than showing an empty issue. Code in this
    process reads it through :meth:`decoded`; a handler returns it as it is.
    """

    _encoded: bytes

    @classmethod
    def of(cls, encoded: bytes) -> EncodedIssue:
        """The issue whose wire form is ``encoded``."""
        issue = cls.__new__(cls)
        object.__setattr__(issue, "_encoded", encoded)
        return issue

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, called by the codec
        """The wire form, as the Model wrote it with usernames put in."""
        encoded: bytes = object.__getattribute__(self, "_encoded")
        return encoded

    __bytes__ = SerializeToString

    def decoded(self) -> v1.Issue:
        """The issue as a betterproto2 ``Issue`` (for tests and in-process readers)."""
        return wire.decode(v1.Issue, self.SerializeToString())

    def __repr__(self) -> str:
        """Says what it is; the fields are not filled (see the class docstring)."""
        return f"EncodedIssue({len(self.SerializeToString())} bytes)"


def people_of(issues: Iterable[Any]) -> set[str]:
    """The user ids of upb ``Issue`` messages: reporter, assignee, verifier, cc, USER values."""
    found: set[str] = set()
    for issue in issues:
        found.update((issue.reporter, issue.assignee, issue.verifier))
        found.update(issue.cc)
        for value in issue.custom_fields:
            if value.type == _USER:
                found.update(value.values)
    found.discard("")
    return found


def rename(issue: Any, names: Mapping[str, str]) -> None:
    """Put usernames for the user ids of a upb ``Issue``; ids ``names`` lacks stay as they are."""
    for attribute in ("reporter", "assignee", "verifier"):
        name = names.get(getattr(issue, attribute))
        if name is not None:
            setattr(issue, attribute, name)
    _rename_items(issue.cc, names)
    for value in issue.custom_fields:
        if value.type == _USER:
            _rename_items(value.values, names)


def _rename_items(values: Any, names: Mapping[str, str]) -> None:
    for index, user_id in enumerate(values):
        name = names.get(user_id)
        if name is not None:
            values[index] = name
