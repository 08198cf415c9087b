"""Live lists: a search page, or a hotlist's (``hotlistid:N``), hears which issues change in it.

Which issues changed in, entered or left the page's query, that is.

Server-sent events fed by a query ``Watch`` of the page's query, as the
viewer, offered only when the Model declares the ``watch`` capability (204
otherwise: the page stays as it was rendered, a list to reload). The Model
judges what the viewer may see and whether a change made an issue leave the
query (``WatchEvent.left_query``); an event says only which issue and
whether it left, so a left event of an issue the viewer may no longer view
tells them nothing more than that. The page marks the rows and offers a
refresh; the stream carries no issue's fields (a row is the search's to
render, in the page's columns and sort, which one event cannot place): a
search page draws a changed row again in place from ``/search/row``
(:func:`list_row`), and Refresh re-runs the search for where rows now sort.

Each event's id is a feed position a reconnecting browser resumes from
(``Last-Event-ID``, with the Model's ``change_feed`` capability): the
change before the event's, so every entry of a change that wrote several is
sent again rather than lost, and the page counts issues, not events. A
first connection starts at ``after``, the feed's head before the page's
search ran (:func:`list_position`). The web keeps no state between
requests, so any replica resumes any stream. A position the feed no longer
holds or that is not its own, or a resume the Model cannot serve, goes on
live and tells the page the list may have changed meanwhile (``stale``); a
query the Model stops watching (a custom field it names was deleted) or
refuses as its search would (a hotlist it names made private or deleted, a
component hidden) ends the stream with the reason (``ended``), and the page
stops following.
Past :data:`LIST_BACKLOG_EVENTS` unsent the watch ends and the page is
told to refresh (``behind``); a Model that does not start the
watch within ``call_timeout_seconds`` has the watch released and the
stream ended, so the browser connects again (``retry``) and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from litestar import Request, Response, get
from litestar.enums import MediaType
from litestar.response import ServerSentEvent, ServerSentEventMessage

from bugless_core.clients import call, call_errors
from bugless_core.errors import (
    BuglessError,
    FailedPrecondition,
    FeedPositionPruned,
    InvalidArgument,
    Unavailable,
)
from bugless_core.failover import MODEL_WATCH_ROUTE
from bugless_core.ids import try_parse_id
from bugless_core.limits import MAX_BATCH_CHANGE
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import message_without_path
from bugless_web.frontend import Frontend, form_int, frontend_of, viewer_of
from bugless_web.live_streams import DRAIN_POLL_SECONDS, KEEPALIVE_SECONDS, Backlog
from bugless_web.result_columns import columns_of
from bugless_web.result_rows import result_rows
from bugless_web.retries import record_call
from bugless_web.searching import name_custom_columns, run_search, structured_query
from bugless_web.timezones import zone_of

_log = logging.getLogger("bugless.web.live")
#: Watch events a list's stream holds for a browser that reads slower than
#: they come. A query sees many issues, and one bulk edit changes up to
#: :data:`MAX_BATCH_CHANGE` of them at once (an event each): this many unsent
#: means the browser stopped reading, not a burst.
LIST_BACKLOG_EVENTS = 4 * MAX_BATCH_CHANGE


def _issue_event(event: v1.WatchEvent) -> ServerSentEventMessage:
    """Which issue changed, and whether it left the query; nothing else of it.

    The id resumes at the change before this one (see the module docstring).
    """
    issue_id = event.entry.issue_id if event.entry is not None else 0
    if not issue_id and event.issue is not None:
        issue_id = event.issue.id
    payload = json.dumps({"issue": issue_id, "left": event.left_query})
    return ServerSentEventMessage(data=payload, event="issue", id=str(max(event.position - 1, 0)))


class _Unresumable(Exception):
    """The watch could not resume at the page's position and went on from now."""


def _unresumable(exc: FeedPositionPruned | InvalidArgument) -> bool:
    """Whether the Model refused the resume position (not the query)."""
    return isinstance(exc, FeedPositionPruned) or exc.metadata.get("field") == "after_position"


async def list_position(backends: Backends, viewer: Viewer) -> int | None:
    """Where a list page's stream starts: the feed's head before the page's search runs.

    Read before the search, so a change committed while the page is made
    and its stream connects is heard (one already shown may be heard too:
    the page marks it changed, which it is). None when the Model cannot
    resume a watch (no ``change_feed``) or does not answer: the stream
    then starts when it subscribes.
    """
    if not {"watch", "change_feed"} <= await backends.capabilities():
        return None
    try:
        answer = await call(
            backends.model.read_feed, v1.ReadFeedRequest(caller=viewer.caller, head_only=True)
        )
    except BuglessError:
        return None
    return answer.head_position


def _stale_event() -> ServerSentEventMessage:
    """The list may have changed while the page was not hearing: it cannot be told what."""
    return ServerSentEventMessage(data="stale", event="stale")


