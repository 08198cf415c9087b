"""Model replies passed to a bot in their wire form, usernames put in.

Every reply of the Issues service carrying issues or history entries is the
Model's reply with one change: user ids become usernames. Turned into
betterproto2 objects and back, an issue cost the API ~11 µs to decode (its
timestamps become ``datetime``) and ~6 µs to encode again: 586 µs for a
50-issue search page. Here the reply is parsed by upb (C, ~0.4 µs an issue),
the people are renamed in the upb message, and the reply goes to the bot as
the bytes upb writes (:func:`bugless_proto.wire.encoded`): the same message
a betterproto2 round trip would send.

* :class:`NamedReply`: SearchIssues, BatchGetIssues, ListHistory, the calls
  answering a ``ChangeIssueResponse`` or ``BatchChangeIssuesResponse``,
  GetIssue and CreateIssue when not coalesced, and the attachment calls'
  metadata (GetAttachment, ListAttachments, UploadAttachment).
  A reply upb refuses to parse is read by betterproto2 instead (as the codec
  would) and renamed by the same walkers, so it is answered as before.
* :data:`BATCH_GET_ISSUES`, :data:`BATCH_CREATE_ISSUES` also fetch the
  coalesced GetIssue's and CreateIssue's batches (``_coalesce``,
  ``_coalesce_create``), which name each batch's people with one look-up
  (the creator through :meth:`NamedReply.rename`, the reader issue by issue
  with :func:`issue_slots` and :func:`put_names`) and answer each call with
  its issue (:func:`as_sent`).

Which fields hold people is read from the ``*_PEOPLE``/``*_PERSON`` tuples of
:mod:`bugless_api._users`, which :class:`~bugless_api._users.UserRefs` reads
too: a new people field of these messages is one line there. The walkers
work on upb and betterproto2 messages alike (the field names are the
proto's, enum values compare as ints).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, MutableSequence
from typing import Any, Generic, TypeVar

import betterproto2
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as UpbMessage

from bugless_api._users import (
    ATTACHMENT_PERSON,
    CHANGE_PEOPLE,
    CHANGE_PERSON,
    ENTRY_PERSON,
    ISSUE_PEOPLE,
    ISSUE_PERSON,
    USER_TYPE,
    UserDirectory,
)
from bugless_core.clients import call, call_errors
from bugless_core.failover import upload_again_if_refused
from bugless_core.issue_labels import holds_people
from bugless_proto import v1, wire

M = TypeVar("M", bound=betterproto2.Message)

_MODEL = "/bugless.v1.Model/"


#: Where a reply names a person: ``(message, field name, user id)`` or
#: ``(repeated field, index, user id)``.
Slot = tuple[Any, str | int, str]


def as_sent(message_class: type[M], message: Any) -> M:
    """A message of a parsed reply as the bot gets it: a upb one as its bytes, else as it is."""
    if isinstance(message, UpbMessage):
        return wire.encoded(message_class, message.SerializeToString())
    sent: M = message
    return sent


def has_message(message: Any, name: str) -> bool:
    """Whether the message field ``name`` of a upb or betterproto2 message is set.

    upb reads an unset message field as an empty message, betterproto2 as None.
    """
    if isinstance(message, UpbMessage):
        return bool(message.HasField(name))
    return getattr(message, name) is not None


def put_names(slots: Iterable[Slot], names: Mapping[str, str]) -> None:
    """Write the username of each slot's id in its place; ids ``names`` lacks stay."""
    for target, key, user_id in slots:
        name = names.get(user_id)
        if name is not None:
            if isinstance(key, int):
                target[key] = name
            else:
                setattr(target, key, name)


# The walkers read each repeated field only when it is not empty, and as a
# slice: iterating a upb container costs ~0.5 µs an element, slicing it a
# third of that, and most repeated fields of an issue are empty.


