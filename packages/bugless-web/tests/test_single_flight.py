"""An expired cache entry missed by many requests at once is filled by one call.

Counted by a Model replica's own metrics (real gRPC): eight concurrent
look-ups of one missing or expired entry make one call, where each used to
make its own; a write through this replica still makes the next look-up ask
again. The caches' clock is the test's, so nothing depends on the machine's
speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from web_support import SESSION_KEY, World, create_issue, grpc_calls, own_model_replica

from bugless_core.clients import acting_as, call
from bugless_proto import v1
from bugless_web import WebSettings
from bugless_web.backends import INFO_TTL_SECONDS, Backends, Viewer
from bugless_web.kept_attachments import KeptAttachments

TTL = 60.0
LOOKUPS = 8


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def counted(world: World) -> AsyncIterator[tuple[Backends, Clock, int]]:
    """Backends on a Model replica of their own (its metrics count their calls), and their clock."""
    async with own_model_replica(world.stack, "model-single-flight") as (address, metrics_port):
        clock = Clock()
        settings = WebSettings(
            model=address,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=True,
            hotlist_cache_seconds=TTL,
            component_cache_seconds=TTL,
        )
        backends = Backends(settings, clock=clock)
        try:
            yield backends, clock, metrics_port
        finally:
            backends.close()


@pytest.fixture(autouse=True)
def as_bob(world: World) -> Iterator[None]:
    """Calls carry bob's identity assertion, as a page of bob's would."""
    with acting_as(world.stack.assertion_for(world.users["bob"])):
        yield


def _viewer(world: World, username: str) -> Viewer:
    caller = world.caller(username)
    return Viewer(
        identity=v1.Identity(user=v1.User(user_id=caller.user_id, username=username)),
        caller=caller,
        token="",
    )


async def test_hotlists_missed_at_once_are_asked_once_and_a_write_asks_again(
    counted: tuple[Backends, Clock, int], world: World
) -> None:
    backends, clock, metrics_port = counted
    viewer = _viewer(world, "bob")

    async def asked() -> int:
        return await grpc_calls(metrics_port, "ListHotlists")

    start = await asked()
    menus = await asyncio.gather(*(backends.my_hotlists(viewer) for _ in range(LOOKUPS)))
    assert await asked() == start + 1  # missing
    assert all(menu == menus[0] for menu in menus)
    await asyncio.gather(*(backends.my_hotlists(viewer) for _ in range(LOOKUPS)))
    assert await asked() == start + 1  # fresh
    clock.now += TTL + 1
    await asyncio.gather(*(backends.my_hotlists(viewer) for _ in range(LOOKUPS)))
    assert await asked() == start + 2  # expired
    # A look-up under way when the viewer changes a hotlist is not joined afterwards.
    clock.now += TTL + 1
    under_way = asyncio.ensure_future(backends.my_hotlists(viewer))
    await asyncio.sleep(0)  # it has missed and started its call
    backends.forget_hotlists(viewer)
    await asyncio.gather(under_way, *(backends.my_hotlists(viewer) for _ in range(LOOKUPS)))
    assert await asked() == start + 4  # the look-ups after the write made their own call
    await backends.my_hotlists(viewer)
    assert await asked() == start + 4  # and that one's answer is kept


async def test_capabilities_and_the_component_tree_missed_at_once_are_asked_once(
    counted: tuple[Backends, Clock, int], world: World
) -> None:
    backends, clock, metrics_port = counted
    viewer = _viewer(world, "bob")
    infos = await grpc_calls(metrics_port, "GetServerInfo")
    await asyncio.gather(*(backends.capabilities() for _ in range(LOOKUPS)))
    assert await grpc_calls(metrics_port, "GetServerInfo") == infos + 1
    clock.now += INFO_TTL_SECONDS + 1
    await asyncio.gather(*(backends.capabilities() for _ in range(LOOKUPS)))
    assert await grpc_calls(metrics_port, "GetServerInfo") == infos + 2

    # The tree may take more than one page: count the pages of one look-up first.
    pages = await grpc_calls(metrics_port, "ListComponents")
    paths = await backends.component_paths(viewer, world.components.values())
    one_tree = await grpc_calls(metrics_port, "ListComponents") - pages
    assert one_tree >= 1
    clock.now += TTL + 1
    found = await asyncio.gather(
        *(backends.component_paths(viewer, world.components.values()) for _ in range(LOOKUPS))
    )
    assert await grpc_calls(metrics_port, "ListComponents") == pages + 2 * one_tree
    assert all(each == paths for each in found)


async def test_an_attachment_list_missed_at_once_is_asked_once(
    counted: tuple[Backends, Clock, int], world: World, model: v1.ModelStub
) -> None:
    backends, clock, metrics_port = counted
    viewer = _viewer(world, "bob")
    issue = await create_issue(model, world, "Single flight: attachments")
    kept = KeptAttachments(TTL, clock=clock)

    async def fetch() -> list[v1.Attachment]:
        response = await call(
            backends.model.list_attachments,
            v1.ListAttachmentsRequest(caller=viewer.caller, issue_id=issue.id),
        )
        return response.attachments

    start = await grpc_calls(metrics_port, "ListAttachments")
    await asyncio.gather(
        *(kept.get_or_fetch(issue.id, issue.version, fetch) for _ in range(LOOKUPS))
    )
    assert await grpc_calls(metrics_port, "ListAttachments") == start + 1
    clock.now += TTL + 1
    await asyncio.gather(
        *(kept.get_or_fetch(issue.id, issue.version, fetch) for _ in range(LOOKUPS))
    )
    assert await grpc_calls(metrics_port, "ListAttachments") == start + 2
