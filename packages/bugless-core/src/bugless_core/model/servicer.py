"""The Model gRPC service over any registered backend.

Each call is checked for shape (:mod:`bugless_core.model._validation`), handed
to the backend, and its errors are mapped to gRPC statuses in one place
(:func:`bugless_core.grpc.grpc_errors`). An unexpected exception is logged with its traceback and
reported as INTERNAL with a generic message: a traceback never reaches a
caller. The handlers for components, hotlists and saved searches are a mixin
(:mod:`bugless_core.model._organising_calls`); the ``ACCESS`` table for every
call is here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from grpclib.const import Handler

from bugless_core import attachments, limits
from bugless_core.assertions import AssertionVerifier
from bugless_core.errors import (
    BuglessError,
    CapabilityMissing,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from bugless_core.grpc import AccessTable, grpc_errors, handler_errors
from bugless_core.model import _attachment_checks as attachment_checks
from bugless_core.model import _duplicates as duplicates
from bugless_core.model import _feed_checks as feed_checks
from bugless_core.model import _import_checks as imports
from bugless_core.model import _more_checks as more
from bugless_core.model import _validation as check
from bugless_core.model._callers import with_verified_callers
from bugless_core.model._organising_calls import OrganisingCalls
from bugless_core.model._viewer_checks import UserGroupsSource, check_viewers
from bugless_core.model.backend import Capability, ModelBackend, batch_create_failure
from bugless_proto import v1, wire_unread

#: The frontends: they act for people, so they may change data.
_FRONTENDS = frozenset({"web", "api"})
#: Who may read: the frontends and the notifier (which reads issues, never writes).
_READERS = _FRONTENDS | {"notify"}
#: Search queries (their bytes as received) remembered as having passed ``check_query``.
_CHECKED_QUERIES = 1024


class ModelServicer(OrganisingCalls, v1.ModelBase):
    """Serves ``bugless.v1.Model`` from a :class:`ModelBackend`.

    Attributes:
        ACCESS: Which service identities may call each RPC (checked by the gRPC
            runtime before the handler runs; an RPC without a row is refused).
            Only the frontends and the notifier call the Model; the notifier
            only reads. Whose data a call may touch is decided afterwards, by
            the Model's ACLs for the caller the request names.
    """

    ACCESS: ClassVar[AccessTable] = {
        "GetServerInfo": _READERS | {"@admin"},
        "CreateIssue": _FRONTENDS,
        "BatchCreateIssues": _FRONTENDS,
        # The import job reads and changes the issues it imported to set the
        # relations between them once both exist (bugless_import.relations:
        # read in batches, sub-issues of one parent changed in one batch).
        "GetIssue": _READERS | {"@import"},
        "BatchGetIssues": _READERS | {"@import"},
        "ChangeIssue": _FRONTENDS | {"@import"},
        "BatchChangeIssues": _FRONTENDS | {"@import"},
        "ListHistory": _READERS,
        "SearchIssues": _READERS,
        "Watch": _READERS,
        "ReadFeed": _READERS,
        "CreateComponent": _FRONTENDS | {"@import"},
        "GetComponent": _READERS | {"@import"},
        "ListComponents": _READERS,
        "UpdateComponent": _FRONTENDS,
        # Who of the people an issue names cannot view its component: asked
        # by the frontends after a save, to warn whoever named them, and by
        # the import job for the restricted issues it puts in a narrower
        # component (bugless_import.restricted: named in its report).
        "CheckViewers": _FRONTENDS | {"@import"},
        "CreateHotlist": _FRONTENDS | {"@import"},
        "GetHotlist": _READERS,
        "ListHotlists": _READERS | {"@import"},
        "UpdateHotlist": _FRONTENDS,
        "DeleteHotlist": _FRONTENDS,
        "AddHotlistItems": _FRONTENDS,
        "RemoveHotlistItems": _FRONTENDS,
        "RankHotlistItem": _FRONTENDS,
        "SetHotlistItemNote": _FRONTENDS,
        "ListHotlistItems": _READERS,
        "CreateSavedSearch": _FRONTENDS,
        # The notifier, as a subscriber (their assertion): which they may still read.
        "ListSavedSearches": _READERS,
        "UpdateSavedSearch": _FRONTENDS,
        "DeleteSavedSearch": _FRONTENDS,
        "EditComment": _FRONTENDS,
        "Redact": _FRONTENDS,
        "CreateCustomField": _FRONTENDS,
        "ListCustomFields": _READERS | {"@import"},
        "UpdateCustomField": _FRONTENDS,
        "DeleteCustomField": _FRONTENDS,
        # The import job stores imported files' content (import_content).
        "UploadAttachment": _FRONTENDS | {"@import"},
        "DownloadAttachment": _READERS,
        "GetAttachment": _READERS,
        # A --refresh of imported issues sends no file whose content the Model
        # holds for the issue: the import job lists what it attached before.
        "ListAttachments": _READERS | {"@import"},
        "DeleteAttachment": _FRONTENDS,
        # Stars, subscriptions and settings are people's own: made through a
        # frontend; the notifier reads settings and who follows an issue.
        "StarIssue": _FRONTENDS,
        "SetComponentSubscription": _FRONTENDS,
        "SetSavedSearchSubscription": _FRONTENDS,
        "ListSubscriptions": _FRONTENDS,
        "GetNotificationSettings": _READERS,
        "UpdateNotificationSettings": _FRONTENDS,
        "SetIssueMute": _FRONTENDS,
        "GetIssueAudience": {"notify"},
        "GetNotificationViews": {"notify"},
        "ListSavedSearchSubscriptions": {"notify"},
        # The import job (``bugless import``), as --import-identities names it.
        # It also finds or creates the components and hotlists its mapping
        # names (the rows above marked @import), as the import caller.
        "ImportIssue": {"@import"},
        "ImportIssues": {"@import"},
    }

    def __init__(
        self,
        backend: ModelBackend,
        *,
        assertions: AssertionVerifier | None = None,
        user_groups: UserGroupsSource | None = None,
    ) -> None:
        """Serve ``backend``; it must already be open.

        Args:
            backend: The open backend.
            assertions: Verifies the identity assertions the caller of every
                call is taken from (:mod:`bugless_core.model._callers`). Only
                ``--insecure-local`` and the backends' conformance tests serve
                without one: then the request's ``caller`` is believed.
            user_groups: Asks the Authenticator for people's groups, which
                ``CheckViewers`` judges them by
                (:mod:`bugless_core.model._viewer_checks`); without it that
                call is FAILED_PRECONDITION.
        """
        self.backend = backend
        self.assertions = assertions
        self.user_groups = user_groups
        self._checked_queries: dict[bytes, None] = {}

    def __mapping__(self) -> dict[str, Handler]:
        """The handlers; with a verifier, each request's caller is its assertion's."""
        handlers: dict[str, Handler] = super().__mapping__()
        if self.assertions is None:
            return handlers
        return with_verified_callers(handlers, self.assertions)

    @grpc_errors
    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        """Backend name, version, capabilities, schema version."""
        return await self.backend.get_server_info()

    # ---- issues ----

    @grpc_errors
    async def create_issue(self, message: v1.CreateIssueRequest) -> v1.Issue:
        """Create an issue."""
        check.check_create_issue(message)
        duplicates.apply_to_new(message)
        return await self.backend.create_issue(message)

    @grpc_errors
    async def batch_create_issues(
        self, message: v1.BatchCreateIssuesRequest
    ) -> v1.BatchCreateIssuesResponse:
        """Create up to MAX_BATCH_CREATE issues, each on its own terms.

        Every item is the request caller's (its own caller field is replaced)
        and is validated as CreateIssue validates; an invalid item gets its
        INVALID_ARGUMENT as its result and never reaches the backend.
        """
        check.require_caller(message.caller)
        if not message.items:
            raise InvalidArgument("items: at least one item is required")
        if len(message.items) > limits.MAX_BATCH_CREATE:
            raise InvalidArgument(
                f"items: has {len(message.items)} items; at most {limits.MAX_BATCH_CREATE} "
                "are accepted per call"
            )
        results: list[v1.BatchCreateResult | None] = []
        valid: list[v1.CreateIssueRequest] = []
        for item in message.items:
            item.caller = message.caller  # checked once, above
            try:
                check.check_create_fields(item)
            except BuglessError as exc:
                results.append(batch_create_failure(exc))
            else:
                duplicates.apply_to_new(item)
                results.append(None)
                valid.append(item)
        if valid:
            created = iter(
                (
                    await self.backend.batch_create_issues(
                        v1.BatchCreateIssuesRequest(caller=message.caller, items=valid)
                    )
                ).results
            )
            results = [next(created) if r is None else r for r in results]
        return v1.BatchCreateIssuesResponse(results=[r for r in results if r is not None])

    @grpc_errors
    async def get_issue(self, message: v1.GetIssueRequest) -> v1.Issue:
        """Fetch one issue."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.get_issue(message)

    @grpc_errors
    async def batch_get_issues(
        self, message: v1.BatchGetIssuesRequest
    ) -> v1.BatchGetIssuesResponse:
        """Fetch up to MAX_BATCH_GET issues (only the read mask's fields, when it names any)."""
        check.require_caller(message.caller)
        check.check_ids(message.issue_ids, "issue_ids", limits.MAX_BATCH_GET, required=True)
        check.check_read_mask(message.read_mask, "read_mask")
        return await self.backend.batch_get_issues(message)

    @grpc_errors
    async def change_issue(self, message: v1.ChangeIssueRequest) -> v1.ChangeIssueResponse:
        """Apply a delta and/or comment."""
        check.check_change_issue(message)
        duplicates.apply_to_delta(message.delta)
        return await self.backend.change_issue(message)

    @grpc_errors
    async def batch_change_issues(
        self, message: v1.BatchChangeIssuesRequest
    ) -> v1.BatchChangeIssuesResponse:
        """Apply one delta to many issues."""
        check.check_batch_change(message)
        duplicates.apply_to_delta(message.delta)
        return await self.backend.batch_change_issues(message)

    @grpc_errors
    async def list_history(self, message: v1.ListHistoryRequest) -> v1.ListHistoryResponse:
        """Page through an issue's history."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        return await self.backend.list_history(message)

    @grpc_errors
    async def search_issues(self, message: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """Run a structured query."""
        check.require_caller(message.caller)
        self._check_search_query(message.query)
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        check.check_read_mask(message.read_mask, "read_mask")
        return await self.backend.search_issues_reply(message)

    def _check_search_query(self, query: v1.StructuredQuery | None) -> None:
        """``check_query``, once per query received as the same bytes and not yet read.

        The check is a function of the query alone, so bytes that passed
        once pass again, and a received query still unread
        (:mod:`bugless_proto.wire_unread`) is those bytes: it stays unread
        (6-35 µs a page). Refused queries are checked every time.
        """
        key = wire_unread.unread_bytes(query)
        if key is None:
            check.check_query(query, "query")
            return
        if key in self._checked_queries:
            return
        check.check_query(query, "query")
        if len(self._checked_queries) >= _CHECKED_QUERIES:
            del self._checked_queries[next(iter(self._checked_queries))]
        self._checked_queries[key] = None

    async def watch(self, message: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        """Stream changes of an issue or a query's issues (capability "watch").

        The backend's ``subscribed`` marker goes out first, as is: it tells the
        client when changes can no longer be missed. A resume position
        (``after_position``) needs the change feed as well: the backend replays
        the feed from it.
        """
        with handler_errors("watch"):
            check.require_caller(message.caller)
            if Capability.WATCH not in self.backend.capabilities:
                raise CapabilityMissing(
                    f"the {self.backend.name} backend cannot watch for changes; "
                    "check GetServerInfo capabilities before calling Watch",
                    capability=Capability.WATCH,
                )
            if message.issue_id:
                check.check_id(message.issue_id, "issue_id")
            elif message.query is not None:
                check.check_query(message.query, "query")
            else:
                raise InvalidArgument("target: set issue_id or query")
            if message.after_position is not None:
                feed_checks.check_resume_position(message.after_position)
                if Capability.CHANGE_FEED not in self.backend.capabilities:
                    raise CapabilityMissing(
                        f"the {self.backend.name} backend has no change feed to resume a watch "
                        "from; watch without after_position",
                        capability=Capability.CHANGE_FEED,
                    )
            async for event in self.backend.watch(message):
                yield event

    @grpc_errors
    async def read_feed(self, message: v1.ReadFeedRequest) -> v1.ReadFeedResponse:
        """Committed changes from a resume position (capability "change_feed")."""
        feed_checks.check_read_feed(message)
        if Capability.CHANGE_FEED not in self.backend.capabilities:
            raise CapabilityMissing(
                f"the {self.backend.name} backend has no change feed; "
                "check GetServerInfo capabilities before calling ReadFeed",
                capability=Capability.CHANGE_FEED,
            )
        return await self.backend.read_feed(message)

    @grpc_errors
    async def check_viewers(self, message: v1.CheckViewersRequest) -> v1.CheckViewersResponse:
        """Which of the people named cannot view a component (the caller must view it)."""
        return await check_viewers(self.backend, self.user_groups, message)

    # ---- stars, subscriptions, notification settings ----

    @grpc_errors
    async def star_issue(self, message: v1.StarIssueRequest) -> v1.StarIssueResponse:
        """Star or unstar an issue."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.star_issue(message)

    @grpc_errors
    async def set_component_subscription(
        self, message: v1.SetComponentSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe to a component (and its subtree) or stop."""
        check.require_caller(message.caller)
        check.check_id(message.component_id, "component_id")
        return await self.backend.set_component_subscription(message)

    @grpc_errors
    async def set_saved_search_subscription(
        self, message: v1.SetSavedSearchSubscriptionRequest
    ) -> v1.Subscriptions:
        """Subscribe to a saved search or stop."""
        check.require_caller(message.caller)
        check.check_id(message.saved_search_id, "saved_search_id")
        return await self.backend.set_saved_search_subscription(message)

    @grpc_errors
    async def list_subscriptions(self, message: v1.ListSubscriptionsRequest) -> v1.Subscriptions:
        """The caller's subscriptions."""
        check.require_caller(message.caller)
        return await self.backend.list_subscriptions(message)

    @grpc_errors
    async def get_notification_settings(
        self, message: v1.GetNotificationSettingsRequest
    ) -> v1.GetNotificationSettingsResponse:
        """Notification settings of the caller (admins: of anyone)."""
        feed_checks.check_get_notification_settings(message)
        return await self.backend.get_notification_settings(message)

    @grpc_errors
    async def update_notification_settings(
        self, message: v1.UpdateNotificationSettingsRequest
    ) -> v1.NotificationSettings:
        """Replace the caller's notification settings."""
        feed_checks.check_update_notification_settings(message)
        return await self.backend.update_notification_settings(message)

    @grpc_errors
    async def set_issue_mute(self, message: v1.SetIssueMuteRequest) -> v1.NotificationSettings:
        """Mute or unmute an issue."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.set_issue_mute(message)

    @grpc_errors
    async def get_issue_audience(self, message: v1.GetIssueAudienceRequest) -> v1.IssueAudience:
        """Who follows an issue (the notifier)."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.get_issue_audience(message)

    @grpc_errors
    async def get_notification_views(
        self, message: v1.GetNotificationViewsRequest
    ) -> v1.NotificationViews:
        """An issue, entries and audience, and which recipients may see it (the notifier).

        With a verifier, the recipients are the identities of the verified
        ``viewer_assertions`` (groups and permissions as the Authenticator
        signed them); the ``viewers`` a request names are never believed.
        """
        feed_checks.check_get_notification_views(message)
        if self.assertions is not None:
            viewers = []
            for n, assertion in enumerate(message.viewer_assertions):
                try:
                    claims = await self.assertions.claims(assertion)
                except Unauthenticated as exc:
                    # The reason (SESSION_ENDED, INVALID_ASSERTION) tells the
                    # notifier whether a new assertion may help; the field which.
                    raise Unauthenticated(
                        f"viewer_assertions[{n}]: {exc.message}",
                        reason=exc.reason,
                        metadata={**exc.metadata, "field": f"viewer_assertions[{n}]"},
                    ) from exc
                if claims.scope is not None:
                    # Good for one call, not for reading as its person.
                    raise PermissionDenied(
                        f"viewer_assertions[{n}]: a scoped assertion (only good for "
                        f"{claims.scope.method}) cannot stand for a viewer",
                        reason="ASSERTION_SCOPE",
                        metadata={"field": f"viewer_assertions[{n}]"},
                    )
                viewers.append(claims.caller())
            message.viewers = viewers
        return await self.backend.get_notification_views(message)

    @grpc_errors
    async def list_saved_search_subscriptions(
        self, message: v1.ListSavedSearchSubscriptionsRequest
    ) -> v1.ListSavedSearchSubscriptionsResponse:
        """Every saved-search subscription (the notifier)."""
        check.require_caller(message.caller)
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        return await self.backend.list_saved_search_subscriptions(message)

    # ---- edits and redaction ----

    @grpc_errors
    async def edit_comment(self, message: v1.EditCommentRequest) -> v1.ChangeIssueResponse:
        """Edit a comment (its author only)."""
        more.check_edit_comment(message)
        return await self.backend.edit_comment(message)

    @grpc_errors
    async def redact(self, message: v1.RedactRequest) -> v1.ChangeIssueResponse:
        """Redact a comment, description or attachment (admins)."""
        more.check_redact(message)
        return await self.backend.redact(message)

    # ---- attachments ----

    @grpc_errors
    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        """Receive a header and the content in chunks; attach it by a new entry."""
        first = await anext(messages, None)
        header = first.header if first is not None else None
        if header is None:
            raise InvalidArgument("header: the first message of an upload must be its header")
        attachment_checks.check_upload_header(header)
        return await self.backend.upload_attachment(
            header, attachment_checks.upload_chunks(messages, header)
        )

    async def download_attachment(
        self, message: v1.DownloadAttachmentRequest
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        """The attachment, then its content in chunks."""
        with handler_errors("download_attachment"):
            check.require_caller(message.caller)
            check.check_id(message.attachment_id, "attachment_id")
            if message.offset < 0 or message.length < 0:
                raise InvalidArgument("offset, length: must not be negative")
            attachment, reader = await self.backend.open_attachment(message)
            async with reader:
                yield v1.DownloadAttachmentResponse(attachment=attachment)
                try:
                    async for chunk in reader:
                        for start in range(0, len(chunk), attachments.CHUNK_BYTES):
                            yield v1.DownloadAttachmentResponse(
                                chunk=chunk[start : start + attachments.CHUNK_BYTES]
                            )
                except NotFound as exc:
                    # The attachment's deletion (or redaction) removes its
                    # content: the caller hears that, with the entry.
                    request = v1.GetAttachmentRequest(
                        caller=message.caller, attachment_id=attachment.id
                    )
                    gone = attachments.content_gone(await self.backend.get_attachment(request))
                    if gone is not None:
                        raise gone from exc
                    raise attachment_checks.deleted_while_downloaded(attachment, exc) from exc

    @grpc_errors
    async def get_attachment(self, message: v1.GetAttachmentRequest) -> v1.Attachment:
        """One attachment's metadata."""
        check.require_caller(message.caller)
        check.check_id(message.attachment_id, "attachment_id")
        return await self.backend.get_attachment(message)

    @grpc_errors
    async def list_attachments(
        self, message: v1.ListAttachmentsRequest
    ) -> v1.ListAttachmentsResponse:
        """An issue's attachments."""
        check.require_caller(message.caller)
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.list_attachments(message)

    @grpc_errors
    async def delete_attachment(
        self, message: v1.DeleteAttachmentRequest
    ) -> v1.ChangeIssueResponse:
        """Detach a file (its uploader or an admin)."""
        check.require_caller(message.caller)
        check.check_id(message.attachment_id, "attachment_id")
        if message.expected_version < 0:
            raise InvalidArgument("expected_version: must not be negative")
        return await self.backend.delete_attachment(message)

    # ---- custom fields ----

    @grpc_errors
    async def create_custom_field(self, message: v1.CreateCustomFieldRequest) -> v1.CustomField:
        """Define a custom field on a component."""
        more.check_create_custom_field(message)
        return await self.backend.create_custom_field(message)

    @grpc_errors
    async def list_custom_fields(
        self, message: v1.ListCustomFieldsRequest
    ) -> v1.ListCustomFieldsResponse:
        """The custom fields that apply to a component."""
        more.check_list_custom_fields(message)
        return await self.backend.list_custom_fields(message)

    @grpc_errors
    async def update_custom_field(self, message: v1.UpdateCustomFieldRequest) -> v1.CustomField:
        """Change a custom field's definition."""
        more.check_update_custom_field(message)
        return await self.backend.update_custom_field(message)

    @grpc_errors
    async def delete_custom_field(self, message: v1.DeleteCustomFieldRequest) -> v1.DeleteResponse:
        """Delete a custom field."""
        more.check_delete_custom_field(message)
        return await self.backend.delete_custom_field(message)

    # ---- import (issue 21) ----

    @grpc_errors
    async def import_issue(self, message: v1.ImportIssueRequest) -> v1.ImportIssueResponse:
        """Write an issue from another tracker (admin + import_issues only)."""
        imports.check_import_issue(message)
        return await self.backend.import_issue(message)

    @grpc_errors
    async def import_issues(self, message: v1.ImportIssuesRequest) -> v1.ImportIssuesResponse:
        """Many ImportIssue calls in one; each item answered on its own."""
        imports.check_import_batch(message)
        results: list[v1.ImportIssueResult | None] = []
        valid: list[v1.ImportIssueRequest] = []
        for item in message.issues:
            item.caller = message.caller
            try:
                imports.check_import_issue(item)
            except BuglessError as exc:
                results.append(
                    v1.ImportIssueResult(
                        external_id=item.external_id,
                        code=int(exc.grpc_status.value),
                        message=exc.message,
                    )
                )
            else:
                results.append(None)
                valid.append(item)
        written = iter(await self.backend.import_issues(message.caller, valid))
        return v1.ImportIssuesResponse(results=[r or next(written) for r in results])
