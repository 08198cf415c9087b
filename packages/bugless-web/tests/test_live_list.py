"""A search list's event stream: which issues changed in, or left, the page's query.

A real ``bugless web serve`` on the session's Model, Authenticator and
PostgreSQL; the browser is httpx reading the stream as EventSource does.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from transfer_support import signed_in
from web_support import World, create_issue

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


@dataclass
class Event:
    """One server-sent event as EventSource hands it to the page."""

    name: str
    data: str
    id: str | None


async def _events(response: httpx.Response) -> AsyncIterator[Event]:
    name, data, event_id = "message", "", None
    async for line in response.aiter_lines():
        if not line:
            if data or name != "message":
                yield Event(name, data, event_id)
            name, data, event_id = "message", "", None
        elif line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").strip()
        elif line.startswith("id:"):
            event_id = line.removeprefix("id:").strip()


async def _next(events: AsyncIterator[Event], *names: str) -> Event:
    """The next event named one of ``names`` (others, and comments, skipped)."""
    async with asyncio.timeout(30):
        async for event in events:
            if event.name in names:
                return event
    raise AssertionError(f"the stream ended before a {names} event")


async def _change(
    model: v1.ModelStub, caller: v1.Caller, issue: v1.Issue, paths: list[str], **fields: object
) -> v1.Issue:
    response = await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=caller,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(**fields),  # type: ignore[arg-type]
                update_mask=FieldMask(paths=paths),
            ),
        ),
    )
    assert response.issue is not None
    return response.issue


@contextlib.asynccontextmanager
async def _client(web: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as bob, as a browser tab is."""
    async with httpx.AsyncClient(base_url=str(web.url), timeout=httpx.Timeout(30)) as client:
        await signed_in(client)
        yield client