async def _stream(
    frontend: Frontend,
    viewer: Viewer,
    query: v1.StructuredQuery,
    after: int | None,
    *,
    stale: bool,
) -> AsyncIterator[ServerSentEventMessage]:
    """The list's events; ``stale``: first tell the page it missed what changed meanwhile.

    ``stale`` is for a resume the Model cannot replay (no change feed).
    """
    backlog: Backlog[v1.WatchEvent | _Unresumable] = Backlog(LIST_BACKLOG_EVENTS)
    queue = backlog.queue

    async def follow() -> None:
        # Failures are the Model's outage as the pages' calls are (one log);
        # the subscribed marker is the Model answering.
        outage = frontend.backends.model_outage
        seconds = frontend.settings.call_timeout_seconds
        position = after
        try:
            while True:
                request = v1.WatchRequest(
                    caller=viewer.caller, query=query, after_position=position
                )
                stream = cast(
                    "AsyncGenerator[v1.WatchEvent, None]",
                    frontend.backends.model_stream.watch(request),
                )
                # The first message is awaited as a call's answer is; after
                # it the watch may rightly wait hours for a change.
                starting = asyncio.timeout(seconds)
                try:
                    # The bound outside call_errors: its TimeoutError is an
                    # OSError, which call_errors would call unreachable.
                    async with starting, contextlib.aclosing(stream):
                        with call_errors("the model service is unreachable"):
                            async for event in stream:
                                starting.reschedule(None)
                                if event.subscribed:
                                    record_call(outage, MODEL_WATCH_ROUTE, None)
                                if not backlog.offer(event):
                                    return
                except (FeedPositionPruned, InvalidArgument) as exc:
                    if position is None or not _unresumable(exc):
                        raise
                    # The changes after the page's position are gone (or it is
                    # not this feed's: a restored database): go on from now
                    # and have the page say its list may be stale.
                    position = None
                    if not backlog.offer(_Unresumable(exc.message)):
                        return
                    continue
                except TimeoutError as exc:
                    if not starting.expired():
                        raise
                    msg = (
                        f"the model service did not start the watch of a list within "
                        f"{seconds:g} s (--call-timeout-seconds); the page reconnects"
                    )
                    raise Unavailable(msg) from exc
                # The Model ended the watch (it is stopping): end the stream,
                # so the browser resumes on a replica that is not.
                backlog.offer(Unavailable("the model service ended the watch"))
                return
        except Exception as exc:
            record_call(outage, MODEL_WATCH_ROUTE, exc)
            backlog.offer(exc)

    watcher = asyncio.create_task(follow())
    try:
        yield ServerSentEventMessage(comment="watching", retry=3000)
        if stale:
            yield _stale_event()
        # Until the watch resumed from a position, its subscribed marker's
        # position is where a reconnecting browser resumes.
        resuming = after is not None
        idle = 0.0
        while not frontend.drain.draining:
            if backlog.behind:
                _log.info(
                    "live stream of a list fell %d events behind its browser; "
                    "told the page to refresh",
                    LIST_BACKLOG_EVENTS,
                )
                yield ServerSentEventMessage(data="behind", event="behind")
                return
            try:
                item = await asyncio.wait_for(queue.get(), timeout=DRAIN_POLL_SECONDS)
            except TimeoutError:
                idle += DRAIN_POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ServerSentEventMessage(comment="keepalive")
                continue
            idle = 0.0
            if isinstance(item, _Unresumable):
                resuming = False
                yield _stale_event()
                continue
            if isinstance(item, InvalidArgument | FailedPrecondition):
                # The query no longer watches (a custom field it names was
                # deleted; a hotlist it names was made private or deleted, a
                # component hidden, which the Model refuses as a search of
                # it): reconnecting would be refused again, so the page stops
                # and says why, in the words of the search page (no path of
                # the query's tree, which no one typed).
                _log.info("watch of a list refused: %s", item)
                yield ServerSentEventMessage(data=message_without_path(item.message), event="ended")
                return
            if isinstance(item, BaseException):
                _log.info("watch of a list ended: %s", item)
                return
            if item.subscribed:
                if resuming:
                    yield ServerSentEventMessage(data="", event="subscribed")
                else:
                    yield ServerSentEventMessage(data="", event="subscribed", id=str(item.position))
                continue
            yield _issue_event(item)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


@get("/search/events")
async def list_events(request: Request[Any, Any, Any]) -> Response[Any]:
    """The event stream of a search page's query ``q`` (204 when the Model cannot watch).

    Raises:
        QuerySyntaxError: ``q`` is not a query the search page would run (400).
    """
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    capabilities = await frontend.backends.capabilities()
    if "watch" not in capabilities:
        return Response(b"", status_code=204)  # EventSource stops retrying on 204
    text = request.query_params.get("q") or ""
    query = await structured_query(frontend.backends, viewer, text, zone=zone_of(request))
    # A resume position the browser sends back; one that is not a position
    # (malformed, or past int64) starts from now, as a fresh page's stream.
    sent = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    resume = try_parse_id(sent, allow_zero=True)
    stale = resume is not None and "change_feed" not in capabilities
    return ServerSentEvent(
        _stream(frontend, viewer, query, None if stale else resume, stale=stale),
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@get("/search/row", cache_control=None)
async def list_row(request: Request[Any, Any, Any]) -> Response[Any]:
    """The search page's row of issue ``issue`` as it is now, in the page's ``columns``.

    What the page redraws a changed row with, in place (``pages.js``): the
    same :func:`~bugless_web.result_rows.result_rows` as the page, from a
    search for ``id:N`` as the viewer, so only what they may see is drawn.
    The row's check box carries the new version, unticked, so a bulk edit
    cannot overwrite the change unseen. 204 when the viewer no longer sees
    the issue.

    Raises:
        InvalidArgument: ``issue`` is not an issue id, or ``columns`` not columns (400).
    """
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    issue_id = form_int(request.query_params.get("issue"), "issue")
    if not issue_id:
        raise InvalidArgument("issue: the id of the row to draw")
    columns = columns_of(request)
    results = await run_search(
        frontend.backends,
        viewer,
        f"id:{issue_id}",
        zone=zone_of(request),
        page_size=1,
        columns=columns,
    )
    if results.error or not results.issues:
        return Response(b"", status_code=204, headers={"cache-control": "private, no-store"})
    await name_custom_columns(frontend.backends, viewer, results, columns)
    return Response(
        str(result_rows(results, columns, selectable=True)),
        media_type=MediaType.HTML,
        headers={"cache-control": "private, no-store"},
    )


ROUTES = [list_events, list_row]
