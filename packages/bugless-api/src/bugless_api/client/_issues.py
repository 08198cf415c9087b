"""Issue calls of the client: search, read, create, change, history, watch."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence

from bugless_api.client._base import (
    ClientBase,
    check_wire_ranges,
    checked_ids,
    client_mistake,
    enum_value,
    page,
)
from bugless_api.client._custom_values import FieldValue, named_values
from bugless_api.client._watch import resuming_watch
from bugless_core.clients import follow_pages
from bugless_core.deltas import issue_delta
from bugless_core.errors import InvalidArgument
from bugless_core.ids import check_id
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


def new_idempotency_key() -> str:
    """A fresh key for one create: retries of that create send the same key."""
    return f"client-{uuid.uuid4()}"


class IssueCalls(ClientBase):
    """``bugless.v1.Issues``."""

    async def search_issues(
        self,
        query: str = "",
        *,
        structured: v1.StructuredQuery | None = None,
        page_size: int = 0,
        page_token: str = "",
        summary: bool = False,
        time_zone: str | None = None,
        read_mask: Iterable[str] | None = None,
    ) -> v1.SearchIssuesResponse:
        """One page of the issues matching ``query`` (the search language).

        With ``summary``, each issue comes without its description and cc
        list (less for the services to read and send, for a listing). With
        ``read_mask`` (Issue field names: ``"title"``, ``"status"``, ...),
        each issue may come with only those fields and its id, the rest at
        their defaults: what a list of a few columns needs. Days in
        the query (``created>today-7``) run midnight to midnight in
        ``time_zone``, an IANA name (the client's when None; UTC when empty).
        """
        request = v1.QuerySearchRequest(
            query=query,
            structured=structured,
            page=page(page_size, page_token),
            summary=summary,
            time_zone=self.time_zone if time_zone is None else time_zone,
            read_mask=FieldMask(paths=list(read_mask)) if read_mask else None,
        )
        return await self._call(self.issues.search_issues, request, idempotent=True)

    async def iter_issues(
        self,
        query: str = "",
        *,
        limit: int | None = None,
        page_size: int = 100,
        time_zone: str | None = None,
        read_mask: Iterable[str] | None = None,
    ) -> AsyncGenerator[v1.Issue, None]:
        """Every issue matching ``query``, page by page (at most ``limit``).

        ``read_mask`` asks each page for only those fields (and the ids), as
        :meth:`search_issues` does: a script going through a thousand issues
        for their titles has no descriptions or cc lists read and sent.
        """
        mask = list(read_mask) if read_mask is not None else None

        async def fetch(token: str, size: int) -> v1.SearchIssuesResponse:
            return await self.search_issues(
                query, page_size=size, page_token=token, time_zone=time_zone, read_mask=mask
            )

        yielded = 0
        pages = follow_pages(
            fetch, page_size=page_size, limit=limit, count=lambda found: len(found.issues)
        )
        async for found in pages:
            for issue in found.issues:
                if limit is not None and yielded >= limit:
                    return
                yield issue
                yielded += 1

    async def get_issue(self, issue_id: int) -> v1.Issue:
        """One issue (NotFound when it does not exist or is not visible)."""
        check_id(issue_id, "issue_id")
        return await self._call(
            self.issues.get_issue, v1.GetIssueRequest(issue_id=issue_id), idempotent=True
        )

    async def check_viewers(
        self, issue_id: int, usernames: Iterable[str] = ()
    ) -> v1.CheckViewersResponse:
        """Which of the people an issue names cannot view it, and why.

        ``usernames`` (at most 100) must be people the issue names (assignee,
        verifier, CC, people in its USER custom fields): none asks about all
        of them. ``cannot_view`` lists those who cannot, in the order given,
        each with its reason (``NO_ACCESS``, ``UNKNOWN_USER``,
        ``CANNOT_SIGN_IN``): they will not see the issue or get mail about it.
        Ask it after naming people. NOT_FOUND unless you can view the issue;
        InvalidArgument for a username the issue does not name.
        """
        check_id(issue_id, "issue_id")
        request = v1.CheckIssueViewersRequest(issue_id=issue_id, user_ids=list(usernames))
        return await self._call(self.issues.check_viewers, request, idempotent=True)

    async def batch_get_issues(
        self, issue_ids: Sequence[int], *, read_mask: Iterable[str] | None = None
    ) -> v1.BatchGetIssuesResponse:
        """Several issues at once (at most 500), in the order asked; the rest in ``missing_ids``.

        With ``read_mask`` (Issue field names: ``"title"``, ``"status"``,
        ...), each issue may come with only those fields and its id, the
        rest at their defaults: a bot reading titles and statuses has no
        descriptions, cc lists or custom values read and sent.
        """
        request = v1.BatchGetIssuesRequest(
            issue_ids=checked_ids(issue_ids, "issue_ids"),
            read_mask=FieldMask(paths=list(read_mask)) if read_mask else None,
        )
        return await self._call(self.issues.batch_get_issues, request, idempotent=True)

    async def create_issue(
        self,
        title: str,
        component_id: int,
        *,
        description: str = "",
        status: v1.Status | str | None = None,
        priority: v1.Priority | str | None = None,
        severity: v1.Severity | str | None = None,
        type: v1.IssueType | str | None = None,
        assignee: str = "",
        verifier: str = "",
        cc: Iterable[str] = (),
        hotlist_ids: Iterable[int] = (),
        blocking_ids: Iterable[int] = (),
        blocked_by_ids: Iterable[int] = (),
        idempotency_key: str | None = None,
        custom_fields: Iterable[v1.CustomFieldValue] = (),
        fields: Mapping[str, FieldValue] | None = None,
    ) -> v1.Issue:
        """Create an issue; safe to retry.

        ``fields`` sets custom fields by name (``{"Found In": "4.2", "OS":
        ["linux", "mac"], "Build": 1234}``): the client finds the fields that
        apply to the component (once per component, kept for later calls,
        looked up again when a name or option is not among those kept) and
        checks each value against its field's type before anything is sent.
        ``custom_fields`` are prepared values by field id
        (:func:`bugless_api.client.custom_values` makes them from
        ``Name=value`` text). Required fields left out take their defaults.

        The request carries ``idempotency_key`` (a fresh one when not given):
        the Model creates one issue per key, so a retried call, or a command
        run again with the same key, returns the issue made the first time.
        """
        check_id(component_id, "component_id")
        issue_fields = v1.IssueFields(
            title=title, component_id=component_id, assignee=assignee, verifier=verifier
        )
        if status is not None:
            issue_fields.status = enum_value(v1.Status, status, "status")
        if priority is not None:
            issue_fields.priority = enum_value(v1.Priority, priority, "priority")
        if severity is not None:
            issue_fields.severity = enum_value(v1.Severity, severity, "severity")
        if type is not None:
            issue_fields.type = enum_value(v1.IssueType, type, "type")
        values = await self._with_named_values(component_id, custom_fields, fields)
        request = v1.CreateIssueRequest(
            fields=issue_fields,
            description=description,
            cc=list(cc),
            hotlist_ids=checked_ids(hotlist_ids, "hotlist_ids"),
            blocking_ids=checked_ids(blocking_ids, "blocking_ids"),
            blocked_by_ids=checked_ids(blocked_by_ids, "blocked_by_ids"),
            idempotency_key=idempotency_key or new_idempotency_key(),
            custom_fields=values,
        )
        return await self._call(self.issues.create_issue, request, idempotent=True)

    async def change_issue(
        self, issue_id: int, expected_version: int, delta: v1.IssueDelta, *, comment: str = ""
    ) -> v1.ChangeIssueResponse:
        """Apply a prepared delta (custom fields, say) at ``expected_version``; not retried."""
        check_id(issue_id, "issue_id")
        request = v1.ChangeIssueRequest(
            issue_id=issue_id, expected_version=expected_version, delta=delta, comment=comment
        )
        return await self._call(self.issues.change_issue, request, idempotent=False)

    async def update_issue(
        self,
        issue_id: int,
        *,
        expected_version: int | None = None,
        comment: str = "",
        title: str | None = None,
        status: v1.Status | str | None = None,
        priority: v1.Priority | str | None = None,
        severity: v1.Severity | str | None = None,
        type: v1.IssueType | str | None = None,
        component_id: int | None = None,
        assignee: str | None = None,
        verifier: str | None = None,
        parent_id: int | None = None,
        duplicate_of_id: int | None = None,
        cc_add: Iterable[str] = (),
        cc_remove: Iterable[str] = (),
        hotlist_add: Iterable[int] = (),
        hotlist_remove: Iterable[int] = (),
        blocking_add: Iterable[int] = (),
        blocking_remove: Iterable[int] = (),
        blocked_by_add: Iterable[int] = (),
        blocked_by_remove: Iterable[int] = (),
        custom_fields_set: Iterable[v1.CustomFieldValue] = (),
        fields: Mapping[str, FieldValue] | None = None,
    ) -> v1.ChangeIssueResponse:
        """Change fields (those given; ``""`` clears a person) and/or comment, atomically.

        Without ``expected_version`` the issue is fetched first and the change
        is made against its current version; either way a concurrent change
        makes this fail with :class:`~bugless_core.errors.IssueVersionConflict`
        rather than overwrite it. Not retried when unavailable (the change
        may have been applied). ``parent_id=0``/``duplicate_of_id=0`` clear.

        ``fields`` sets custom fields by name, as :meth:`create_issue` does
        (None clears one), among those of ``component_id`` when it is given,
        else of the issue's component (the issue is then read first, even
        with ``expected_version``).
        """
        check_id(issue_id, "issue_id")
        if fields:
            if component_id is None or expected_version is None:
                current = await self.get_issue(issue_id)
                if expected_version is None:
                    expected_version = current.version
                target = current.component_id if component_id is None else component_id
            else:
                target = check_id(component_id, "component_id")
            custom_fields_set = await self._with_named_values(target, custom_fields_set, fields)
        delta = self.delta(
            title=title,
            status=status,
            priority=priority,
            severity=severity,
            type=type,
            component_id=component_id,
            assignee=assignee,
            verifier=verifier,
            parent_id=parent_id,
            duplicate_of_id=duplicate_of_id,
            cc_add=cc_add,
            cc_remove=cc_remove,
            hotlist_add=hotlist_add,
            hotlist_remove=hotlist_remove,
            blocking_add=blocking_add,
            blocking_remove=blocking_remove,
            blocked_by_add=blocked_by_add,
            blocked_by_remove=blocked_by_remove,
            custom_fields_set=custom_fields_set,
        )
        if expected_version is None:
            expected_version = (await self.get_issue(issue_id)).version
        return await self.change_issue(issue_id, expected_version, delta, comment=comment)

    async def custom_field_values(
        self, component_id: int, fields: Mapping[str, FieldValue]
    ) -> list[v1.CustomFieldValue]:
        """``fields`` (by name) as prepared values for issues of ``component_id``.

        What :meth:`create_issue` and :meth:`update_issue` do with their
        ``fields``, for a call that takes prepared values (a
        :meth:`delta` for :meth:`batch_change_issues`): the same lookup, kept
        list and checks, the same errors.

        Raises:
            InvalidArgument: (a client mistake) an unknown name, a field named
                twice, or a value that does not fit its field.
        """
        check_id(component_id, "component_id")
        return await self._with_named_values(component_id, (), fields)

    async def _with_named_values(
        self,
        component_id: int,
        prepared: Iterable[v1.CustomFieldValue],
        fields: Mapping[str, FieldValue] | None,
    ) -> list[v1.CustomFieldValue]:
        """``prepared`` and ``fields`` (by name, for issues of ``component_id``) as one list.

        The component's fields come from the client's copy when it has one;
        a name or value that copy refuses is checked again against a fresh
        list (a field or option an admin added since), and only a refusal by
        the fresh list is raised.

        Raises:
            InvalidArgument: (a client mistake) an unknown name, a value that
                does not fit, or a field set both here and in ``prepared``.
        """
        values = list(prepared)
        if not fields:
            return values
        named: list[v1.CustomFieldValue] | None = None
        cached = self._custom_fields.get(component_id)
        if cached is not None:
            with contextlib.suppress(InvalidArgument):
                named = named_values(cached, fields)
        if named is None:
            request = v1.ListCustomFieldsRequest(component_id=component_id)
            response = await self._call(
                self.components.list_custom_fields, request, idempotent=True
            )
            fresh = self._custom_fields[component_id] = list(response.custom_fields)
            named = named_values(fresh, fields)
        already = {value.field_id for value in values}
        for value in named:
            if value.field_id in already:
                raise client_mistake(
                    f"fields: custom field {value.field_id} is also in the prepared values"
                )
        return values + named

    @staticmethod
    def delta(
        *,
        title: str | None = None,
        status: v1.Status | str | None = None,
        priority: v1.Priority | str | None = None,
        severity: v1.Severity | str | None = None,
        type: v1.IssueType | str | None = None,
        component_id: int | None = None,
        assignee: str | None = None,
        verifier: str | None = None,
        parent_id: int | None = None,
        duplicate_of_id: int | None = None,
        cc_add: Iterable[str] = (),
        cc_remove: Iterable[str] = (),
        hotlist_add: Iterable[int] = (),
        hotlist_remove: Iterable[int] = (),
        blocking_add: Iterable[int] = (),
        blocking_remove: Iterable[int] = (),
        blocked_by_add: Iterable[int] = (),
        blocked_by_remove: Iterable[int] = (),
        custom_fields_set: Iterable[v1.CustomFieldValue] = (),
    ) -> v1.IssueDelta:
        """The IssueDelta of the given changes, ids checked and enum names read.

        Raises:
            InvalidArgument: An id out of range or an unknown enum name (before
                anything is sent).
        """
        if component_id is not None:
            check_id(component_id, "component_id")
        for value, name in ((parent_id, "parent_id"), (duplicate_of_id, "duplicate_of_id")):
            if value is not None:
                check_id(value, name, allow_zero=True)
        delta = issue_delta(
            title=title,
            status=None if status is None else enum_value(v1.Status, status, "status"),
            priority=None if priority is None else enum_value(v1.Priority, priority, "priority"),
            severity=None if severity is None else enum_value(v1.Severity, severity, "severity"),
            issue_type=None if type is None else enum_value(v1.IssueType, type, "type"),
            component_id=component_id,
            assignee=assignee,
            verifier=verifier,
            parent_id=parent_id,
            duplicate_of_id=duplicate_of_id,
            cc_add=cc_add,
            cc_remove=cc_remove,
            hotlist_add=checked_ids(hotlist_add, "hotlist_add"),
            hotlist_remove=checked_ids(hotlist_remove, "hotlist_remove"),
            blocking_add=checked_ids(blocking_add, "blocking_add"),
            blocking_remove=checked_ids(blocking_remove, "blocking_remove"),
            blocked_by_add=checked_ids(blocked_by_add, "blocked_by_add"),
            blocked_by_remove=checked_ids(blocked_by_remove, "blocked_by_remove"),
        )
        delta.custom_fields_set = list(custom_fields_set)
        return delta

    async def batch_change_issues(
        self,
        issues: Iterable[tuple[int, int]],
        delta: v1.IssueDelta,
        *,
        comment: str = "",
        atomic: bool = False,
    ) -> v1.BatchChangeIssuesResponse:
        """One delta (and comment) applied to several ``(issue_id, expected_version)``.

        ``atomic=True`` changes all or none (the first failure is raised);
        otherwise each result says what happened to its issue. Not retried.
        """
        versions = []
        for i, (issue_id, version) in enumerate(issues):
            check_id(issue_id, f"issues[{i}].issue_id")
            versions.append(v1.IssueVersion(issue_id=issue_id, expected_version=version))
        request = v1.BatchChangeIssuesRequest(
            issues=versions, delta=delta, comment=comment, atomic=atomic
        )
        return await self._call(self.issues.batch_change_issues, request, idempotent=False)

    async def comment(
        self, issue_id: int, text: str, *, expected_version: int | None = None
    ) -> v1.ChangeIssueResponse:
        """Add a comment (against the current version unless one is given)."""
        return await self.update_issue(issue_id, comment=text, expected_version=expected_version)

    async def edit_comment(
        self, issue_id: int, entry_version: int, text: str, *, expected_version: int | None = None
    ) -> v1.ChangeIssueResponse:
        """Replace the comment of history entry ``entry_version`` (its author only)."""
        check_id(issue_id, "issue_id")
        check_id(entry_version, "entry_version")
        if expected_version is None:
            expected_version = (await self.get_issue(issue_id)).version
        request = v1.EditCommentRequest(
            issue_id=issue_id,
            expected_version=expected_version,
            entry_version=entry_version,
            comment=text,
        )
        return await self._call(self.issues.edit_comment, request, idempotent=False)

    async def redact(
        self,
        issue_id: int,
        *,
        entry_version: int = 0,
        attachment_id: int = 0,
        expected_version: int | None = None,
        description_only: bool = False,
    ) -> v1.ChangeIssueResponse:
        """Remove a comment (``entry_version``) or an attachment's content for good.

        With ``description_only``, the attachment's description goes and its
        content stays.
        """
        check_id(issue_id, "issue_id")
        if bool(entry_version) == bool(attachment_id):
            raise client_mistake("redact: give entry_version or attachment_id")
        if description_only and not attachment_id:
            raise client_mistake("redact: description_only names an attachment_id")
        target = (
            v1.RedactionTarget.COMMENT
            if entry_version
            else v1.RedactionTarget.ATTACHMENT_DESCRIPTION
            if description_only
            else v1.RedactionTarget.ATTACHMENT
        )
        if expected_version is None:
            expected_version = (await self.get_issue(issue_id)).version
        request = v1.RedactRequest(
            issue_id=issue_id,
            expected_version=expected_version,
            target=target,
            entry_version=entry_version,
            attachment_id=attachment_id,
        )
        return await self._call(self.issues.redact, request, idempotent=False)

    async def list_history(
        self, issue_id: int, *, page_size: int = 0, page_token: str = ""
    ) -> v1.ListHistoryResponse:
        """One page of an issue's history, oldest first."""
        check_id(issue_id, "issue_id")
        request = v1.ListHistoryRequest(issue_id=issue_id, page=page(page_size, page_token))
        return await self._call(self.issues.list_history, request, idempotent=True)

    async def iter_history(self, issue_id: int) -> AsyncIterator[v1.HistoryEntry]:
        """Every entry of an issue's history, oldest first, page by page."""

        async def fetch(token: str, size: int) -> v1.ListHistoryResponse:
            return await self.list_history(issue_id, page_size=size, page_token=token)

        async for found in follow_pages(fetch, page_size=500):
            for entry in found.entries:
                yield entry

    async def watch(
        self,
        *,
        issue_id: int | None = None,
        query: str | None = None,
        time_zone: str | None = None,
        after_position: int | None = None,
        reconnect: bool = True,
    ) -> AsyncGenerator[v1.WatchEvent, None]:
        """Changes as they are committed, for one issue or a query (no deadline).

        The first event has ``subscribed=True`` and no issue or entry: it
        arrives once the watch is in place, so a change made after it is
        always delivered. Skip it when only changes matter. Days in ``query``
        run in ``time_zone`` (an IANA name; the client's when None).

        Every event carries ``position``, the change feed position of its
        change (the marker: the one the watch is live from). A script that
        stores the position of the last event it handled and passes it as
        ``after_position`` next time first gets every matching change made
        while it was not running, then live ones.

        ``event.entry`` is the change itself (its author, time, comment and
        each field's old and new value, ``entry.changes``); ``event.issue``
        is the issue as it is when the event is sent, which the query was
        judged on. Replayed changes of an issue changed since all carry its
        current state (``issue.version > entry.version``), so read what a
        change did from its entry, not by comparing issues.

        With ``query``, a change that made an issue stop matching it (closed,
        reassigned, moved away) is an event with ``left_query=True``: a
        script keeping the matching issues drops ``event.issue.id``. When the
        watcher may no longer view the issue, ``event.issue`` holds only its
        id (``version`` 0) and ``event.entry`` only ``issue_id`` and
        ``version``. A resumed watch yields the same ``left_query`` events as
        the live one did (they are judged on the issue before and after the
        change, not when sent).

        Once in place (the marker came), the stream survives restarts and
        network cuts: when it ends or is UNAVAILABLE, the client reconnects
        (backing off as its :class:`RetryPolicy`, for as long as it takes,
        logging each attempt on the ``bugless.client`` logger) and resumes
        after the last change it yielded, so each change is yielded once, in
        order; the marker only once. ``reconnect=False``, or before the
        marker came: the first end or failure ends the watch
        (``Unavailable`` when the API is not reached).

        Raises:
            FeedPositionPruned: ``after_position`` (or the position of a
                reconnection, after a very long outage) is older than the
                feed's retention: the changes since are gone. Re-read the
                current state and watch again without a position.
            InvalidArgument: a position beyond the feed's head, a bad query.
            FailedPrecondition: a custom field the query names was deleted or
                renamed while the watch was open (reason
                ``WATCHED_FIELD_CHANGED``, the message names it): watch again
                with a query that names fields that exist.
        """
        if issue_id is not None:
            check_id(issue_id, "issue_id")
        # An int64 on the wire: a larger one would wrap into another position.
        if after_position is not None and not 0 <= after_position < 2**63:
            raise client_mistake("after_position: must be 0 or a position an event carried")
        zone = self.time_zone if time_zone is None else time_zone
        request = v1.QueryWatchRequest(
            issue_id=issue_id, query=query, time_zone=zone, after_position=after_position
        )
        check_wire_ranges(request)
        async for event in resuming_watch(
            self.issues.watch,
            request,
            channel=self.channel,
            unreachable=self.unreachable,
            retry=self.retry,
            reconnect=reconnect,
        ):
            yield event
