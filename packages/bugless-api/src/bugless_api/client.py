"""The Python client of the bugless API, for bots and scripts.

::

    async with BuglessClient("bugless-api.example:50053", cert="bot.pem",
                             key="bot.key", ca="ca.pem") as bugless:
        for issue in (await bugless.search_issues("is:open assignee:me p<p2")).issues:
            await bugless.comment(issue.id, "triaged by bot")

People are usernames; the caller is whoever the client certificate maps to.
Failures raise the :mod:`bugless_core.errors` classes (``NotFound``,
``IssueVersionConflict`` with ``current_version``, ``PermissionDenied``, ...).
Reads, and creates (which carry an idempotency key the client generates), are
retried with exponential backoff when the service is unavailable; every call
is retried after the server's ``retry-after`` when it is rate limited, since a
rate-limited call was not executed. :class:`SyncBuglessClient` is the same
client for code without an event loop.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from grpclib.client import Channel

from bugless_core import eventloop
from bugless_core.clients import (
    ServiceAddress,
    call,
    call_errors,
    channel_connection,
    forget_connection,
)
from bugless_core.deltas import issue_delta
from bugless_core.enums import enum_by_name
from bugless_core.errors import InvalidArgument, ResourceExhausted, Unavailable
from bugless_core.ids import check_id
from bugless_proto import v1

P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long the client waits before trying a call again.

    Attributes:
        attempts: Tries in all (1 = no retries).
        initial_backoff: Seconds before the first retry of an unavailable call.
        max_backoff: Upper bound of one wait (also caps a server's retry-after).
        multiplier: Growth of the wait per attempt; full jitter is applied.
    """

    attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0

    def delay(self, attempt: int, error: Exception) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        if isinstance(error, ResourceExhausted) and error.retry_after is not None:
            return min(self.max_backoff, max(error.retry_after, 0.0))
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        return random.uniform(0, ceiling)


def enum_value(cls: type[E], value: E | str, what: str) -> E:
    """``cls`` member for an enum or a name such as ``"P1"``, ``"fixed"``, ``"wont-fix-obsolete"``.

    Read by :func:`bugless_core.enums.enum_by_name`; a name it refuses is the
    caller's mistake, found before anything is sent (the CLI exits with its
    usage code).

    Raises:
        InvalidArgument: The name is not a member; the message lists them.
    """
    try:
        return enum_by_name(cls, value, what)
    except InvalidArgument as exc:
        raise InvalidArgument(exc.message, metadata={**exc.metadata, "origin": "client"}) from None


