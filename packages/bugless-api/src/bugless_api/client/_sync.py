"""The blocking client, for code without an event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from bugless_api.client._client import BuglessClient
from bugless_core import eventloop
from bugless_proto import v1

P = ParamSpec("P")
R = TypeVar("R")


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
    signatures and errors are the same; :meth:`iter_issues` is a generator
    over the pages, and :meth:`watch` a generator of the events. The other
    streaming iterators (``iter_history``, ``iter_attachment``) are async
    only. Use it as a context manager, or call :meth:`close`. Not for use
    from inside a running event loop.
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

    @classmethod
    def from_config(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """As :meth:`BuglessClient.from_config`: the settings the ``bugless`` commands use."""
        from bugless_api._connection_settings import connection_settings  # noqa: PLC0415

        found = connection_settings(environ=environ)
        options.setdefault("time_zone", found.time_zone)
        return cls(found.api, found.cert, found.key, found.ca, **options)

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

    def iter_issues(
        self,
        query: str = "",
        *,
        limit: int | None = None,
        page_size: int = 100,
        time_zone: str | None = None,
        read_mask: Iterable[str] | None = None,
    ) -> Iterator[v1.Issue]:
        """As :meth:`BuglessClient.iter_issues`: every issue matching ``query``, page by page.

        Each next page is asked for when the one before is used up, so a
        script that stops early sends no further search.
        """
        if self._loop.is_closed():
            raise RuntimeError("iter_issues: the SyncBuglessClient is closed")
        issues = self._client.iter_issues(
            query, limit=limit, page_size=page_size, time_zone=time_zone, read_mask=read_mask
        )
        try:
            while True:
                try:
                    issue = self._loop.run_until_complete(anext(issues))
                except StopAsyncIteration:
                    return
                yield issue
        finally:
            # A generator left early (break, an exception): end the async one
            # on its loop, not in the garbage collector's, which has none.
            if not self._loop.is_closed():
                self._loop.run_until_complete(issues.aclose())

    def watch(
        self,
        *,
        issue_id: int | None = None,
        query: str | None = None,
        time_zone: str | None = None,
        after_position: int | None = None,
        reconnect: bool = True,
    ) -> Generator[v1.WatchEvent, None, None]:
        """As :meth:`BuglessClient.watch`: a generator of the events, reconnecting by itself.

        Each ``next()`` blocks until the next event; leave the loop to stop
        watching (the call is cancelled on the client's loop).
        """
        if self._loop.is_closed():
            raise RuntimeError("watch: the SyncBuglessClient is closed")
        events = self._client.watch(
            issue_id=issue_id,
            query=query,
            time_zone=time_zone,
            after_position=after_position,
            reconnect=reconnect,
        )
        try:
            while True:
                try:
                    event = self._loop.run_until_complete(anext(events))
                except StopAsyncIteration:
                    return
                yield event
        finally:
            if not self._loop.is_closed():
                self._loop.run_until_complete(events.aclose())

    #: Builds the IssueDelta of ``change_issue``/``batch_change_issues`` (no call made).
    delta = staticmethod(BuglessClient.delta)
    whoami = _blocking(BuglessClient.whoami)
    logout = _blocking(BuglessClient.logout)
    attach = _blocking(BuglessClient.attach)
    get_attachment = _blocking(BuglessClient.get_attachment)
    list_attachments = _blocking(BuglessClient.list_attachments)
    delete_attachment = _blocking(BuglessClient.delete_attachment)
    download_attachment = _blocking(BuglessClient.download_attachment)
    star_issue = _blocking(BuglessClient.star_issue)
    subscribe_component = _blocking(BuglessClient.subscribe_component)
    subscribe_saved_search = _blocking(BuglessClient.subscribe_saved_search)
    list_subscriptions = _blocking(BuglessClient.list_subscriptions)
    get_notification_settings = _blocking(BuglessClient.get_notification_settings)
    update_notification_settings = _blocking(BuglessClient.update_notification_settings)
    change_notification_settings = _blocking(BuglessClient.change_notification_settings)
    mute_issue = _blocking(BuglessClient.mute_issue)
    list_component_webhooks = _blocking(BuglessClient.list_component_webhooks)
    add_component_webhook = _blocking(BuglessClient.add_component_webhook)
    set_component_webhook_enabled = _blocking(BuglessClient.set_component_webhook_enabled)
    delete_component_webhook = _blocking(BuglessClient.delete_component_webhook)
    search_issues = _blocking(BuglessClient.search_issues)
    get_issue = _blocking(BuglessClient.get_issue)
    batch_get_issues = _blocking(BuglessClient.batch_get_issues)
    create_issue = _blocking(BuglessClient.create_issue)
    change_issue = _blocking(BuglessClient.change_issue)
    update_issue = _blocking(BuglessClient.update_issue)
    batch_change_issues = _blocking(BuglessClient.batch_change_issues)
    custom_field_values = _blocking(BuglessClient.custom_field_values)
    comment = _blocking(BuglessClient.comment)
    edit_comment = _blocking(BuglessClient.edit_comment)
    redact = _blocking(BuglessClient.redact)
    list_history = _blocking(BuglessClient.list_history)
    attach = _blocking(BuglessClient.attach)
    get_attachment = _blocking(BuglessClient.get_attachment)
    list_attachments = _blocking(BuglessClient.list_attachments)
    delete_attachment = _blocking(BuglessClient.delete_attachment)
    download_attachment = _blocking(BuglessClient.download_attachment)
    list_components = _blocking(BuglessClient.list_components)
    get_component = _blocking(BuglessClient.get_component)
    create_component = _blocking(BuglessClient.create_component)
    update_component = _blocking(BuglessClient.update_component)
    check_viewers = _blocking(BuglessClient.check_viewers)
    create_custom_field = _blocking(BuglessClient.create_custom_field)
    list_custom_fields = _blocking(BuglessClient.list_custom_fields)
    list_visible_custom_fields = _blocking(BuglessClient.list_visible_custom_fields)
    update_custom_field = _blocking(BuglessClient.update_custom_field)
    delete_custom_field = _blocking(BuglessClient.delete_custom_field)
    list_hotlists = _blocking(BuglessClient.list_hotlists)
    get_hotlist = _blocking(BuglessClient.get_hotlist)
    create_hotlist = _blocking(BuglessClient.create_hotlist)
    update_hotlist = _blocking(BuglessClient.update_hotlist)
    delete_hotlist = _blocking(BuglessClient.delete_hotlist)
    add_to_hotlist = _blocking(BuglessClient.add_to_hotlist)
    remove_from_hotlist = _blocking(BuglessClient.remove_from_hotlist)
    rank_hotlist_item = _blocking(BuglessClient.rank_hotlist_item)
    set_hotlist_item_note = _blocking(BuglessClient.set_hotlist_item_note)
    list_hotlist_items = _blocking(BuglessClient.list_hotlist_items)
    create_saved_search = _blocking(BuglessClient.create_saved_search)
    list_saved_searches = _blocking(BuglessClient.list_saved_searches)
    all_saved_searches = _blocking(BuglessClient.all_saved_searches)
    update_saved_search = _blocking(BuglessClient.update_saved_search)
    delete_saved_search = _blocking(BuglessClient.delete_saved_search)
