"""Watch: committed entries arrive, invisible ones and rollbacks never do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from write_support import ADMIN, fresh_component

from bugless_core.errors import InvalidArgument, IssueVersionConflict
from bugless_core.model.backend import Capability
from bugless_core.model.servicer import ModelServicer
from bugless_model_postgres import PostgresBackend, _watch
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

STRANGER = v1.Caller(user_id="stranger")


async def _component(backend: PostgresBackend, *, private: bool = False) -> int:
    acl = (
        [v1.AclEntry(principal=v1.Principal(user="insider"), role=v1.Role.EDITOR)]
        if private
        else []
    )
    return (await fresh_component(backend, "watch", acl=acl)).id


async def _issue(backend: PostgresBackend, component_id: int, title: str) -> v1.Issue:
    return await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title=title, component_id=component_id)
        )
    )


async def _comment(backend: PostgresBackend, issue: v1.Issue, text: str) -> v1.Issue:
    response = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN, issue_id=issue.id, expected_version=issue.version, comment=text
        )
    )
    assert response.issue is not None
    return response.issue


async def _start(stream: AsyncIterator[v1.WatchEvent]) -> asyncio.Task[v1.WatchEvent]:
    """Wait for the subscribed marker, then start waiting for the first change."""
    marker = await asyncio.wait_for(anext(stream), 10)
    assert marker == v1.WatchEvent(subscribed=True, position=marker.position)
    return asyncio.ensure_future(anext(stream))


async def test_query_watch_sees_matching_visible_commits_only(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    open_component = await _component(backend)
    hidden_component = await _component(backend, private=True)
    watched = await _issue(backend, open_component, "watched")
    other = await _issue(backend, open_component, "other")
    hidden = await _issue(backend, hidden_component, "hidden")
    query = v1.StructuredQuery(
        filter=v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.TITLE,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(text="watched")],
            )
        )
    )
    stream = backend.watch(v1.WatchRequest(caller=STRANGER, query=query))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    first = await _start(stream)
    await _comment(backend, hidden, "invisible to the stranger")
    await _comment(backend, other, "does not match")
    with pytest.raises(IssueVersionConflict):
        await backend.change_issue(
            v1.ChangeIssueRequest(caller=ADMIN, issue_id=watched.id, expected_version=99,
                                  comment="rolled back")
        )  # fmt: skip
    watched = await _comment(backend, watched, "this one")
    event = await asyncio.wait_for(first, 10)
    assert event.issue is not None
    assert event.entry is not None
    assert event.issue.id == watched.id
    assert event.entry.comment == "this one"
    assert event.entry.version == watched.version
    await stream.aclose()


async def test_issue_watch_ends_cleanly_when_the_client_goes_away(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    issue = await _issue(backend, await _component(backend), "one")
    # Other tests' streams share the backend: compare with what was open before.
    before = backend._feed.streams
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, issue_id=issue.id))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    first = await _start(stream)
    issue = await _comment(backend, issue, "hello")
    event = await asyncio.wait_for(first, 10)
    assert event.entry is not None
    assert event.entry.version == issue.version
    assert backend._feed.streams == before + 1
    await stream.aclose()
    assert backend._feed.streams == before


async def test_a_late_notification_of_an_earlier_commit_is_not_delivered(
    bugless_model_backend: PostgresBackend,
) -> None:
    """A commit made before the stream subscribed stays out of it, however late its
    notification reaches the listener: notifications only wake readers, which read
    positions above the head they subscribed at."""
    backend = bugless_model_backend
    heard: asyncio.Queue[str] = asyncio.Queue()
    async with backend._pool.acquire() as conn:
        await conn.add_listener(backend._channel, lambda *args: heard.put_nowait(args[-1]))
        try:
            issue = await _issue(backend, await _component(backend), "late")
            creation = await asyncio.wait_for(heard.get(), 10)
        finally:
            await conn.reset()
    assert int(creation) > 0
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, issue_id=issue.id))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    first = await _start(stream)
    # The creation's notification, replayed as if it had only just arrived.
    backend._feed._on_notify(None, 0, backend._channel, creation)
    issue = await _comment(backend, issue, "after subscribing")
    event = await asyncio.wait_for(first, 10)
    assert event.entry is not None
    assert event.entry.version == 2
    assert event.entry.comment == "after subscribing"
    await stream.aclose()


async def _head(backend: PostgresBackend) -> int:
    answer = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    return answer.head_position


async def test_a_commit_during_the_replay_comes_once_after_it(
    bugless_model_backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam, made deterministic: the stream is held part-way through its
    replay (its generator suspended inside the batch it read, with batches of
    two rows) while a change commits; that change comes after the replay, once."""
    monkeypatch.setattr(_watch, "_WATCH_BATCH", 2)
    backend = bugless_model_backend
    issue = await _issue(backend, await _component(backend), "seam")
    start = await _head(backend)
    for n in range(5):
        issue = await _comment(backend, issue, f"away {n}")
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, issue_id=issue.id, after_position=start))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    marker = await asyncio.wait_for(anext(stream), 10)
    assert marker.subscribed
    events = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
    issue = await _comment(backend, issue, "during the replay")
    events += [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
    later = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.5)
    assert not later.done(), f"an event after the last change: {later.result()}"
    later.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await later
    await stream.aclose()
    assert [e.entry.version for e in events if e.entry] == [2, 3, 4, 5, 6, 7]
    assert events[-1].entry is not None
    assert events[-1].entry.comment == "during the replay"
    assert [e.position <= marker.position for e in events] == [True] * 5 + [False]