async def test_a_list_hears_changes_and_leaves_and_resumes_where_it_stopped(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """A change of a listed issue, then its close, come as changed then left; a resume replays.

    The stream reconnected with the last event's id (Last-Event-ID) gets the
    changes made while it was away, from any replica (the web keeps nothing).
    """
    word = "livelist" + secrets.token_hex(4)
    issue = await create_issue(model, world, f"{word} first")
    query = {"q": f"{word} is:open"}
    headers = {"accept": "text/event-stream"}
    async with _client(web_server) as client:
        async with client.stream("GET", "/search/events", params=query, headers=headers) as live:
            assert live.status_code == 200
            assert "no-store" in live.headers["cache-control"]
            events = _events(live)
            subscribed = await _next(events, "subscribed")
            assert subscribed.id is not None
            assert int(subscribed.id) > 0
            issue = await _change(model, world.caller("bob"), issue, ["priority"], priority=1)
            changed = await _next(events, "issue")
            assert json.loads(changed.data) == {"issue": issue.id, "left": False}
            issue = await _change(
                model, world.caller("bob"), issue, ["status"], status=v1.Status.FIXED
            )
            left = await _next(events, "issue")
            assert json.loads(left.data) == {"issue": issue.id, "left": True}
            assert left.id is not None
            assert int(left.id) >= int(changed.id or 0)
        # Away: the issue comes back into the list (reopened), and another enters.
        issue = await _change(model, world.caller("bob"), issue, ["status"], status=v1.Status.NEW)
        other = await create_issue(model, world, f"{word} second")
        resumed_headers = {**headers, "last-event-id": left.id}
        async with client.stream(
            "GET", "/search/events", params=query, headers=resumed_headers
        ) as again:
            events = _events(again)
            heard = [json.loads((await _next(events, "issue")).data) for _ in range(3)]
    # The resume repeats the change it stopped at (its id is the change before), then the rest.
    assert heard == [
        {"issue": issue.id, "left": True},
        {"issue": issue.id, "left": False},
        {"issue": other.id, "left": False},
    ]


async def test_an_issue_moved_out_of_view_is_only_said_to_have_left(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """Moved where bob may not look, the issue's event names it and says it left: no more.

    The Model judges visibility; what the issue became (its component, its
    new title) never reaches the page, and its later changes send nothing.
    """
    word = "livelist" + secrets.token_hex(4)
    issue = await create_issue(model, world, f"{word} moving")
    hidden = await create_issue(model, world, f"{word} hidden", by="alice", component="Secret")
    headers = {"accept": "text/event-stream"}
    async with (
        _client(web_server) as client,
        client.stream("GET", "/search/events", params={"q": word}, headers=headers) as live,
    ):
        events = _events(live)
        await _next(events, "subscribed")
        await _change(model, world.admin, hidden, ["priority"], priority=1)
        issue = await _change(
            model,
            world.admin,
            issue,
            ["component_id", "title"],
            component_id=world.components["Secret"],
            title=f"{word} secret plans",
        )
        left = await _next(events, "issue")
        assert left.data == json.dumps({"issue": issue.id, "left": True})
        assert "secret" not in left.data
        # Later changes of the hidden issues say nothing; bob's own list goes on.
        await _change(model, world.admin, issue, ["priority"], priority=2)
        mine = await create_issue(model, world, f"{word} visible")
        after = await _next(events, "issue")
        assert json.loads(after.data) == {"issue": mine.id, "left": False}


async def test_a_query_the_search_page_would_refuse_is_refused_with_its_reason(
    web_server: RunningService,
) -> None:
    """400 with the parser's reason: EventSource stops, and nothing is watched."""
    async with _client(web_server) as client:
        response = await client.get(
            "/search/events",
            params={"q": "status:(open"},
            headers={"accept": "text/event-stream"},
        )
    assert response.status_code == 400
    assert "Traceback" not in response.text
    assert "(" in response.text or "parenthes" in response.text.lower()


async def test_a_change_made_while_the_page_connects_is_heard(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """The page's stream starts where the feed was when its search ran, not when it connects.

    Before, a change committed between the search and the stream's watch
    reached neither: the page showed the old row and never heard of it.
    """
    word = "livelist" + secrets.token_hex(4)
    issue = await create_issue(model, world, f"{word} racing")
    async with _client(web_server) as client:
        page = await client.get("/search", params={"q": word})
        found = re.search(r'data-live="([^"]+)"', page.text)
        assert found is not None, "the search page is not live"
        stream_url = html.unescape(found.group(1))
        assert "&after=" in stream_url
        # Changed after the search ran, before the page's script connected.
        issue = await _change(model, world.caller("bob"), issue, ["priority"], priority=1)
        async with client.stream(
            "GET", stream_url, headers={"accept": "text/event-stream"}
        ) as live:
            heard = await _next(_events(live), "issue")
    assert json.loads(heard.data) == {"issue": issue.id, "left": False}


async def test_a_position_not_of_this_feed_goes_on_live_and_says_the_list_may_be_stale(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """A resume the Model refuses (a position past its head) is a `stale` notice, not a loop.

    The stream watches from now, its subscribed event carrying the position
    to resume from next time, and the page hears changes as usual.
    """
    word = "livelist" + secrets.token_hex(4)
    headers = {"accept": "text/event-stream", "last-event-id": str(10**15)}
    async with (
        _client(web_server) as client,
        client.stream("GET", "/search/events", params={"q": word}, headers=headers) as live,
    ):
        events = _events(live)
        assert (await _next(events, "stale", "subscribed")).name == "stale"
        subscribed = await _next(events, "subscribed")
        assert subscribed.id is not None
        assert 0 < int(subscribed.id) < 10**15
        issue = await create_issue(model, world, f"{word} new")
        heard = await _next(events, "issue")
    assert json.loads(heard.data) == {"issue": issue.id, "left": False}


async def test_a_watched_field_deleted_ends_the_stream_with_the_reason(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """The Model ends a watch whose custom field is gone: the page is told why and stops.

    (The Model notices at the next change it judges for the watch.)

    Reconnecting would be refused the same way, every few seconds, for as
    long as the page stayed open.
    """
    name = "Live " + secrets.token_hex(3)
    defined = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=world.admin,
            component_id=world.components["Platform"],
            name=name,
            type=v1.CustomFieldType.TEXT,
        ),
    )
    query = {"q": f"customfield{defined.id}:x"}
    async with (
        _client(web_server) as client,
        client.stream(
            "GET", "/search/events", params=query, headers={"accept": "text/event-stream"}
        ) as live,
    ):
        events = _events(live)
        await _next(events, "subscribed")
        await call(
            model.delete_custom_field,
            v1.DeleteCustomFieldRequest(
                caller=world.admin, field_id=defined.id, expected_version=defined.version
            ),
        )
        # The Model finds the field gone when it next judges a change.
        await create_issue(model, world, "livelist after the field went")
        ended = await _next(events, "ended")
    assert str(defined.id) in ended.data or name in ended.data


async def test_a_hotlist_made_private_under_a_live_list_ends_it_saying_why(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """The Model refuses a watch naming a hotlist the viewer may not see, as a search.

    bob's page of alice's shared hotlist follows it; alice makes it private,
    and the page's next connection (EventSource reconnects, resuming) is
    told the query is refused, in the search page's words: a 200 stream with
    ``ended``, not a 5xx, and not a list silently following nothing.
    """
    hotlist = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(caller=world.caller("alice"), name="Live " + secrets.token_hex(3)),
    )
    query = {"q": f"hotlistid:{hotlist.id}"}
    headers = {"accept": "text/event-stream"}
    async with _client(web_server) as client:
        async with client.stream("GET", "/search/events", params=query, headers=headers) as live:
            subscribed = await _next(_events(live), "subscribed")
        hotlist.private = True
        await call(
            model.update_hotlist,
            v1.UpdateHotlistRequest(
                caller=world.caller("alice"),
                hotlist=hotlist,
                update_mask=FieldMask(paths=["private"]),
            ),
        )
        resumed = {**headers, "last-event-id": subscribed.id or ""}
        async with client.stream("GET", "/search/events", params=query, headers=resumed) as live:
            assert live.status_code == 200
            ended = await _next(_events(live), "ended", "subscribed")
    assert ended.name == "ended"
    assert ended.data == f"there is no hotlist {hotlist.id} that you may view"
