"""Saved searches through the API: readers by username, the owner alone changes them."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs, signed_in

from bugless_api.client import BuglessClient
from bugless_core.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from bugless_proto import v1


async def _save(
    client: BuglessClient, query: str = "is:open", *, readers: list[v1.Principal] | None = None
) -> v1.SavedSearch:
    return await client.create_saved_search(
        f"search-{secrets.token_hex(4)}", query, readers=readers or []
    )


async def _update(
    client: BuglessClient, search: v1.SavedSearch, *paths: str, expected_version: int = 0
) -> v1.SavedSearch:
    return await client.update_saved_search(search, paths, expected_version=expected_version)


async def _delete(client: BuglessClient, saved_search_id: int) -> None:
    await client.delete_saved_search(saved_search_id)


async def _listed(client: BuglessClient, *, owned_only: bool = False) -> dict[int, v1.SavedSearch]:
    """Every saved search the caller sees, by id (all pages)."""
    searches = await client.all_saved_searches(owned_only=owned_only)
    return {search.id: search for search in searches}


def _readers(search: v1.SavedSearch) -> set[str]:
    return {f"user:{p.user}" if p.user is not None else f"group:{p.group}" for p in search.readers}


async def test_the_owner_updates_a_search_and_readers_see_it_by_username(
    connect_as: ConnectAs,
) -> None:
    """New readers (users by username, groups) see it; a removed reader no longer does."""
    robot, boss, viewer = await signed_in(connect_as, "robot", "boss", "viewer")
    saved = await _save(robot, readers=[v1.Principal(user="boss")])
    assert (saved.owner, _readers(saved)) == ("robot", {"user:boss"})
    assert saved.id in await _listed(boss)

    updated = await _update(
        robot,
        v1.SavedSearch(
            id=saved.id,
            name="ignored: not in the mask",
            query="is:closed assignee:me",
            readers=[v1.Principal(user="viewer"), v1.Principal(group="triage")],
        ),
        "query",
        "readers",
        expected_version=saved.version,
    )

    assert (updated.name, updated.query, updated.owner) == (
        saved.name,
        "is:closed assignee:me",
        "robot",
    )
    assert _readers(updated) == {"user:viewer", "group:triage"}
    assert updated.version == saved.version + 1
    shared = (await _listed(viewer))[saved.id]
    assert (shared.owner, shared.query) == ("robot", "is:closed assignee:me")
    assert _readers(shared) == {"user:viewer", "group:triage"}
    assert saved.id not in await _listed(viewer, owned_only=True)
    assert saved.id not in await _listed(boss)
    assert (await _listed(robot, owned_only=True))[saved.id].version == updated.version


async def test_bad_saved_search_updates_are_refused_and_change_nothing(
    connect_as: ConnectAs,
) -> None:
    """A query that does not parse, an unknown reader, a stale version: nothing written."""
    (robot,) = await signed_in(connect_as, "robot")
    saved = await _save(robot, "is:open")
    once = await _update(robot, v1.SavedSearch(id=saved.id, name="once"), "name")

    with pytest.raises(InvalidArgument, match=r"saved_search\.query: .*at column") as bad:
        await _update(robot, v1.SavedSearch(id=saved.id, query="is:open status:"), "query")
    assert bad.value.metadata["field"] == "saved_search.query"
    assert bad.value.message.rstrip().endswith("^")
    with pytest.raises(
        InvalidArgument, match=r"saved_search\.readers\[1\]\.user: no bugless user is named"
    ):
        await _update(
            robot,
            v1.SavedSearch(
                id=saved.id, readers=[v1.Principal(group="triage"), v1.Principal(user="ghost")]
            ),
            "readers",
        )
    with pytest.raises(Conflict, match=f"saved search {saved.id} is at version") as stale:
        await _update(
            robot,
            v1.SavedSearch(id=saved.id, name="twice"),
            "name",
            expected_version=saved.version,
        )
    assert stale.value.metadata["current_version"] == str(once.version)

    now = (await _listed(robot, owned_only=True))[saved.id]
    assert (now.name, now.query, now.readers, now.version) == ("once", "is:open", [], once.version)


async def test_readers_may_not_change_it_and_strangers_are_told_it_is_not_found(
    connect_as: ConnectAs,
) -> None:
    """A reader is PERMISSION_DENIED; someone it is not shared with gets NOT_FOUND."""
    robot, viewer, outsider = await signed_in(connect_as, "robot", "viewer", "outsider")
    saved = await _save(robot, readers=[v1.Principal(group="secret-viewers")])
    assert saved.id in await _listed(viewer)

    with pytest.raises(PermissionDenied, match=f"only the owner .* saved search {saved.id}"):
        await _update(viewer, v1.SavedSearch(id=saved.id, query="hijacked"), "query")
    with pytest.raises(PermissionDenied, match="only the owner"):
        await _delete(viewer, saved.id)
    with pytest.raises(NotFound, match=f"saved search {saved.id} not found"):
        await _update(outsider, v1.SavedSearch(id=saved.id, name="mine"), "name")
    with pytest.raises(NotFound, match=f"saved search {saved.id} not found"):
        await _delete(outsider, saved.id)
    assert saved.id not in await _listed(outsider)

    now = (await _listed(robot))[saved.id]
    assert (now.query, now.version) == ("is:open", saved.version)


async def test_the_owner_deletes_a_saved_search(connect_as: ConnectAs) -> None:
    """Deleted: gone from every listing; deleting again is NOT_FOUND."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    kept = await _save(robot, "is:open")
    doomed = await _save(robot, "is:closed", readers=[v1.Principal(user="boss")])

    await _delete(robot, doomed.id)

    mine = await _listed(robot, owned_only=True)
    assert doomed.id not in mine
    assert kept.id in mine
    assert doomed.id not in await _listed(boss)
    with pytest.raises(NotFound, match=f"saved search {doomed.id} not found"):
        await _delete(robot, doomed.id)