async def test_resuming_needs_the_change_feed_capability(
    bugless_model_backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that watches without a change feed has nothing to replay: the
    servicer says so (UNIMPLEMENTED) instead of passing a position it ignores."""
    backend = bugless_model_backend
    issue = await _issue(backend, await _component(backend), "no feed")
    monkeypatch.setattr(backend, "capabilities", backend.capabilities - {Capability.CHANGE_FEED})
    servicer = ModelServicer(backend)
    request = v1.WatchRequest(caller=ADMIN, issue_id=issue.id, after_position=0)
    with pytest.raises(GRPCError) as caught:
        await anext(aiter(servicer.watch(request)))
    assert caught.value.status is Status.UNIMPLEMENTED
    assert "without after_position" in (caught.value.message or "")
    # Without a position the same servicer watches as ever.
    stream = servicer.watch(v1.WatchRequest(caller=ADMIN, issue_id=issue.id))
    assert isinstance(stream, AsyncGenerator)
    assert (await anext(stream)).subscribed
    await stream.aclose()


async def test_a_hotlist_made_private_ends_an_idle_query_watch_without_a_change(
    bugless_model_backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hotlist's privacy writes nothing to the feed: the watch checks its
    references every REFERENCES_RECHECK_SECONDS while no change comes, so a
    watcher of a quiet hotlist learns it may no longer see it, in the words a
    new watch would get. Here the interval is nil and the loop looks every
    0.2 s; with no periodic check, nothing would end the stream."""
    backend = bugless_model_backend
    monkeypatch.setattr(_watch, "REFERENCES_RECHECK_SECONDS", 0.0)
    monkeypatch.setattr(_watch, "NOTIFIED_POLL_SECONDS", 0.2)
    monkeypatch.setattr(_watch, "POLL_SECONDS", 0.2)
    owner = v1.Caller(user_id="owner")
    hotlist = await backend.create_hotlist(
        v1.CreateHotlistRequest(caller=owner, name="quiet watched")
    )
    query = v1.StructuredQuery(
        filter=v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.HOTLIST,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(integer=hotlist.id)],
            )
        )
    )
    stream = backend.watch(v1.WatchRequest(caller=STRANGER, query=query))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    first = await _start(stream)
    hotlist.private = True
    await backend.update_hotlist(
        v1.UpdateHotlistRequest(
            caller=owner, hotlist=hotlist, update_mask=FieldMask(paths=["private"])
        )
    )
    with pytest.raises(InvalidArgument) as ended:
        await asyncio.wait_for(first, 10)
    assert ended.value.message == (
        f"query.filter.term.values[0]: there is no hotlist {hotlist.id} that you may view"
    )
    await stream.aclose()
