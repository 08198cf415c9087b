"""A bot's watch outlives the servers under it: every change once, in order.

Real processes are stopped under a running ``BuglessClient.watch``: an API
frontend killed outright (SIGKILL, as a crashed pod) and started again on its
port, and a Model replica stopped and replaced under an API. Changes are made
meanwhile through the session's own API (same database), and the watching
loop must yield each of them exactly once, in commit order, then live ones,
with no second ``subscribed`` marker. A position below a Model's feed
retention is the typed :class:`FeedPositionPruned` with where the feed now
is; and a resumed watch never tells a bot of an issue it may not view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncGenerator

import pytest
from api_support import Bots, ConnectAs, api_settings, signed_in
from prometheus_client import CollectorRegistry

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings
from bugless_core.errors import FeedPositionPruned, InvalidArgument
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.events import DELIVERY_TIMEOUT, EventStream

#: Reconnects come quickly (a test waits for them), each call tried once.
QUICK = RetryPolicy(attempts=1, initial_backoff=0.05, max_backoff=0.3)


def _start_api_process(bots: Bots, port: int, name: str) -> RunningService:
    """``bugless api serve`` on ``port`` (0: any), on the stack's Model and Authenticator."""
    stack = bots.stack
    return stack.start(
        "api",
        ["api", "serve", "--port", str(port), "--grace-seconds", "0"],
        name=name,
        env={
            "BUGLESS_API_MODEL": f"127.0.0.1:{stack.model.port}",
            "BUGLESS_API_AUTH": f"127.0.0.1:{stack.auth.port}",
            "BUGLESS_API_TLS_CERT": str(stack.server.cert),
            "BUGLESS_API_TLS_KEY": str(stack.server.key),
            "BUGLESS_API_CLIENT_CA": str(stack.pki.ca_file),
        },
    )


def _start_model(bots: Bots, port: int, name: str, *extra: str) -> RunningService:
    """A Model replica on ``port`` (0: any) that lets its streams go at once when stopped."""
    args = ["model", "serve", "--port", str(port), "--drain-seconds", "0", "--grace-seconds", "0"]
    return bots.stack.start("model", [*args, *extra], name=name)


async def _stop(bots: Bots, service: RunningService | None) -> None:
    if service is not None:
        await asyncio.to_thread(bots.stack.stop_service, service)


def _seen(events: list[v1.WatchEvent]) -> list[tuple[int, int]]:
    """(issue id, entry version) of each event; a second subscribed marker fails."""
    seen = []
    for event in events:
        assert not event.subscribed, "a reconnection yielded another subscribed marker"
        assert event.issue is not None
        assert event.entry is not None
        seen.append((event.issue.id, event.entry.version))
    return seen


async def _away(boss: BuglessClient, issue: v1.Issue, other: v1.Issue) -> list[tuple[int, int]]:
    """Changes made while the watcher is cut off: what it must get, in order."""
    expected = []
    for n in range(3):
        changed = await boss.comment(issue.id, f"while away {n}")
        assert changed.issue is not None
        expected.append((issue.id, changed.issue.version))
    await boss.comment(other.id, "not watched")
    created = await boss.create_issue("made while away", issue.component_id)
    expected.append((created.id, 1))
    return expected


@pytest.fixture
async def components(connect_as: ConnectAs) -> tuple[v1.Issue, v1.Issue]:
    """An issue in a fresh component (the one watched) and one elsewhere."""
    (boss,) = await signed_in(connect_as, "boss")
    watched = await boss.create_component(f"Resume-{secrets.token_hex(3)}")
    elsewhere = await boss.create_component(f"Other-{secrets.token_hex(3)}")
    return (
        await boss.create_issue("watched", watched.id),
        await boss.create_issue("elsewhere", elsewhere.id),
    )


async def test_a_watch_resumes_across_an_api_process_killed_and_restarted(
    bots: Bots, connect_as: ConnectAs, components: tuple[v1.Issue, v1.Issue]
) -> None:
    issue, other = components
    boss = connect_as("boss")
    frontend: RunningService | None = await asyncio.to_thread(_start_api_process, bots, 0, "api-a")
    assert frontend is not None
    port = frontend.port
    robot = connect_as("robot", port=port, retry=QUICK)
    events = EventStream(robot.watch(query=f"c:{issue.component_id}"))
    try:
        await events.subscribed()
        first = await boss.comment(issue.id, "seen live")
        assert _seen([await events.next()]) == [(issue.id, 2)]
        assert first.issue is not None

        frontend.process.kill()  # no goodbye: the stream just breaks
        await asyncio.to_thread(frontend.process.wait)
        await _stop(bots, frontend)
        frontend = None
        expected = await _away(boss, issue, other)
        frontend = await asyncio.to_thread(_start_api_process, bots, port, "api-b")

        replayed = [await events.next() for _ in expected]
        assert _seen(replayed) == expected
        live = await boss.comment(issue.id, "live again")
        assert live.issue is not None
        assert _seen([await events.next()]) == [(issue.id, live.issue.version)]
        await events.nothing_more()
        positions = [e.position for e in replayed]
        assert positions == sorted(positions)
    finally:
        await events.close()
        await _stop(bots, frontend)


