"""The Model backend contract: what a storage backend must do.

The Model service (:mod:`bugless_core.model.servicer`) validates each request
against the stated limits and shapes, then calls the backend with the request
message. A backend therefore receives well-formed requests and is responsible
for everything that needs the data: existence, ACLs, version preconditions,
cycles, atomicity. It reports problems by raising :mod:`bugless_core.errors`
exceptions, never driver exceptions.

What differs between backends is declared in :attr:`ModelBackend.capabilities`;
callers (and the conformance suite) branch on capabilities, never on the
backend class.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import ClassVar, Self

from bugless_core.attachments import AttachmentSettings
from bugless_core.blobs import BlobReader, BlobStore
from bugless_core.errors import BuglessError, FailedPrecondition
from bugless_core.model.settings import ModelSettings
from bugless_proto import v1

# ModelSettings is re-exported (backends, in this repository and outside it, import it
# from here): its home is bugless_core.model.settings, which `model serve --help` imports
# without the generated messages this module needs.
__all__ = [
    "Capability",
    "ChangeListener",
    "ModelBackend",
    "ModelSettings",
    "batch_create_failure",
]


class Capability(enum.StrEnum):
    """Optional behaviours a backend may declare."""

    #: Server-streaming Watch pushes changes as they are committed.
    WATCH = "watch"
    #: SearchIssues honours ``allow_stale`` with bounded-staleness reads.
    FOLLOWER_READS = "follower_reads"
    #: Transactions are retried on serialization failures (40001).
    TRANSACTION_RETRIES = "transaction_retries"
    #: Issue ids are time-ordered Snowflake-style ids, not a dense sequence.
    SNOWFLAKE_IDS = "snowflake_ids"
    #: Tables can be homed in regions (``bugless model migrate --regions``).
    MULTI_REGION = "multi_region"
    #: ReadFeed: every committed change from a resume position, in commit
    #: order, with no gap when transactions commit out of id order.
    CHANGE_FEED = "change_feed"
    #: GetIssue and BatchGetIssues fill ``Issue.has_children`` and
    #: ``has_duplicates``, so a client may skip searching for an issue's
    #: children and duplicates when both are false.
    RELATION_FLAGS = "relation_flags"


#: Called once per committed history entry with the issue as it is after it.
ChangeListener = Callable[[v1.Issue, v1.HistoryEntry], None]


class ModelBackend(ABC):
    """Async storage backend of the Model service.

    Lifecycle: :meth:`migrate` (once per deployment, safe to run concurrently),
    then :meth:`open` per process, then calls, then :meth:`close`.
    """

    #: Name a deployment selects with ``--model``.
    name: ClassVar[str]
    #: What this backend supports beyond the base contract.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: The installed package that provides the backend, as operators read it
    #: (:meth:`package_name`); empty means the package is named after the
    #: backend's top-level module, as bugless' own are.
    component: ClassVar[str] = ""

    def __init__(self) -> None:
        self._change_listeners: list[ChangeListener] = []
        self._blob_store: BlobStore | None = None
        self.attachment_settings = AttachmentSettings()

    def use_blob_store(self, store: BlobStore, settings: AttachmentSettings | None = None) -> None:
        """Keep attachment content in ``store`` (the backend does not close it)."""
        self._blob_store = store
        if settings is not None:
            self.attachment_settings = settings

    @property
    def blob_store(self) -> BlobStore:
        """The store holding attachment content.

        Raises:
            FailedPrecondition: none was configured (attachments are off).
        """
        if self._blob_store is None:
            msg = "attachments are not available: the Model was started without a blob store"
            raise FailedPrecondition(msg)
        return self._blob_store

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Register a function called after every committed history entry."""
        self._change_listeners.append(listener)

    def _emit_committed(self, issue: v1.Issue, entry: v1.HistoryEntry) -> None:
        """Tell listeners about an entry; call only after the final commit."""
        for listener in self._change_listeners:
            listener(issue, entry)

    @classmethod
    def package_name(cls) -> str:
        """The package to name to an operator (``bugless model migrate`` prints it).

        :attr:`component` when set, else the top-level module with ``-`` for
        ``_`` (``bugless_model_postgres`` → ``bugless-model-postgres``), so that
        every command names a backend the way ``bugless auth migrate`` names
        ``bugless-auth``. A subclass shipped in another package sets
        :attr:`component` (the CockroachDB backend does).
        """
        return cls.component or cls.__module__.partition(".")[0].replace("_", "-")

    # ---- lifecycle ----

    @classmethod
    @abstractmethod
    async def migrate(cls, settings: ModelSettings) -> int:
        """Bring the schema up to date; return the schema version now applied.

        Idempotent, and safe when several replicas run it at once.
        """

    @classmethod
    @abstractmethod
    async def open(cls, settings: ModelSettings) -> Self:
        """Connect; refuse (FailedPrecondition) a schema newer than this code knows."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; in-flight calls have finished by then."""

    @abstractmethod
    async def check_ready(self) -> bool:
        """Whether the database answers now (drives the gRPC health status).

        A backend with a versioned schema also says False while the schema is
        older than its code, and True while it is newer (a rolling upgrade):
        :mod:`bugless_core.schema_skew`, docs/upgrades.md.
        """

    @abstractmethod
    async def get_server_info(self) -> v1.GetServerInfoResponse:
        """Backend name, version, capabilities and schema version."""

    # ---- issues ----

    @abstractmethod
    async def create_issue(self, request: v1.CreateIssueRequest) -> v1.Issue:
        """Create an issue (history entry 1); honour the idempotency key."""

    async def batch_create_issues(
        self, request: v1.BatchCreateIssuesRequest
    ) -> v1.BatchCreateIssuesResponse:
        """Create each item as :meth:`create_issue` would; a result per item, in order.

        The servicer has validated every item and set its caller to the
        request's. This default creates them one by one; a backend may write
        them together (PostgreSQL: one transaction), as long as each item's
        outcome is the one its own CreateIssue would have had.
        """
        results = []
        for item in request.items:
            try:
                issue = await self.create_issue(item)
            except BuglessError as exc:
                results.append(batch_create_failure(exc))
            else:
                results.append(v1.BatchCreateResult(code=0, issue=issue))
        return v1.BatchCreateIssuesResponse(results=results)

    @abstractmethod
    async def get_issue(self, request: v1.GetIssueRequest) -> v1.Issue:
        """One issue the caller may view, else NotFound."""

    @abstractmethod
    async def batch_get_issues(
        self, request: v1.BatchGetIssuesRequest
    ) -> v1.BatchGetIssuesResponse:
        """Visible issues in request order; the rest listed as missing.

        A ``read_mask`` naming fields (checked by the servicer) lets the
        backend leave every other field at its default, as a search's does;
        it never changes which issues come or which are missing.
        """

    @abstractmethod
    async def change_issue(self, request: v1.ChangeIssueRequest) -> v1.ChangeIssueResponse:
        """Apply delta + comment atomically as one entry, if the version matches."""

    @abstractmethod
    async def batch_change_issues(
        self, request: v1.BatchChangeIssuesRequest
    ) -> v1.BatchChangeIssuesResponse:
        """One delta on many issues, atomically or per issue (``atomic``)."""

    @abstractmethod
    async def list_history(self, request: v1.ListHistoryRequest) -> v1.ListHistoryResponse:
        """History entries oldest first, paginated."""

    @abstractmethod
    async def search_issues(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """Compile the structured query; only visible issues; keyset pages."""

    async def search_issues_reply(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """:meth:`search_issues` as the servicer sends it (default: the same call).

        A backend may return a response that is already its encoded bytes (a
        subclass defining ``SerializeToString``, see :mod:`bugless_proto.wire`),
        made without building each issue as a message first; its bytes must
        be those of :meth:`search_issues`'s response. In-process callers keep
        calling :meth:`search_issues`.
        """
        return await self.search_issues(request)

    def watch(self, request: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        """Stream committed changes (only with :attr:`Capability.WATCH`).

        The first event must be ``WatchEvent(subscribed=True)`` (no issue, no
        entry), yielded only once every change committed from then on is sure
        to reach the stream: clients wait for it instead of guessing how long
        subscribing takes. Its ``position`` is the feed's head then; every
        later event carries the position of the change that wrote its entry.
        With ``request.after_position`` (backends with
        :attr:`Capability.CHANGE_FEED` too; the servicer checks its sign), the
        changes after it that match come first, in commit order, then live
        ones, none missed or repeated; a position older than the retention is
        :class:`~bugless_core.errors.FailedPrecondition` and one beyond the
        head :class:`~bugless_core.errors.InvalidArgument`, with ReadFeed's
        ErrorInfo metadata. A query watch also sends the changes that made
        an issue stop matching the query, marked ``left_query`` (judged on
        the issue before and after the change, as the proto says; only ids
        when the caller may no longer view the issue).
        """
        msg = f"the {self.name} backend does not declare the watch capability"
        raise NotImplementedError(msg)

    @abstractmethod
    async def read_feed(self, request: v1.ReadFeedRequest) -> v1.ReadFeedResponse:
        """Changes after a position in commit order (capability ``change_feed``).

        Positions are dense and in commit order; a position older than the
        retention is FailedPrecondition; entries of issues the caller may not
        view are left out; ``wait_ms`` waits for a commit when none is newer.
        """

    # ---- stars, subscriptions, notification settings ----

    @abstractmethod
    async def star_issue(self, request: v1.StarIssueRequest) -> v1.StarIssueResponse:
        """Star or unstar an issue the caller may view; idempotent; no history entry."""

    @abstractmethod
    async def set_component_subscription(
        self, request: v1.SetComponentSubscriptionRequest
    ) -> v1.Subscriptions:
        """(Un)subscribe the caller to a component they may view."""

    @abstractmethod
    async def set_saved_search_subscription(
        self, request: v1.SetSavedSearchSubscriptionRequest
    ) -> v1.Subscriptions:
        """(Un)subscribe the caller to a saved search they may read."""

    @abstractmethod
    async def list_subscriptions(self, request: v1.ListSubscriptionsRequest) -> v1.Subscriptions:
        """The caller's subscriptions."""

    @abstractmethod
    async def get_notification_settings(
        self, request: v1.GetNotificationSettingsRequest
    ) -> v1.GetNotificationSettingsResponse:
        """The caller's settings (defaults if never saved); an admin may read anyone's."""

    @abstractmethod
    async def update_notification_settings(
        self, request: v1.UpdateNotificationSettingsRequest
    ) -> v1.NotificationSettings:
        """Replace the caller's settings (mutes excepted)."""

    @abstractmethod
    async def set_issue_mute(self, request: v1.SetIssueMuteRequest) -> v1.NotificationSettings:
        """Mute or unmute an issue the caller may view."""

    @abstractmethod
    async def get_issue_audience(self, request: v1.GetIssueAudienceRequest) -> v1.IssueAudience:
        """Starrers, component subscribers and muters of an issue (admin callers only)."""

    @abstractmethod
    async def get_notification_views(
        self, request: v1.GetNotificationViewsRequest
    ) -> v1.NotificationViews:
        """An issue, entries, audience, and which ``viewers`` may see it (the notifier).

        Admin callers only. ``request.viewers`` are verified identities by the time a backend sees
        them (the servicer replaces them with the assertions' callers).
        """

    @abstractmethod
    async def list_saved_search_subscriptions(
        self, request: v1.ListSavedSearchSubscriptionsRequest
    ) -> v1.ListSavedSearchSubscriptionsResponse:
        """Every saved-search subscription with its search (admin callers only).

        The answer's ``version`` moves in the transaction of every subscribe,
        unsubscribe, and edit or deletion of a saved search, and is read
        before the page; asked with the current one (``changed_after``), the
        answer is that version alone, no rows. The notifier lists the whole
        set again only when it moved (``FollowContract``).
        """

    # ---- edits and redaction ----

    @abstractmethod
    async def edit_comment(self, request: v1.EditCommentRequest) -> v1.ChangeIssueResponse:
        """The comment's author replaces its text: a new entry supersedes the old one."""

    @abstractmethod
    async def redact(self, request: v1.RedactRequest) -> v1.ChangeIssueResponse:
        """Remove a comment, description or attachment content; record who and what."""

    # ---- import ----

    @abstractmethod
    async def import_issue(self, request: v1.ImportIssueRequest) -> v1.ImportIssueResponse:
        """Create or extend an imported issue, idempotently by its external id.

        The servicer has checked the caller's import permission and the
        request's shape. A new external id creates the issue with entry 1 at
        ``created_at`` by the reporter, then one entry per history item; a
        known one appends only the items beyond those imported before, and
        writes nothing when there are none.
        """

    async def import_issues(
        self, caller: v1.Caller | None, items: list[v1.ImportIssueRequest]
    ) -> list[v1.ImportIssueResult]:
        """Import each item as :meth:`import_issue` would, answering each on its own.

        The servicer has checked every item. Answers carry the issue id only
        (no read-back). This default calls :meth:`import_issue` per item;
        backends override it to skip the read-back.
        """
        results = []
        for item in items:
            item.caller = caller
            try:
                answer = await self.import_issue(item)
            except BuglessError as exc:
                results.append(
                    v1.ImportIssueResult(
                        external_id=item.external_id,
                        code=int(exc.grpc_status.value),
                        message=exc.message,
                    )
                )
            else:
                results.append(
                    v1.ImportIssueResult(
                        external_id=item.external_id,
                        issue_id=answer.issue.id if answer.issue else 0,
                        created=answer.created,
                        entries_written=answer.entries_written,
                    )
                )
        return results

    # ---- attachments ----

    @abstractmethod
    async def upload_attachment(
        self, header: v1.UploadAttachmentHeader, content: AsyncIterator[bytes]
    ) -> v1.UploadAttachmentResponse:
        """Store ``content`` in the blob store and attach it by a new entry.

        Checks access and the limits before reading the content (the
        declared size), while it streams (the size limit) and at the end
        (the sniffed type, the issue's total under its lock). Nothing is kept
        when it fails: content no attachment refers to leaves the store.
        """

    @abstractmethod
    async def open_attachment(
        self, request: v1.DownloadAttachmentRequest
    ) -> tuple[v1.Attachment, BlobReader]:
        """A visible attachment and a reader over its content (or the range asked for)."""

    @abstractmethod
    async def get_attachment(self, request: v1.GetAttachmentRequest) -> v1.Attachment:
        """One attachment of a visible issue, else NotFound."""

    @abstractmethod
    async def list_attachments(
        self, request: v1.ListAttachmentsRequest
    ) -> v1.ListAttachmentsResponse:
        """A visible issue's attachments, oldest first."""

    @abstractmethod
    async def delete_attachment(
        self, request: v1.DeleteAttachmentRequest
    ) -> v1.ChangeIssueResponse:
        """Detach (uploader or component admin) by a new entry; drop unreferenced content."""

    @abstractmethod
    async def sweep_orphaned_content(self, grace_seconds: float) -> int:
        """Remove stored content no attachment refers to, older than ``grace_seconds``.

        Content is stored before it is attached; a Model that dies in
        between (or whose cleanup fails) leaves it in the store with nothing
        referring to it, and a put killed midway may leave pieces. This finds
        both from the store's side, so nothing leaks however a process ended.
        Returns how many contents and pieces were removed.
        """

    # ---- custom fields ----

    @abstractmethod
    async def create_custom_field(self, request: v1.CreateCustomFieldRequest) -> v1.CustomField:
        """Define a field on a component (admin there); its subtree inherits it."""

    @abstractmethod
    async def list_custom_fields(
        self, request: v1.ListCustomFieldsRequest
    ) -> v1.ListCustomFieldsResponse:
        """The fields that apply to a visible component's issues, root first."""

    @abstractmethod
    async def update_custom_field(self, request: v1.UpdateCustomFieldRequest) -> v1.CustomField:
        """Change the masked parts of a definition (admin on its component)."""

    @abstractmethod
    async def delete_custom_field(self, request: v1.DeleteCustomFieldRequest) -> v1.DeleteResponse:
        """Delete a definition and its values; history keeps the old values."""

    # ---- components ----

    @abstractmethod
    async def create_component(self, request: v1.CreateComponentRequest) -> v1.Component:
        """Create a component under a parent the caller administers."""

    @abstractmethod
    async def get_component(self, request: v1.GetComponentRequest) -> v1.Component:
        """By id or path; NotFound when not visible."""

    @abstractmethod
    async def list_components(self, request: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        """Visible components in path order."""

    @abstractmethod
    async def update_component(self, request: v1.UpdateComponentRequest) -> v1.Component:
        """Rename, move, archive, describe, re-template or re-ACL a component."""

    @abstractmethod
    async def check_viewers(
        self, request: v1.CheckViewersRequest, viewers: Sequence[v1.Caller]
    ) -> v1.CheckViewersResponse:
        """Of ``viewers``, who cannot view the component (``NO_ACCESS``), in their order.

        ``viewers`` are the people ``request.user_ids`` names who can sign in,
        with their groups and ``admin`` as the Authenticator knows them (the
        servicer asks it, and answers for the others itself). The answer
        names the component's path and never why a role is missing: the
        caller learns no groups and no hidden ACL entries.

        Raises:
            NotFound: no such component, or the caller may not view it.
        """

    # ---- hotlists ----

    @abstractmethod
    async def create_hotlist(self, request: v1.CreateHotlistRequest) -> v1.Hotlist:
        """Create a hotlist owned by the caller."""

    @abstractmethod
    async def get_hotlist(self, request: v1.GetHotlistRequest) -> v1.Hotlist:
        """One visible hotlist."""

    @abstractmethod
    async def list_hotlists(self, request: v1.ListHotlistsRequest) -> v1.ListHotlistsResponse:
        """Visible hotlists, optionally those of one member."""

    @abstractmethod
    async def update_hotlist(self, request: v1.UpdateHotlistRequest) -> v1.Hotlist:
        """Change the fields named in the mask (owner or editor)."""

    @abstractmethod
    async def delete_hotlist(self, request: v1.DeleteHotlistRequest) -> v1.DeleteResponse:
        """Delete a hotlist (owner only)."""

    @abstractmethod
    async def add_hotlist_items(self, request: v1.AddHotlistItemsRequest) -> v1.Hotlist:
        """Add issues at a position; existing items keep their place."""

    @abstractmethod
    async def remove_hotlist_items(self, request: v1.RemoveHotlistItemsRequest) -> v1.Hotlist:
        """Remove issues from the hotlist."""

    @abstractmethod
    async def rank_hotlist_item(self, request: v1.RankHotlistItemRequest) -> v1.Hotlist:
        """Move one item to a position."""

    @abstractmethod
    async def set_hotlist_item_note(self, request: v1.SetHotlistItemNoteRequest) -> v1.HotlistItem:
        """Set the note of one item."""

    @abstractmethod
    async def list_hotlist_items(
        self, request: v1.ListHotlistItemsRequest
    ) -> v1.ListHotlistItemsResponse:
        """Items in rank order with the visible issues."""

    # ---- saved searches ----

    @abstractmethod
    async def create_saved_search(self, request: v1.CreateSavedSearchRequest) -> v1.SavedSearch:
        """Store a query for the caller."""

    @abstractmethod
    async def list_saved_searches(
        self, request: v1.ListSavedSearchesRequest
    ) -> v1.ListSavedSearchesResponse:
        """The caller's own saved searches, plus shared ones unless owned_only."""

    @abstractmethod
    async def update_saved_search(self, request: v1.UpdateSavedSearchRequest) -> v1.SavedSearch:
        """Change a saved search (owner only)."""

    @abstractmethod
    async def delete_saved_search(self, request: v1.DeleteSavedSearchRequest) -> v1.DeleteResponse:
        """Delete a saved search (owner only)."""


def batch_create_failure(error: BuglessError) -> v1.BatchCreateResult:
    """The result of a batch item whose CreateIssue would have failed with ``error``."""
    return v1.BatchCreateResult(
        code=int(error.grpc_status.value),
        message=error.message,
        reason=error.reason,
        metadata=dict(error.metadata),
    )
