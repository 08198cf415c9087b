"""``bugless.v1.Issues`` for bots: the Model's issue calls, by username, as the caller.

Every handler does the same three things around one Model call: set the
caller from the certificate's identity (refusing a caller the client set),
turn usernames in the request into user ids, and turn user ids in the response
back into usernames, each direction in one batch look-up. Searches also take
the query language, parsed here with the shared parser so that a syntax error
points at its column.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import zoneinfo
from collections.abc import AsyncIterator
from typing import ClassVar, TypeVar

import betterproto2

from bugless_api._custom_users import delta_components, sets_values, user_field_ids
from bugless_api._gateway import Gateway, GatewayService, caller_of
from bugless_api._identity import current_identity
from bugless_api._idle import (
    IdleRelease,
    WatchStalled,
    first_message_within,
    model_message_within,
)
from bugless_api._users import UserRefs
from bugless_api._viewer_checks import check_issue_viewers
from bugless_api._wire_issues import (
    BATCH_CHANGE_ISSUES,
    BATCH_GET_ISSUES,
    CHANGE_ISSUE,
    CREATE_ISSUE,
    DELETE_ATTACHMENT,
    EDIT_COMMENT,
    GET_ATTACHMENT,
    GET_ISSUE,
    LIST_ATTACHMENTS,
    LIST_HISTORY,
    REDACT,
    SEARCH_ISSUES,
    UPLOAD_ATTACHMENT,
    NamedReply,
)
from bugless_core import limits
from bugless_core.clients import call_errors, call_renewing, resolve_query
from bugless_core.errors import BuglessError, DownloadStalled, InvalidArgument, Unavailable
from bugless_core.failover import MODEL_DOWNLOAD_ROUTE, MODEL_WATCH_ROUTE, open_again_if_refused
from bugless_core.grpc import ANY_CLIENT, AccessTable, every_method
from bugless_core.people_hints import unknown_names, with_people_hint
from bugless_core.search import QuerySyntaxError, parse_query, refused_part, required_user_terms
from bugless_core.search.build import all_of
from bugless_proto import v1

M = TypeVar("M", bound=betterproto2.Message)

#: What an IANA zone name looks like (``America/Argentina/Buenos_Aires``, ``Etc/GMT+12``).
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_MAX_ZONE_NAME = 64


def time_zone(name: str) -> datetime.tzinfo | None:
    """The zone a request's ``time_zone`` names; ``None`` (UTC) when it is empty.

    A bot asks for ``created>today-7`` in its own day, as the web does with the
    browser's zone; a name the server does not know is the caller's mistake,
    said as such rather than silently counted in UTC.

    Raises:
        InvalidArgument: ``name`` is not a time zone this server knows.
    """
    if not name:
        return None
    if len(name) <= _MAX_ZONE_NAME and _ZONE_NAME.fullmatch(name):
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo(name)
    raise InvalidArgument(
        f"time_zone: {name[:_MAX_ZONE_NAME]!r} is not a time zone this server knows; "
        "give an IANA name such as Europe/Berlin, or leave it empty for UTC",
        metadata={"field": "time_zone"},
    )


async def structured_query(
    gateway: Gateway,
    text: str,
    structured: v1.StructuredQuery | None,
    *,
    zone: datetime.tzinfo | None = None,
) -> v1.StructuredQuery:
    """The Model query for a query string and/or a structured query (ANDed).

    ``me`` in the text is the caller. Sort keys come from the text when it
    has any, else from the structured query. Days in the text run midnight
    to midnight in ``zone`` (UTC when None).

    Raises:
        InvalidArgument: The text does not parse or names an unknown user
            (the message holds the caret rendering, the metadata the
            position), or the structured query names an unknown user.
    """
    filters: list[v1.SearchNode] = []
    order_by: list[v1.SortKey] = []
    if text.strip():
        if len(text) > limits.MAX_QUERY_LENGTH:
            raise InvalidArgument(
                f"query: {len(text)} characters is too long; at most {limits.MAX_QUERY_LENGTH}"
            )
        identity = current_identity()
        unknown: set[str] = set()
        try:
            parsed = parse_query(text)
            required = required_user_terms(parsed)

            async def people(names: list[str]) -> dict[str, v1.User]:
                # Named people from the gateway's user cache (UserDirectory): a
                # repeated search costs no LookupUsers; an unknown name is asked for.
                found = await gateway.users.users_by_name(names)
                unknown.update(unknown_names(required, found.values()))
                return found

            resolved = await resolve_query(
                parsed, gateway.auth, me=identity.user_id, zone=zone, users_by_name=people
            )
        except QuerySyntaxError as problem:
            # A username no one goes by is offered the closest ones ("a:alcie"),
            # as the web's search page does, to a person: the look-up it takes
            # (SuggestUsers) is the web's autocomplete, which a bot has no session for.
            user = identity.identity.user
            person = user is not None and not user.bot
            hinted = unknown and person
            exc = await with_people_hint(gateway.auth, problem, unknown) if hinted else problem
            raise InvalidArgument(
                f"query: {exc.message}\n{exc.render_caret()}",
                reason=exc.reason,
                metadata={**exc.metadata, "field": "query"},
            ) from problem
        except (InvalidArgument, Unavailable):
            raise
        except BuglessError as exc:
            # resolve_query reports "too many people" as a plain BuglessError.
            raise InvalidArgument(f"query: {exc.message}") from exc
        if resolved.filter is not None:
            filters.append(resolved.filter)
        order_by = list(resolved.order_by)
    if structured is not None:
        refs = UserRefs()
        refs.query(structured, "structured")
        await gateway.users.to_ids(refs)
        if structured.filter is not None:
            filters.append(structured.filter)
        if not order_by:
            order_by = list(structured.order_by)
    if not filters:
        combined = None
    elif len(filters) == 1:
        combined = filters[0]
    else:
        combined = all_of(*filters)
    return v1.StructuredQuery(filter=combined, order_by=order_by)


def refusal_in_text(text: str, refused: InvalidArgument) -> InvalidArgument:
    """The Model's refusal of a query, marked in the query string when it names a part of it.

    The Model names the part at fault by its path in the tree it was sent
    (``query.filter.all_of.nodes[1].term.values[0]: there is no component
    named 'Rockt' ...``), which a person reading a command's error does not
    know; the web marks it in the search box. Here it becomes what a syntax
    error is (``query: at column 9: ...`` and the caret under it), with the
    Model's metadata kept. A refusal naming nothing the string holds (the
    structured part's, or no query's) is returned as it came.
    """
    field = refused.metadata.get("field", "")
    if not text.strip() or not field.startswith("query."):
        return refused
    span = refused_part(parse_query(text), refused.metadata)
    if span is None:
        return refused
    problem = refused.message.removeprefix(f"{field}: ")
    located = QuerySyntaxError(text, span.start, span.end - span.start, problem)
    return InvalidArgument(
        f"query: {located.message}\n{located.render_caret()}",
        reason=refused.reason,
        metadata={**refused.metadata, **located.metadata, "field": "query"},
    )


class IssuesService(GatewayService, v1.IssuesBase):
    """Serves ``bugless.v1.Issues`` through the Model."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: the Authenticator then maps it to a user, and the Model's ACLs decide.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Issues", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def _named(self, refs: UserRefs) -> None:
        await self.gateway.users.to_usernames(refs)

    async def create_issue(self, message: v1.CreateIssueRequest) -> v1.Issue:
        """Create an issue; the reporter is the caller."""
        caller = caller_of(message)
        refs = UserRefs()
        refs.issue_fields(message.fields, "fields")
        refs.items(message.cc, "cc")
        if sets_values(message.custom_fields) and message.fields is not None:
            people = await user_field_ids(self.gateway, caller, [message.fields.component_id])
            refs.custom_values(message.custom_fields, people, "custom_fields")
        await self.gateway.users.to_ids(refs)
        creator = self.gateway.issue_creator
        if creator is not None:
            # Batched with the caller's concurrent creates; named there.
            return await creator.create(caller, message)
        return await self._wire_reply(CREATE_ISSUE, message)

    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        """One issue, if the caller may view it (NOT_FOUND otherwise).

        Valid ids go through the gateway's :class:`IssueReader`, which batches
        concurrent calls of the same caller; the Model answers the rest (and
        words the INVALID_ARGUMENT for a bad id).
        """
        caller = caller_of(message)
        reader = self.gateway.issue_reader
        if reader is not None and message.issue_id > 0:
            return await reader.get(caller, message.issue_id)
        return await self._wire_reply(GET_ISSUE, message)

    async def batch_get_issues(
        self, message: v1.BatchGetIssuesRequest
    ) -> v1.BatchGetIssuesResponse:
        """Several issues; invisible and missing ones are listed in missing_ids."""
        caller_of(message)
        return await self._wire_reply(BATCH_GET_ISSUES, message)

    async def change_issue(self, message: v1.ChangeIssueRequest) -> v1.ChangeIssueResponse:
        """Apply a delta and/or comment against ``expected_version``."""
        caller = caller_of(message)
        refs = UserRefs()
        refs.delta(message.delta)
        await self._custom_people(caller, message.delta, [message.issue_id], refs)
        await self.gateway.users.to_ids(refs)
        return await self._wire_reply(CHANGE_ISSUE, message)

    async def _custom_people(
        self,
        caller: v1.Caller,
        delta: v1.IssueDelta | None,
        issue_ids: list[int],
        refs: UserRefs,
    ) -> None:
        """Add the usernames a delta's USER custom values hold to ``refs``."""
        if delta is None or not sets_values(delta.custom_fields_set):
            return
        components = await delta_components(self.gateway, caller, delta, issue_ids)
        people = await user_field_ids(self.gateway, caller, components)
        refs.custom_values(delta.custom_fields_set, people, "delta.custom_fields_set")

    async def _wire_reply(self, reply: NamedReply[M], request: betterproto2.Message) -> M:
        """The Model's reply, usernames put in, sent as the bytes upb writes (see _wire_issues)."""
        gateway = self.gateway
        timeout = gateway.settings.backend_timeout_seconds
        return await reply.call(gateway.model, gateway.users, request, deadline_seconds=timeout)

    async def edit_comment(self, message: v1.EditCommentRequest) -> v1.ChangeIssueResponse:
        """Edit a comment the caller wrote (a new entry supersedes the text)."""
        caller_of(message)
        return await self._wire_reply(EDIT_COMMENT, message)

    async def redact(self, message: v1.RedactRequest) -> v1.ChangeIssueResponse:
        """Redact a comment, description or attachment (component admins)."""
        caller_of(message)
        return await self._wire_reply(REDACT, message)

    async def batch_change_issues(
        self, message: v1.BatchChangeIssuesRequest
    ) -> v1.BatchChangeIssuesResponse:
        """Apply one delta to many issues."""
        caller = caller_of(message)
        refs = UserRefs()
        refs.delta(message.delta)
        issue_ids = [i.issue_id for i in message.issues]
        await self._custom_people(caller, message.delta, issue_ids, refs)
        await self.gateway.users.to_ids(refs)
        return await self._wire_reply(BATCH_CHANGE_ISSUES, message)

    async def list_history(self, message: v1.ListHistoryRequest) -> v1.ListHistoryResponse:
        """An issue's history, oldest first."""
        caller_of(message)
        return await self._wire_reply(LIST_HISTORY, message)

    async def search_issues(self, message: v1.QuerySearchRequest) -> v1.SearchIssuesResponse:
        """Search by query string and/or structured query, as the caller.

        The read mask goes to the Model as is: it checks the names (the same
        INVALID_ARGUMENT as for any Model client) and leaves out what no one
        will read; the names of people are then resolved only in what came.
        A refusal of a part of the query string the Model names (a custom
        field, a component, a hotlist) is marked in the string, as a syntax
        error is (:func:`refusal_in_text`).
        """
        query = await structured_query(
            self.gateway, message.query, message.structured, zone=time_zone(message.time_zone)
        )
        request = v1.SearchIssuesRequest(
            query=query,
            page=message.page,
            allow_stale=message.allow_stale,
            summary=message.summary,
            read_mask=message.read_mask,
        )
        caller_of(request)
        try:
            return await self._wire_reply(SEARCH_ISSUES, request)
        except InvalidArgument as exc:
            raise refusal_in_text(message.query, exc) from exc

    async def watch(self, message: v1.QueryWatchRequest) -> AsyncIterator[v1.WatchEvent]:
        """Proxy the Model's change stream for one issue or a query.

        The Model's first event, the ``subscribed`` marker, names nobody and
        goes through as is: the bot learns when its changes can no longer be
        missed, at the moment the Model knows it. A resume position goes to
        the Model as is, and so do its refusals (a pruned position keeps its
        ErrorInfo), and the events' feed positions come back unchanged: the
        bot resumes through whichever replica it reaches next.

        On the watches' channel (:attr:`Gateway.model_watches`): the stream
        is read only as fast as the bot reads, and a bot that takes nothing
        for ``watch_idle_seconds`` while events wait has the Model call
        released then (:class:`~bugless_api._idle.IdleRelease`); its next
        read fails with :class:`~bugless_api._idle.WatchStalled`, and it
        resumes from its position. A Model that sends nothing of the watch's
        start (its marker) for as long has the call released too, and the bot
        gets UNAVAILABLE (:func:`~bugless_api._idle.first_message_within`). A watch a draining Model
        refuses is opened once more on a new connection
        (:func:`~bugless_core.failover.open_again_if_refused`): the other
        watches keep that channel on the old replica while it drains. The
        Model's refusal of a component or hotlist the query names, when the
        watch starts or while it runs (one made private or restricted since),
        is marked in the query string (:func:`refusal_in_text`) alike.
        """
        request = v1.WatchRequest(after_position=message.after_position)
        zone = time_zone(message.time_zone)
        if message.issue_id is not None:
            request.issue_id = message.issue_id
        elif message.query is not None:
            request.query = await structured_query(self.gateway, message.query, None, zone=zone)
        else:
            raise InvalidArgument("target: give issue_id or query")
        caller_of(request)
        idle = self.gateway.settings.watch_idle_seconds
        stub = self.gateway.model_watches
        # Opened once more with a new session if the Model refused the connection's
        # ended one (before it opened anything), as a unary call is sent again.
        try:
            event, events = await call_renewing(
                "the model service stream broke",
                lambda: first_message_within(
                    open_again_if_refused(
                        stub.channel, lambda: stub.watch(request), MODEL_WATCH_ROUTE
                    ),
                    idle,
                    unanswered=f"the model service did not start the watch within {idle:g} s "
                    "(--watch-idle-seconds); watch again",
                    extra={"watch_idle_seconds": idle},
                ),
            )
        except InvalidArgument as exc:
            # A component or hotlist the caller may not name, marked in the query as a search's.
            raise refusal_in_text(message.query or "", exc) from exc
        try:
            with call_errors("the model service stream broke"):
                client = IdleRelease(
                    events,
                    idle,
                    stalled=WatchStalled(
                        f"the watch stalled: the bot read nothing for {idle:g} s while events "
                        "waited (--watch-idle-seconds); watch again from the position of the "
                        "last event handled"
                    ),
                    released=f"a watch's bot read nothing for {idle:g} s while events waited; "
                    "its model call is released",
                    extra={"watch_idle_seconds": idle},
                )
                try:
                    while event is not None:
                        if not event.subscribed:
                            out = UserRefs()
                            out.issue(event.issue)
                            out.entry(event.entry)
                            await self._named(out)
                        client.waiting()
                        yield event
                        client.taken()
                        event = await anext(events, None)
                finally:
                    await client.close()
        except InvalidArgument as exc:
            # The Model checks the query's components and hotlists again as it
            # runs: one hidden or deleted since ends the watch, marked in the
            # query as the refusal of a new watch is.
            raise refusal_in_text(message.query or "", exc) from exc

    # ---- attachments ----

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        """Pass an upload through to the Model as it arrives, chunk by chunk.

        Each chunk is forwarded when the Model's side of the stream can take
        it (HTTP/2 flow control both ways); the first few MiB are kept until
        the Model reads them, to send again should a draining Model refuse
        the call (:func:`bugless_core.failover.upload_again_if_refused`), so
        the gateway holds at most that whatever the file's size. No deadline:
        a large file over a slow link takes the time it takes.
        """
        first = await anext(messages, None)
        header = first.header if first is not None else None
        if header is None:
            raise InvalidArgument("header: the first message of an upload must be its header")
        caller_of(header)
        if header.import_content:
            # Content stored for an import, on no issue: only `bugless import`
            # needs it, and it calls the Model directly as the import
            # identity. Refused here before any byte reaches the Model.
            raise InvalidArgument(
                "header.import_content: not through the API; only `bugless import`, "
                "which talks to the Model, stores content for an import",
                metadata={"field": "header.import_content"},
            )

        async def forwarded() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            async for message in messages:
                yield message

        gateway = self.gateway
        return await UPLOAD_ATTACHMENT.call_streamed(
            gateway.model_transfers, gateway.users, forwarded()
        )

    async def download_attachment(
        self, message: v1.DownloadAttachmentRequest
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        """Pass the Model's download stream through, chunk by chunk (no deadline).

        On the transfers' channel (:attr:`Gateway.model_transfers`): the
        stream is read only as fast as the client reads. While the client
        takes a message a timer waits ``download_idle_seconds``
        (:class:`~bugless_api._idle.IdleRelease`); if it passes, the Model
        call is released then, however long the client keeps the call, and
        the client's next read fails with :class:`~bugless_core.errors.DownloadStalled`. A Model
        that sends nothing of the download's start (the attachment), or nothing more of it,
        for as long has the call released too, and the client gets UNAVAILABLE
        (:func:`~bugless_api._idle.first_message_within`,
        :func:`~bugless_api._idle.model_message_within`). A download
        a draining Model refuses is opened once more on a new connection
        (:func:`~bugless_core.failover.open_again_if_refused`): a download
        in progress keeps that channel on the old replica while it drains.
        """
        caller_of(message)
        idle = self.gateway.settings.download_idle_seconds
        stub = self.gateway.model_transfers
        part, parts = await call_renewing(
            "the model service stream broke",
            lambda: first_message_within(
                open_again_if_refused(
                    stub.channel, lambda: stub.download_attachment(message), MODEL_DOWNLOAD_ROUTE
                ),
                idle,
                unanswered=f"the model service did not start the download of attachment "
                f"{message.attachment_id} within {idle:g} s (--download-idle-seconds); "
                "download again",
                extra={"attachment_id": message.attachment_id, "download_idle_seconds": idle},
            ),
        )
        client = IdleRelease(
            parts,
            idle,
            stalled=DownloadStalled(
                f"the download stalled: the client read nothing for {idle:g} s "
                "(--download-idle-seconds); download again from the offset reached"
            ),
            released=f"attachment {message.attachment_id}: the client read nothing of the "
            f"download for {idle:g} s; its model call is released",
            extra={"attachment_id": message.attachment_id},
        )
        try:
            with call_errors("the model service stream broke"):
                while part is not None:
                    if part.attachment is not None:
                        out = UserRefs()
                        out.attachment(part.attachment)
                        await self._named(out)
                    client.waiting()
                    yield part
                    client.taken()
                    part = await model_message_within(
                        anext(parts, None),
                        idle,
                        unanswered=f"the model service sent nothing more of attachment "
                        f"{message.attachment_id} for {idle:g} s (--download-idle-seconds); "
                        "download again from the offset reached",
                        extra={
                            "attachment_id": message.attachment_id,
                            "download_idle_seconds": idle,
                        },
                    )
        finally:
            await client.close()

    async def get_attachment(self, message: v1.GetAttachmentRequest) -> v1.Attachment:
        """One attachment's metadata, if the caller may view its issue."""
        caller_of(message)
        return await self._wire_reply(GET_ATTACHMENT, message)

    async def list_attachments(
        self, message: v1.ListAttachmentsRequest
    ) -> v1.ListAttachmentsResponse:
        """An issue's attachments, oldest first."""
        caller_of(message)
        return await self._wire_reply(LIST_ATTACHMENTS, message)

    async def delete_attachment(
        self, message: v1.DeleteAttachmentRequest
    ) -> v1.ChangeIssueResponse:
        """Detach a file (its uploader or a component admin)."""
        caller_of(message)
        return await self._wire_reply(DELETE_ATTACHMENT, message)

    async def check_viewers(self, message: v1.CheckIssueViewersRequest) -> v1.CheckViewersResponse:
        """Who of the people an issue names cannot view it (:mod:`bugless_api._viewer_checks`)."""
        return await check_issue_viewers(self.gateway, current_identity().caller, message)