def issue_slots(issue: Any, slots: list[Slot]) -> None:
    """Add the people of an ``Issue`` (upb or betterproto2) to ``slots``."""
    _person_slots(issue, ISSUE_PERSON, slots)
    for attribute in ISSUE_PEOPLE:
        _people_slots(getattr(issue, attribute), slots)
    custom = issue.custom_fields
    if custom:
        for value in custom:
            if value.type == USER_TYPE:
                _people_slots(value.values, slots)


def entry_slots(entry: Any, slots: list[Slot]) -> None:
    """:func:`issue_slots` of a ``HistoryEntry``: author, attachments, people changes."""
    _person_slots(entry, ENTRY_PERSON, slots)
    attachments = entry.attachments
    if attachments:
        for attachment in attachments:
            attachment_slots(attachment, slots)
    changes = entry.changes
    if changes:
        for change in changes:
            if holds_people(change):
                _person_slots(change, CHANGE_PERSON, slots)
                for attribute in CHANGE_PEOPLE:
                    _people_slots(getattr(change, attribute), slots)


def _person_slots(message: Any, attributes: tuple[str, ...], slots: list[Slot]) -> None:
    for attribute in attributes:
        user_id = getattr(message, attribute)
        if user_id:
            slots.append((message, attribute, user_id))


def _people_slots(values: MutableSequence[str], slots: list[Slot]) -> None:
    if values:
        for index, user_id in enumerate(values[:]):
            if user_id:
                slots.append((values, index, user_id))


def attachment_slots(attachment: Any, slots: list[Slot]) -> None:
    """Add the people of an ``Attachment`` (its uploader) to ``slots``."""
    _person_slots(attachment, ATTACHMENT_PERSON, slots)


def _issues_of(reply: Any, slots: list[Slot]) -> None:
    for issue in reply.issues:
        issue_slots(issue, slots)


def _entries_of(reply: Any, slots: list[Slot]) -> None:
    for entry in reply.entries:
        entry_slots(entry, slots)


# A upb message's unset message field reads as an empty message (it names
# nobody, so nothing is written to it and it stays unset); betterproto2's as None.
def _change_of(reply: Any, slots: list[Slot]) -> None:
    if reply.issue is not None:
        issue_slots(reply.issue, slots)
    if reply.entry is not None:
        entry_slots(reply.entry, slots)


def _attachments_of(reply: Any, slots: list[Slot]) -> None:
    for attachment in reply.attachments:
        attachment_slots(attachment, slots)


def _upload_of(reply: Any, slots: list[Slot]) -> None:
    if reply.attachment is not None:
        attachment_slots(reply.attachment, slots)
    _change_of(reply, slots)


def _results_of(reply: Any, slots: list[Slot]) -> None:
    for result in reply.results:
        if result.issue is not None:
            issue_slots(result.issue, slots)