class BuglessClient:
    """Async client of the bugless public API; use it as an async context manager.

    Attributes:
        account: Raw stub of ``bugless.v1.Account`` (any call, no retries).
        issues: Raw stub of ``bugless.v1.Issues``.
        components: Raw stub of ``bugless.v1.Components``.
        hotlists: Raw stub of ``bugless.v1.Hotlists``.
        saved_searches: Raw stub of ``bugless.v1.SavedSearches``.
    """

    def __init__(
        self,
        address: str,
        cert: Path | str,
        key: Path | str,
        ca: Path | str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Prepare a client of ``address`` (``host:port``); connects on first call.

        Args:
            address: The API frontend.
            cert: PEM client certificate (its subject is mapped to your user).
            key: Its private key.
            ca: PEM bundle that signed the API server's certificate.
            timeout: Deadline of each call, in seconds.
            retry: Retry policy; the default tries up to 4 times.
        """
        self.address = ServiceAddress.parse(address, ca=Path(ca), cert=Path(cert), key=Path(key))
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._channel: Channel = self.address.channel()
        self.account = v1.AccountStub(self._channel)
        self.issues = v1.IssuesStub(self._channel)
        self.components = v1.ComponentsStub(self._channel)
        self.hotlists = v1.HotlistsStub(self._channel)
        self.saved_searches = v1.SavedSearchesStub(self._channel)

    async def __aenter__(self) -> BuglessClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: object, *, idempotent: bool
    ) -> R:
        attempt = 0
        while True:
            used = channel_connection(self._channel)
            try:
                return await call(method, request, timeout=self.timeout)
            except (Unavailable, ResourceExhausted) as exc:
                # A rate-limited call and a call a draining server refused were
                # never run: retrying them is safe even when not idempotent.
                draining = isinstance(exc, Unavailable) and exc.refused_while_draining
                throttled = isinstance(exc, ResourceExhausted) and exc.retry_after is not None
                retryable = throttled or idempotent or draining
                if not retryable or attempt + 1 >= self.retry.attempts:
                    raise
                if draining:
                    # That connection leads back to the draining replica: the
                    # retry goes down a new one, to whichever replica answers.
                    forget_connection(self._channel, used)
                await asyncio.sleep(self.retry.delay(attempt, exc))
                attempt += 1

    # ---- account ----

    async def whoami(self) -> v1.Identity:
        """Who the client certificate authenticates as."""
        return await self._call(self.account.who_am_i, v1.WhoAmIRequest(), idempotent=True)

    # ---- issues ----

    async def search_issues(
        self,
        query: str = "",
        *,
        structured: v1.StructuredQuery | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> v1.SearchIssuesResponse:
        """One page of the issues matching ``query`` (the search language)."""
        request = v1.QuerySearchRequest(
            query=query,
            structured=structured,
            page=v1.PageRequest(page_size=page_size, page_token=page_token),
        )
        return await self._call(self.issues.search_issues, request, idempotent=True)

    async def iter_issues(
        self, query: str = "", *, limit: int | None = None, page_size: int = 100
    ) -> AsyncIterator[v1.Issue]:
        """Every issue matching ``query``, page by page (at most ``limit``)."""
        token = ""
        yielded = 0
        while True:
            page = await self.search_issues(query, page_size=page_size, page_token=token)
            for issue in page.issues:
                if limit is not None and yielded >= limit:
                    return
                yield issue
                yielded += 1
            token = page.next_page_token
            if not token:
                return

    async def get_issue(self, issue_id: int) -> v1.Issue:
        """One issue (NotFound when it does not exist or is not visible)."""
        check_id(issue_id, "issue_id")
        return await self._call(
            self.issues.get_issue, v1.GetIssueRequest(issue_id=issue_id), idempotent=True
        )

    async def batch_get_issues(self, issue_ids: Sequence[int]) -> v1.BatchGetIssuesResponse:
        """Several issues at once (at most 500)."""
        request = v1.BatchGetIssuesRequest(issue_ids=_checked(issue_ids, "issue_ids"))
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
    ) -> v1.Issue:
        """Create an issue; safe to retry (a generated idempotency key is sent)."""
        check_id(component_id, "component_id")
        fields = v1.IssueFields(
            title=title, component_id=component_id, assignee=assignee, verifier=verifier
        )
        if status is not None:
            fields.status = enum_value(v1.Status, status, "status")
        if priority is not None:
            fields.priority = enum_value(v1.Priority, priority, "priority")
        if severity is not None:
            fields.severity = enum_value(v1.Severity, severity, "severity")
        if type is not None:
            fields.type = enum_value(v1.IssueType, type, "type")
        request = v1.CreateIssueRequest(
            fields=fields,
            description=description,
            cc=list(cc),
            hotlist_ids=_checked(hotlist_ids, "hotlist_ids"),
            blocking_ids=_checked(blocking_ids, "blocking_ids"),
            blocked_by_ids=_checked(blocked_by_ids, "blocked_by_ids"),
            idempotency_key=idempotency_key or f"client-{uuid.uuid4()}",
        )
        return await self._call(self.issues.create_issue, request, idempotent=True)

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
    ) -> v1.ChangeIssueResponse:
        """Change fields (those given; ``""`` clears a person) and/or comment, atomically.

        Without ``expected_version`` the issue is fetched first and the change
        is made against its current version; either way a concurrent change
        makes this fail with :class:`~bugless_core.errors.IssueVersionConflict`
        rather than overwrite it. Not retried when unavailable (the change
        may have been applied).
        """
        check_id(issue_id, "issue_id")
        if component_id is not None:
            check_id(component_id, "component_id")
        for value, name in ((parent_id, "parent_id"), (duplicate_of_id, "duplicate_of_id")):
            if value is not None:
                check_id(value, name, allow_zero=True)
        hotlist_add = _checked(hotlist_add, "hotlist_add")
        hotlist_remove = _checked(hotlist_remove, "hotlist_remove")
        blocking_add = _checked(blocking_add, "blocking_add")
        blocking_remove = _checked(blocking_remove, "blocking_remove")
        blocked_by_add = _checked(blocked_by_add, "blocked_by_add")
        blocked_by_remove = _checked(blocked_by_remove, "blocked_by_remove")
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
            hotlist_add=hotlist_add,
            hotlist_remove=hotlist_remove,
            blocking_add=blocking_add,
            blocking_remove=blocking_remove,
            blocked_by_add=blocked_by_add,
            blocked_by_remove=blocked_by_remove,
        )
        if expected_version is None:
            expected_version = (await self.get_issue(issue_id)).version
        request = v1.ChangeIssueRequest(
            issue_id=issue_id, expected_version=expected_version, delta=delta, comment=comment
        )
        return await self._call(self.issues.change_issue, request, idempotent=False)

    async def comment(
        self, issue_id: int, text: str, *, expected_version: int | None = None
    ) -> v1.ChangeIssueResponse:
        """Add a comment (against the current version unless one is given)."""
        return await self.update_issue(issue_id, comment=text, expected_version=expected_version)

    async def list_history(
        self, issue_id: int, *, page_size: int = 0, page_token: str = ""
    ) -> v1.ListHistoryResponse:
        """One page of an issue's history, oldest first."""
        check_id(issue_id, "issue_id")
        request = v1.ListHistoryRequest(
            issue_id=issue_id, page=v1.PageRequest(page_size=page_size, page_token=page_token)
        )
        return await self._call(self.issues.list_history, request, idempotent=True)

    async def watch(
        self, *, issue_id: int | None = None, query: str | None = None
    ) -> AsyncIterator[v1.WatchEvent]:
        """Changes as they are committed, for one issue or a query (no deadline).

        The first event has ``subscribed=True`` and no issue or entry: it
        arrives once the watch is in place, so a change made after it is
        always delivered. Skip it when only changes matter.
        """
        if issue_id is not None:
            check_id(issue_id, "issue_id")
        request = v1.QueryWatchRequest(issue_id=issue_id, query=query)
        with call_errors("the bugless API is unreachable"):
            async for event in self.issues.watch(request):
                yield event

    # ---- components ----

    async def list_components(
        self, *, parent_id: int = 0, include_archived: bool = False
    ) -> list[v1.Component]:
        """The visible component tree (or one component's children), every page."""
        check_id(parent_id, "parent_id", allow_zero=True)
        found: list[v1.Component] = []
        token = ""
        while True:
            request = v1.ListComponentsRequest(
                parent_id=parent_id,
                include_archived=include_archived,
                page=v1.PageRequest(page_size=1000, page_token=token),
            )
            page = await self._call(self.components.list_components, request, idempotent=True)
            found.extend(page.components)
            token = page.next_page_token
            if not token:
                return found

    async def get_component(self, key: int | str) -> v1.Component:
        """A component by id or by path (``"Platform>Storage"``)."""
        if isinstance(key, int):
            check_id(key, "component_id")
        request = (
            v1.GetComponentRequest(component_id=key)
            if isinstance(key, int)
            else v1.GetComponentRequest(path=key)
        )
        return await self._call(self.components.get_component, request, idempotent=True)

    async def create_component(
        self,
        name: str,
        *,
        parent_id: int = 0,
        description: str = "",
        acl: Iterable[v1.AclEntry] = (),
    ) -> v1.Component:
        """Create a component (top level needs the create_component permission)."""
        check_id(parent_id, "parent_id", allow_zero=True)
        request = v1.CreateComponentRequest(
            parent_id=parent_id, name=name, description=description, acl=list(acl)
        )
        return await self._call(self.components.create_component, request, idempotent=False)

    # ---- hotlists ----

    async def list_hotlists(self, *, member: str = "") -> list[v1.Hotlist]:
        """Visible hotlists, or those ``member`` owns or edits, every page."""
        found: list[v1.Hotlist] = []
        token = ""
        while True:
            request = v1.ListHotlistsRequest(
                member=member, page=v1.PageRequest(page_size=500, page_token=token)
            )
            page = await self._call(self.hotlists.list_hotlists, request, idempotent=True)
            found.extend(page.hotlists)
            token = page.next_page_token
            if not token:
                return found

    async def get_hotlist(self, hotlist_id: int) -> v1.Hotlist:
        """One hotlist."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.GetHotlistRequest(hotlist_id=hotlist_id)
        return await self._call(self.hotlists.get_hotlist, request, idempotent=True)

    async def create_hotlist(
        self,
        name: str,
        *,
        description: str = "",
        editors: Iterable[str] = (),
        private: bool = False,
    ) -> v1.Hotlist:
        """Create a hotlist owned by you."""
        request = v1.CreateHotlistRequest(
            name=name, description=description, editors=list(editors), private=private
        )
        return await self._call(self.hotlists.create_hotlist, request, idempotent=False)

    async def add_to_hotlist(
        self, hotlist_id: int, issue_ids: Iterable[int], *, position: int = -1, note: str = ""
    ) -> v1.Hotlist:
        """Add issues (appended unless a 0-based position is given)."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.AddHotlistItemsRequest(
            hotlist_id=hotlist_id,
            issue_ids=_checked(issue_ids, "issue_ids"),
            position=position,
            note=note,
        )
        # Adding present issues changes nothing, so a retry is harmless.
        return await self._call(self.hotlists.add_hotlist_items, request, idempotent=True)

    async def remove_from_hotlist(self, hotlist_id: int, issue_ids: Iterable[int]) -> v1.Hotlist:
        """Remove issues."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.RemoveHotlistItemsRequest(
            hotlist_id=hotlist_id, issue_ids=_checked(issue_ids, "issue_ids")
        )
        return await self._call(self.hotlists.remove_hotlist_items, request, idempotent=True)

    async def rank_hotlist_item(self, hotlist_id: int, issue_id: int, position: int) -> v1.Hotlist:
        """Move one issue to a 0-based position."""
        check_id(hotlist_id, "hotlist_id")
        check_id(issue_id, "issue_id")
        request = v1.RankHotlistItemRequest(
            hotlist_id=hotlist_id, issue_id=issue_id, position=position
        )
        return await self._call(self.hotlists.rank_hotlist_item, request, idempotent=True)

    async def list_hotlist_items(
        self, hotlist_id: int
    ) -> tuple[list[v1.HotlistItem], list[v1.Issue]]:
        """Every item in rank order, and the issues among them you may view."""
        check_id(hotlist_id, "hotlist_id")
        items: list[v1.HotlistItem] = []
        issues: list[v1.Issue] = []
        token = ""
        while True:
            request = v1.ListHotlistItemsRequest(
                hotlist_id=hotlist_id, page=v1.PageRequest(page_size=500, page_token=token)
            )
            page = await self._call(self.hotlists.list_hotlist_items, request, idempotent=True)
            items.extend(page.items)
            issues.extend(page.issues)
            token = page.next_page_token
            if not token:
                return items, issues

    async def delete_hotlist(self, hotlist_id: int, *, expected_version: int = 0) -> None:
        """Delete a hotlist (owner or admin)."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.DeleteHotlistRequest(hotlist_id=hotlist_id, expected_version=expected_version)
        await self._call(self.hotlists.delete_hotlist, request, idempotent=False)


