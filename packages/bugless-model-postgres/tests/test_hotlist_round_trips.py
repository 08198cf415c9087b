"""Hotlist membership writes take as many statements for many issues as for one.

Adding issues to a hotlist, removing them and deleting the hotlist each give
every issue concerned a new version and a history entry (``hotlist_ids``), so
replaying an issue's history gives its memberships. Those were three
statements per issue (the item, the version bump, the entry): adding 175
issues sent 535 statements, adding four 22. The items are now written in one
statement and the versions with the entries in another, whatever the count
(12 for either); the entries and ranks are the same as before. Moving one
item wrote every item's rank on its own (182 statements on 175 items); the
new order is now one statement.
"""

from __future__ import annotations

import asyncio

from write_support import ALICE, Sent, create, fresh_component

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1


async def _issues(backend: PostgresBackend, count: int) -> list[v1.Issue]:
    component = await fresh_component(backend, "hotlist-trips")
    made: list[v1.Issue] = []
    for start in range(0, count, 25):
        made += await asyncio.gather(
            *(create(backend, component.id) for _ in range(start, min(count, start + 25)))
        )
    return made


#: Alice as an admin: a deleted hotlist is no one else's to see in the history
#: (a37a5d3c), not even its owner's, and the deletion's entries are read here.
ALICE_ADMIN = v1.Caller(user_id=ALICE.user_id, groups=ALICE.groups, admin=True)


async def _membership_entries(
    backend: PostgresBackend, issues: list[v1.Issue], hotlist_id: int
) -> list[tuple[int, int, list[str], list[str]]]:
    """Each issue's last entry, read as an admin: (issue, version, ids added, removed)."""
    found = []
    for issue in issues:
        history = await backend.list_history(
            v1.ListHistoryRequest(caller=ALICE_ADMIN, issue_id=issue.id)
        )
        last = history.entries[-1]
        (change,) = (c for c in last.changes if c.field == "hotlist_ids")
        assert last.author == ALICE.user_id
        found.append((issue.id, last.version, list(change.added), list(change.removed)))
    assert all(str(hotlist_id) in (*a, *r) for _, _, a, r in found)
    return found


async def test_adding_removing_and_deleting_take_the_same_statements_for_any_count(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    few, many = await _issues(backend, 4), await _issues(backend, 175)
    sent: dict[tuple[str, int], int] = {}
    async with Sent(backend, model_settings.pool_max_size) as recorder:
        for issues in (few, many):
            hotlist = await backend.create_hotlist(
                v1.CreateHotlistRequest(caller=ALICE, name=f"trips {len(issues)}")
            )
            ids = [i.id for i in issues]
            recorder.take()
            added = await backend.add_hotlist_items(
                v1.AddHotlistItemsRequest(caller=ALICE, hotlist_id=hotlist.id, issue_ids=ids)
            )
            sent["add", len(ids)] = len(recorder.take())
            assert added.item_count == len(ids)
            entries = await _membership_entries(backend, issues, hotlist.id)
            assert entries == [(i.id, i.version + 1, [str(hotlist.id)], []) for i in issues]
            items = await backend.list_hotlist_items(
                v1.ListHotlistItemsRequest(
                    caller=ALICE, hotlist_id=hotlist.id, page=v1.PageRequest(page_size=500)
                )
            )
            assert [(it.issue_id, it.rank) for it in items.items] == [
                (issue_id, rank) for rank, issue_id in enumerate(ids)
            ]

            recorder.take()
            await backend.rank_hotlist_item(
                v1.RankHotlistItemRequest(
                    caller=ALICE, hotlist_id=hotlist.id, issue_id=ids[-1], position=1
                )
            )
            sent["rank", len(ids)] = len(recorder.take())
            ids = [ids[0], ids[-1], *ids[1:-1]]
            ranked = await backend.list_hotlist_items(
                v1.ListHotlistItemsRequest(
                    caller=ALICE, hotlist_id=hotlist.id, page=v1.PageRequest(page_size=500)
                )
            )
            assert [(it.issue_id, it.rank) for it in ranked.items] == [
                (issue_id, rank) for rank, issue_id in enumerate(ids)
            ]

            half = ids[::2]
            recorder.take()
            await backend.remove_hotlist_items(
                v1.RemoveHotlistItemsRequest(caller=ALICE, hotlist_id=hotlist.id, issue_ids=half)
            )
            sent["remove", len(ids)] = len(recorder.take())
            removed = await _membership_entries(
                backend, [i for i in issues if i.id in half], hotlist.id
            )
            assert removed == [
                (issue_id, version + 1, [], [str(hotlist.id)])
                for issue_id, version, _, _ in entries
                if issue_id in half
            ]

            kept = [i for i in issues if i.id not in half]
            recorder.take()
            await backend.delete_hotlist(
                v1.DeleteHotlistRequest(caller=ALICE, hotlist_id=hotlist.id)
            )
            sent["delete", len(ids)] = len(recorder.take())
            left = await _membership_entries(backend, kept, hotlist.id)
            assert [(i, a, r) for i, _, a, r in left] == [
                (i.id, [], [str(hotlist.id)]) for i in kept
            ]

    for call in ("add", "rank", "remove", "delete"):
        assert sent[call, 175] == sent[call, 4], (call, sent)