class NamedReply(Generic[M]):
    """A Model call whose reply goes to the bot as its wire form, people renamed.

    Args:
        message_class: The reply's class.
        method: The Model method's name (``SearchIssues``).
        people: Adds the people of a reply (upb or betterproto2) to a list of slots.
    """

    def __init__(
        self, message_class: type[M], method: str, people: Callable[[Any, list[Slot]], None]
    ) -> None:
        """A reply of ``method``, of ``message_class``, its people found by ``people``."""
        self.message_class = message_class
        self.route = _MODEL + method
        self.people = people
        self._upb_class = wire.upb_class(message_class)
        # What grpclib's codec reads the reply with (``FromString``, see
        # bugless_core.grpc's UpbCodec).
        namespace = {"FromString": staticmethod(self.parse)}
        self.reply_type: type[Any] = type(f"{message_class.__name__}Reply", (), namespace)

    def parse(self, data: bytes) -> Any:
        """The reply as a upb message, or betterproto2's when upb refuses the bytes."""
        try:
            return self._upb_class.FromString(data)
        except DecodeError:  # betterproto2's reading (or its error), as the codec's
            return wire.decode(self.message_class, data)

    async def fetch(
        self, model: v1.ModelStub, request: betterproto2.Message, *, deadline_seconds: float | None
    ) -> Any:
        """The Model's reply to ``request`` as :meth:`parse` reads it, people not renamed.

        Errors are the Model call's, mapped as :func:`bugless_core.clients.call`
        maps them for the stub's generated methods: the stub's own unary
        sender with another reply class (the same channel, interceptors,
        deadline and error mapping as its generated methods).
        """
        send = model._unary_unary
        return await call(send, self.route, request, self.reply_type, timeout=deadline_seconds)

    async def call_streamed(
        self,
        model: v1.ModelStub,
        users: UserDirectory,
        requests: AsyncIterator[v1.UploadAttachmentRequest],
    ) -> M:
        """:meth:`call` of the upload (a client stream), with the Model stub's timeout.

        Sent by :func:`bugless_core.failover.upload_again_if_refused`: the
        Model may answer before the upload has ended (a missing issue, a
        declared size over the limit), and that status is the error raised;
        an upload a draining Model refused is sent once more, what had gone
        out included, on a new connection.
        """
        with call_errors("a backend service is unreachable"):
            reply = await upload_again_if_refused(
                model, requests, self.reply_type, route=self.route
            )
        return await self.named(reply, users)

    async def call(
        self,
        model: v1.ModelStub,
        users: UserDirectory,
        request: betterproto2.Message,
        *,
        deadline_seconds: float | None,
    ) -> M:
        """The Model's reply to ``request``, usernames put in, to return to the bot."""
        reply = await self.fetch(model, request, deadline_seconds=deadline_seconds)
        return await self.named(reply, users)

    async def rename(self, reply: Any, users: UserDirectory) -> None:
        """Put usernames for the user ids of ``reply`` (from :meth:`parse`), in place.

        One walk and one ``usernames_by_id`` for all its people, none when it
        names nobody; an id the Authenticator does not know stays an id (as
        :meth:`UserDirectory.to_usernames` leaves it).
        """
        slots: list[Slot] = []
        self.people(reply, slots)
        if slots:
            put_names(slots, await users.usernames_by_id({user_id for _, _, user_id in slots}))

    async def named(self, reply: Any, users: UserDirectory) -> M:
        """``reply`` (from :meth:`parse`) renamed (:meth:`rename`), as sent (:func:`as_sent`)."""
        await self.rename(reply, users)
        return as_sent(self.message_class, reply)


SEARCH_ISSUES = NamedReply(v1.SearchIssuesResponse, "SearchIssues", _issues_of)
BATCH_GET_ISSUES = NamedReply(v1.BatchGetIssuesResponse, "BatchGetIssues", _issues_of)
LIST_HISTORY = NamedReply(v1.ListHistoryResponse, "ListHistory", _entries_of)
CHANGE_ISSUE = NamedReply(v1.ChangeIssueResponse, "ChangeIssue", _change_of)
EDIT_COMMENT = NamedReply(v1.ChangeIssueResponse, "EditComment", _change_of)
REDACT = NamedReply(v1.ChangeIssueResponse, "Redact", _change_of)
DELETE_ATTACHMENT = NamedReply(v1.ChangeIssueResponse, "DeleteAttachment", _change_of)
BATCH_CHANGE_ISSUES = NamedReply(v1.BatchChangeIssuesResponse, "BatchChangeIssues", _results_of)
BATCH_CREATE_ISSUES = NamedReply(v1.BatchCreateIssuesResponse, "BatchCreateIssues", _results_of)
CREATE_ISSUE = NamedReply(v1.Issue, "CreateIssue", issue_slots)
GET_ISSUE = NamedReply(v1.Issue, "GetIssue", issue_slots)
GET_ATTACHMENT = NamedReply(v1.Attachment, "GetAttachment", attachment_slots)
LIST_ATTACHMENTS = NamedReply(v1.ListAttachmentsResponse, "ListAttachments", _attachments_of)
UPLOAD_ATTACHMENT = NamedReply(v1.UploadAttachmentResponse, "UploadAttachment", _upload_of)