async def test_a_watch_resumes_across_a_model_replaced_under_the_api(
    bots: Bots, connect_as: ConnectAs, components: tuple[v1.Issue, v1.Issue]
) -> None:
    issue, other = components
    boss = connect_as("boss")
    model: RunningService | None = await asyncio.to_thread(_start_model, bots, 0, "model-a")
    assert model is not None
    port = model.port
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, port=port))
    frontend = await start_api(settings, metrics_registry=CollectorRegistry())
    robot = connect_as("robot", port=frontend.port, retry=QUICK)
    events = EventStream(robot.watch(issue_id=issue.id))
    try:
        await events.subscribed()
        await boss.comment(issue.id, "seen live")
        assert _seen([await events.next()]) == [(issue.id, 2)]

        await _stop(bots, model)  # its streams end; the API's Model is gone
        model = None
        expected = [e for e in await _away(boss, issue, other) if e[0] == issue.id]
        model = await asyncio.to_thread(_start_model, bots, port, "model-b")

        assert _seen([await events.next() for _ in expected]) == expected
        live = await boss.comment(issue.id, "live again")
        assert live.issue is not None
        assert _seen([await events.next()]) == [(issue.id, live.issue.version)]
        await events.nothing_more()
    finally:
        await events.close()
        await frontend.close()
        await _stop(bots, model)


async def _first_event(events: AsyncGenerator[v1.WatchEvent, None]) -> v1.WatchEvent:
    """The first event of a watch (or its error); the watch is then cancelled."""
    try:
        async with asyncio.timeout(DELIVERY_TIMEOUT):
            return await anext(events)
    finally:
        await events.aclose()


async def test_a_position_below_the_retention_is_a_typed_error_saying_where_the_feed_is(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """A Model keeping its feed one second (its own schema): after a restart, which
    prunes, a resume below what it kept is FeedPositionPruned through the API."""
    schema = f"resume_{secrets.token_hex(4)}"
    extra = ("--schema", schema, "--migrate", "--feed-retention-seconds", "1")
    model: RunningService | None = await asyncio.to_thread(
        _start_model, bots, 0, "model-short", *extra
    )
    assert model is not None
    port = model.port
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
    settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, port=port))
    frontend = await start_api(settings, metrics_registry=CollectorRegistry())
    try:
        boss = connect_as("boss", port=frontend.port, retry=QUICK)
        component = await boss.create_component("Short-lived feed")
        issue = await boss.create_issue("pruned soon", component.id)
        marker = await _first_event(boss.watch(issue_id=issue.id, reconnect=False))
        start = marker.position
        await boss.comment(issue.id, "pruned")
        await asyncio.sleep(1.5)
        await _stop(bots, model)
        # Pruning runs as a Model starts (then once a minute): up to the comment.
        model = await asyncio.to_thread(_start_model, bots, port, "model-short-b", *extra)
        await boss.comment(issue.id, "kept")

        with pytest.raises(FeedPositionPruned) as caught:
            await _first_event(boss.watch(issue_id=issue.id, after_position=start))
        refusal = caught.value
        assert "re-read the current state" in refusal.message
        assert refusal.oldest_position > start + 1
        # From where the feed now starts, the watch goes on: the kept change.
        resumed = EventStream(
            boss.watch(issue_id=issue.id, after_position=refusal.oldest_position - 1)
        )
        try:
            await resumed.subscribed()
            event = await resumed.next()
        finally:
            await resumed.close()
        assert event.entry is not None
        assert event.entry.comment == "kept"
        assert event.position == refusal.head_position
        with pytest.raises(InvalidArgument, match="beyond the change feed's head"):
            await _first_event(
                boss.watch(issue_id=issue.id, after_position=refusal.head_position + 100)
            )
    finally:
        await frontend.close()
        await _stop(bots, model)


async def test_a_resumed_query_watch_never_tells_of_issues_the_bot_may_not_view(
    connect_as: ConnectAs, api: RunningApi
) -> None:
    boss, viewer, outsider = await signed_in(connect_as, "boss", "viewer", "outsider")
    root = await boss.create_component(f"ResumeTree-{secrets.token_hex(3)}")
    secret_component = await boss.create_component(
        "Secret",
        parent_id=root.id,
        acl=[
            v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(group="secret-viewers"), role=v1.Role.VIEWER),
        ],
    )
    secret = await boss.create_issue("launch codes", secret_component.id)
    public = await boss.create_issue("lunch menu", root.id)
    start = (await _first_event(outsider.watch(issue_id=public.id, reconnect=False))).position
    await boss.comment(secret.id, "rotate them")
    await boss.comment(public.id, "pizza")
    query = f"c:{root.id}+"

    seen: dict[str, list[int]] = {}
    for name, client in (("viewer", viewer), ("outsider", outsider)):
        events = EventStream(client.watch(query=query, after_position=start))
        try:
            await events.subscribed()
            got = [await events.next()]
            if name == "viewer":
                got.append(await events.next())
            await events.nothing_more()
        finally:
            await events.close()
        seen[name] = [e.issue.id for e in got if e.issue]
    assert seen == {"viewer": [secret.id, public.id], "outsider": [public.id]}
