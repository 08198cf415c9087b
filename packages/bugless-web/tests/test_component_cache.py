"""The per-caller component tree cache behind list pages and the issue forms.

A counting fake Model runs behind a real grpclib server, so every assertion is
about the calls that actually crossed the wire; time is a fake clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from web_support import SESSION_KEY

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import listening_port
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.routes.issues import list_all_components
from bugless_web.searching import component_paths
from bugless_web.settings import WebSettings

#: The fake Model's components, a page holds two (so the tree takes two pages).
TREE = {1: "Platform", 2: "Platform>Storage", 3: "Platform>Network"}
PAGE = 2


class CountingModel(v1.ModelBase):
    """Serves :data:`TREE` and counts the calls it gets, by method."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.paths = dict(TREE)

    async def list_components(self, message: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        self.calls["ListComponents"] += 1
        start = int(message.page.page_token or 0) if message.page else 0
        ids = sorted(self.paths)[start : start + PAGE]
        more = start + PAGE < len(self.paths)
        return v1.ListComponentsResponse(
            components=[v1.Component(id=i, path=self.paths[i]) for i in ids],
            next_page_token=str(start + PAGE) if more else "",
        )

    async def list_hotlists(self, message: v1.ListHotlistsRequest) -> v1.ListHotlistsResponse:
        self.calls["ListHotlists"] += 1
        name = f"{message.caller.user_id}'s list" if message.caller else "?"
        return v1.ListHotlistsResponse(hotlists=[v1.Hotlist(id=1, name=name)])

    async def get_component(self, message: v1.GetComponentRequest) -> v1.Component:
        self.calls["GetComponent"] += 1
        if message.component_id == 99:
            return v1.Component(id=99, path="Newcomer")
        raise GRPCError(Status.NOT_FOUND, f"no component {message.component_id}")


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    model: CountingModel
    backends: Backends
    clock: Clock


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    model = CountingModel()
    server = Server([model])
    await server.start("127.0.0.1", 0)
    port = listening_port(server)
    address = ServiceAddress("127.0.0.1", port)
    settings = WebSettings(
        model=address,
        auth=address,
        session_keys=(SESSION_KEY,),
        component_cache_seconds=10.0,
        hotlist_cache_seconds=5.0,
        insecure_local=True,
    )
    clock = Clock()
    backends = Backends(settings, clock=clock)
    try:
        yield Rig(model, backends, clock)
    finally:
        backends.close()
        server.close()
        await server.wait_closed()


def viewer(user_id: str, *groups: str, admin: bool = False) -> Viewer:
    caller = v1.Caller(user_id=user_id, groups=list(groups), admin=admin)
    return Viewer(identity=v1.Identity(user=v1.User(user_id=user_id)), caller=caller, token="t")


async def test_a_page_of_components_costs_one_paged_listing_not_a_get_each(rig: Rig) -> None:
    paths = await component_paths(rig.backends, viewer("u1"), [1, 2, 3, 2, 0])
    assert paths == {1: "Platform", 2: "Platform>Storage", 3: "Platform>Network"}
    assert rig.model.calls == Counter({"ListComponents": 2})  # two pages, no GetComponent


async def test_paths_and_the_picker_share_one_listing_until_the_ttl_passes(rig: Rig) -> None:
    bob = viewer("u1", "eng")
    await component_paths(rig.backends, bob, [1])
    picker = await list_all_components(rig.backends, bob)
    assert [c.path for c in picker] == list(TREE.values())
    rig.model.paths[2] = "Platform>Disks"
    rig.clock.now += 9.9
    assert (await component_paths(rig.backends, bob, [2]))[2] == "Platform>Storage"  # stale
    assert rig.model.calls["ListComponents"] == 2
    rig.clock.now += 0.2
    assert (await component_paths(rig.backends, bob, [2]))[2] == "Platform>Disks"
    assert rig.model.calls["ListComponents"] == 4


async def test_each_set_of_principals_gets_its_own_listing(rig: Rig) -> None:
    await list_all_components(rig.backends, viewer("u1", "eng", "ops"))
    await list_all_components(rig.backends, viewer("u1", "ops", "eng"))  # same principals
    assert rig.model.calls["ListComponents"] == 2
    for other in (viewer("u1", "eng"), viewer("u2", "eng", "ops"), viewer("u1", admin=True)):
        await list_all_components(rig.backends, other)
    assert rig.model.calls["ListComponents"] == 2 + 3 * 2


async def test_ids_missing_from_the_tree_are_fetched_one_by_one(rig: Rig) -> None:
    paths = await component_paths(rig.backends, viewer("u1"), [1, 99, 42])
    assert paths == {1: "Platform", 99: "Newcomer", 42: "component 42"}
    assert rig.model.calls == Counter({"ListComponents": 2, "GetComponent": 2})


async def test_forgetting_drops_every_cached_tree(rig: Rig) -> None:
    await list_all_components(rig.backends, viewer("u1"))
    rig.backends.forget_components()
    await list_all_components(rig.backends, viewer("u1"))
    assert rig.model.calls["ListComponents"] == 4


async def test_the_cache_holds_a_bounded_number_of_callers(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bugless_web.viewer_caches.COMPONENT_CACHE_SIZE", 2)
    for user in ("u1", "u2", "u3"):
        await list_all_components(rig.backends, viewer(user))
    await list_all_components(rig.backends, viewer("u3"))  # still cached
    await list_all_components(rig.backends, viewer("u2"))  # still cached
    assert rig.model.calls["ListComponents"] == 3 * 2
    await list_all_components(rig.backends, viewer("u1"))  # the oldest, forgotten
    assert rig.model.calls["ListComponents"] == 4 * 2


def test_a_negative_ttl_is_refused() -> None:
    address = ServiceAddress("127.0.0.1", 1)
    with pytest.raises(ValueError, match="component-cache-seconds"):
        WebSettings(
            model=address,
            auth=address,
            session_keys=(SESSION_KEY,),
            component_cache_seconds=-1,
            insecure_local=True,
        )


async def test_hotlists_are_kept_per_viewer_for_the_ttl(rig: Rig) -> None:
    bob, carol = viewer("u1", "eng"), viewer("u2", "eng")
    assert [h.name for h in await rig.backends.my_hotlists(bob)] == ["u1's list"]
    assert [h.name for h in await rig.backends.my_hotlists(carol)] == ["u2's list"]
    rig.clock.now += 4.9
    await rig.backends.my_hotlists(bob)
    await rig.backends.my_hotlists(carol)
    assert rig.model.calls["ListHotlists"] == 2
    rig.clock.now += 0.2
    await rig.backends.my_hotlists(bob)
    assert rig.model.calls["ListHotlists"] == 3


async def test_forgetting_hotlists_drops_only_that_viewers_entry(rig: Rig) -> None:
    bob, carol = viewer("u1"), viewer("u2")
    await rig.backends.my_hotlists(bob)
    await rig.backends.my_hotlists(carol)
    rig.backends.forget_hotlists(bob)
    await rig.backends.my_hotlists(bob)
    await rig.backends.my_hotlists(carol)
    assert rig.model.calls["ListHotlists"] == 3


async def test_the_hotlist_cache_holds_a_bounded_number_of_viewers(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bugless_web.viewer_caches.HOTLIST_CACHE_SIZE", 2)
    for user in ("u1", "u2", "u3"):
        await rig.backends.my_hotlists(viewer(user))
    await rig.backends.my_hotlists(viewer("u3"))
    await rig.backends.my_hotlists(viewer("u2"))
    assert rig.model.calls["ListHotlists"] == 3
    await rig.backends.my_hotlists(viewer("u1"))  # the oldest, forgotten
    assert rig.model.calls["ListHotlists"] == 4


async def test_a_value_made_from_the_tree_is_made_once_per_tree(rig: Rig) -> None:
    bob = viewer("u1", "eng")
    made: list[str] = []

    def picker(components: tuple[v1.Component, ...]) -> str:
        made.append(text := ", ".join(c.path for c in components))
        return text

    first = await rig.backends.from_components(bob, "picker", picker)
    assert await rig.backends.from_components(bob, "picker", picker) is first
    assert await rig.backends.from_components(viewer("u1", "eng"), "picker", picker) is first
    assert len(made) == 1
    await rig.backends.from_components(viewer("u2"), "picker", picker)  # its own tree
    await rig.backends.from_components(bob, "other picker", picker)
    assert len(made) == 3
    rig.model.paths[2] = "Platform>Disks"
    rig.clock.now += 10.1  # the tree's TTL: a new tree, the value made again from it
    assert "Platform>Disks" in await rig.backends.from_components(bob, "picker", picker)
    rig.backends.forget_components()
    await rig.backends.from_components(bob, "picker", picker)
    assert len(made) == 5