def _checked(values: Iterable[int], field: str) -> list[int]:
    """``values`` as a list once each is an id (refused before encoding: no wrap)."""
    found = list(values)
    for i, value in enumerate(found):
        check_id(value, f"{field}[{i}]")
    return found


def _blocking(
    method: Callable[Concatenate[BuglessClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncBuglessClient, P], R]:
    @functools.wraps(method)
    def run(self: SyncBuglessClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._loop.is_closed():
            # Checked before the coroutine exists: one made for a closed loop
            # would never be awaited (a RuntimeWarning far from the mistake).
            raise RuntimeError(f"{method.__name__}: the SyncBuglessClient is closed")
        return self._loop.run_until_complete(method(self._client, *args, **kwargs))

    return run


class SyncBuglessClient:
    """:class:`BuglessClient` for code without an event loop (scripts, notebooks).

    Each method runs the async one to completion on a private event loop; the
    signatures and errors are the same. Use it as a context manager, or call
    :meth:`close`. Not for use from inside a running event loop.
    """

    def __init__(
        self, address: str, cert: Path | str, key: Path | str, ca: Path | str, **options: Any
    ) -> None:
        """Same arguments as :class:`BuglessClient`."""
        self._loop = eventloop.new_event_loop()

        async def make() -> BuglessClient:
            return BuglessClient(address, cert, key, ca, **options)

        try:
            self._client = self._loop.run_until_complete(make())
        except BaseException:
            # Unreadable certificate files and the like: the caller gets no
            # object to close, so the private loop must not outlive this call.
            self._loop.close()
            raise

    def __enter__(self) -> SyncBuglessClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and the private loop."""
        if not self._loop.is_closed():
            self._client.close()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    whoami = _blocking(BuglessClient.whoami)
    search_issues = _blocking(BuglessClient.search_issues)
    get_issue = _blocking(BuglessClient.get_issue)
    batch_get_issues = _blocking(BuglessClient.batch_get_issues)
    create_issue = _blocking(BuglessClient.create_issue)
    update_issue = _blocking(BuglessClient.update_issue)
    comment = _blocking(BuglessClient.comment)
    list_history = _blocking(BuglessClient.list_history)
    list_components = _blocking(BuglessClient.list_components)
    get_component = _blocking(BuglessClient.get_component)
    create_component = _blocking(BuglessClient.create_component)
    list_hotlists = _blocking(BuglessClient.list_hotlists)
    get_hotlist = _blocking(BuglessClient.get_hotlist)
    create_hotlist = _blocking(BuglessClient.create_hotlist)
    add_to_hotlist = _blocking(BuglessClient.add_to_hotlist)
    remove_from_hotlist = _blocking(BuglessClient.remove_from_hotlist)
    rank_hotlist_item = _blocking(BuglessClient.rank_hotlist_item)
    list_hotlist_items = _blocking(BuglessClient.list_hotlist_items)
    delete_hotlist = _blocking(BuglessClient.delete_hotlist)
