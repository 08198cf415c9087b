"""Live updates: an open issue page receives new timeline entries as they happen.

Server-sent events fed by the Model's ``Watch`` stream, offered only when the
Model declares the ``watch`` capability (the page falls back to "reload to
see changes"). Each event carries the entry already rendered by the same
template as the page, so the browser inserts sanitised HTML and no markup
logic lives in JavaScript. Events have the entry version as id: a reconnecting
browser sends ``Last-Event-ID`` and gets what it missed from the history.
A browser that stops reading does not make the web hold events for it
without limit, nor hold up the Model's watch reader: past
:data:`LIVE_BACKLOG_EVENTS` unsent, the watch ends and the page is told to
reload. A Model that does not start the watch (its first message) within
``call_timeout_seconds`` has the watch released and the stream ended, so the
browser connects again (``retry``), to whichever replica answers, and gets
what it missed from the history; so does one that ends the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from bugless_core.clients import call
from bugless_core.errors import Unavailable
from bugless_core.failover import MODEL_WATCH_ROUTE
from bugless_core.ids import try_parse_id
from bugless_proto import v1
from bugless_web.backends import Viewer
from bugless_web.frontend import Frontend, frontend_of, path_id, viewer_of
from bugless_web.live_streams import DRAIN_POLL_SECONDS, KEEPALIVE_SECONDS, Backlog
from bugless_web.retries import record_call
from bugless_web.timeline import load_history, names_for

_log = logging.getLogger("bugless.web.live")
#: Watch events a stream holds for a browser that reads slower than they come.
#: An issue changes a few times a minute at most; this many unsent means the
#: browser stopped reading (a suspended laptop, a stalled link), not a burst.
LIVE_BACKLOG_EVENTS = 64


def _reload_event(issue_id: int, last: int) -> ServerSentEventMessage:
    """Tell the page to reload: it fell too far behind for the stream to keep its events.

    The page's handler (``reload`` in pages.js) closes the stream and reloads
    once per distinct ``data`` (keeping what was typed), so the data names the
    point the page fell behind at: falling behind again later reloads again.
    """
    return ServerSentEventMessage(data=f"behind-{issue_id}-{last}", event="reload")


def _entry_event(frontend: Frontend, entry: v1.HistoryEntry, html: str) -> ServerSentEventMessage:
    payload = json.dumps({"version": entry.version, "html": html})
    return ServerSentEventMessage(data=payload, event="entry", id=str(entry.version))


async def _render_entry(frontend: Frontend, viewer: Viewer, entry: v1.HistoryEntry) -> str:
    names = await names_for(frontend.backends, viewer, [entry])
    template = frontend.templates.get_template("_entry.html")
    return template.render({"entry": entry, "names": names, "viewer": viewer})


async def _entry_message(
    frontend: Frontend, viewer: Viewer, entry: v1.HistoryEntry
) -> ServerSentEventMessage:
    return _entry_event(frontend, entry, await _render_entry(frontend, viewer, entry))


async def _stream(
    frontend: Frontend, viewer: Viewer, issue_id: int, after: int
) -> AsyncIterator[ServerSentEventMessage]:
    backlog: Backlog[v1.WatchEvent] = Backlog(LIVE_BACKLOG_EVENTS)
    queue = backlog.queue

    async def follow() -> None:
        # The stream's failures are the Model's outage as the pages' calls
        # are (one log for both); its subscribed marker is the Model answering.
        outage = frontend.backends.model_outage
        seconds = frontend.settings.call_timeout_seconds
        # The Model's first message is awaited as a call's answer is: a Model
        # that accepted the watch and sent nothing held it (and the page's
        # stream, live in name only) for as long as the page stayed open.
        starting = asyncio.timeout(seconds)
        try:
            request = v1.WatchRequest(caller=viewer.caller, issue_id=issue_id)
            stream = cast(
                "AsyncGenerator[v1.WatchEvent, None]",
                frontend.backends.model_stream.watch(request),
            )
            # Closed on leaving, so a watch ended here is released at the Model now.
            async with contextlib.aclosing(stream), starting:
                async for event in stream:
                    starting.reschedule(None)
                    if event.subscribed:
                        record_call(outage, MODEL_WATCH_ROUTE, None)
                    if not backlog.offer(event):
                        return
            # The Model ended the watch (it is stopping): end the stream, so
            # the browser connects again, to a replica that is not.
            backlog.offer(Unavailable("the model service ended the watch"))
        except Exception as exc:
            if isinstance(exc, TimeoutError) and starting.expired():
                exc = Unavailable(
                    f"the model service did not start the watch of issue {issue_id} within "
                    f"{seconds:g} s (--call-timeout-seconds); the page reconnects"
                )
            record_call(outage, MODEL_WATCH_ROUTE, exc)
            backlog.offer(exc)

    watcher = asyncio.create_task(follow())
    try:
        yield ServerSentEventMessage(comment="watching", retry=3000)
        # Entries committed between the page load and the watch starting.
        last = after
        for entry in await load_history(frontend.backends, viewer, issue_id, after_version=after):
            yield await _entry_message(frontend, viewer, entry)
            last = entry.version
        idle = 0.0
        while not frontend.drain.draining:
            if backlog.behind:
                _log.info(
                    "live stream of issue %d fell %d events behind its browser; "
                    "told the page to reload",
                    issue_id,
                    LIVE_BACKLOG_EVENTS,
                )
                yield _reload_event(issue_id, last)
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
            if isinstance(item, BaseException):
                _log.info("watch of issue %d ended: %s", issue_id, item)
                return
            if item.subscribed:
                # The watch is in place: from here on it delivers every change.
                # Entries committed after the catch-up above but before this
                # marker reach neither, so read the history once more.
                for entry in await load_history(
                    frontend.backends, viewer, issue_id, after_version=last
                ):
                    yield await _entry_message(frontend, viewer, entry)
                    last = entry.version
                continue
            changed = item.entry
            if changed is None or changed.version <= last:
                continue
            last = changed.version
            yield await _entry_message(frontend, viewer, changed)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


@get("/issues/{issue_text:str}/events")
async def issue_events(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[Any]:
    """The event stream of one issue (204 when the Model cannot watch)."""
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    if "watch" not in await frontend.backends.capabilities():
        return Response(b"", status_code=204)  # EventSource stops retrying on 204
    issue = await call(
        frontend.backends.model.get_issue,
        v1.GetIssueRequest(caller=viewer.caller, issue_id=issue_id),
    )
    # A resume position the browser sends back; one that is not a version
    # (malformed, or past int64 where it would wrap) resumes from now.
    sent = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    resume = try_parse_id(sent, allow_zero=True)
    after = issue.version if resume is None else resume
    return ServerSentEvent(
        _stream(frontend, viewer, issue_id, after),
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


ROUTES = [issue_events]
