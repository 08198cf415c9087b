"""SyncBuglessClient: the same calls and errors as the async client, without a loop.

The API frontend under test runs on the session's event loop, so the
synchronous code runs in a worker thread (``asyncio.to_thread``) while that
loop keeps serving: the way a script would meet a server in another process.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from api_support import Bots, ConnectAs, signed_in

from bugless_api.client import RetryPolicy, SyncBuglessClient
from bugless_api.server import RunningApi
from bugless_core.errors import InvalidArgument, IssueVersionConflict, NotFound
from bugless_proto import v1

R = TypeVar("R")
SyncAs = Callable[[str], SyncBuglessClient]


@pytest.fixture
async def sync_as(api: RunningApi, bots: Bots, connect_as: ConnectAs) -> SyncAs:
    """Make a SyncBuglessClient of a bot (who is signed in once, so known by name)."""
    await signed_in(connect_as, *bots.certificates)

    def make(username: str) -> SyncBuglessClient:
        files = bots[username]
        return SyncBuglessClient(
            f"127.0.0.1:{api.port}",
            cert=files.cert,
            key=files.key,
            ca=bots.stack.pki.ca_file,
            timeout=30,
            retry=RetryPolicy(attempts=1),
        )

    return make


async def _in_thread(script: Callable[[], R]) -> R:
    return await asyncio.to_thread(script)


async def test_a_script_creates_gets_searches_and_changes(sync_as: SyncAs) -> None:
    """Every result is the same message the async client returns, people as usernames."""

    def script() -> None:
        with sync_as("robot") as bugless:
            me = bugless.whoami()
            assert me.user is not None
            assert me.user.username == "robot"
            component = bugless.create_component(f"Sync-{secrets.token_hex(3)}")
            issue = bugless.create_issue(
                "made without a loop",
                component.id,
                priority="P1",
                assignee="robot",
                cc=["boss"],
                description="from a script",
            )
            assert (issue.reporter, issue.assignee, issue.cc) == ("robot", "robot", ["boss"])
            assert issue.priority is v1.Priority.P1

            fetched = bugless.get_issue(issue.id)
            assert (fetched.title, fetched.version) == ("made without a loop", 1)

            found = bugless.search_issues(f"c:{component.id} assignee:me p:p1")
            assert [i.id for i in found.issues] == [issue.id]
            assert found.total_count == 1

            changed = bugless.update_issue(
                issue.id, status="fixed", assignee="boss", comment="done"
            )
            assert changed.issue is not None
            assert (changed.issue.status, changed.issue.assignee) == (v1.Status.FIXED, "boss")
            assert changed.entry is not None
            assert (changed.entry.author, changed.entry.comment) == ("robot", "done")

            commented = bugless.comment(issue.id, "and verified")
            assert commented.issue is not None
            assert commented.issue.version == 3
            history = bugless.list_history(issue.id)
            assert [e.comment for e in history.entries] == [
                "from a script",
                "done",
                "and verified",
            ]
            assert (bugless.batch_get_issues([issue.id, 987_654_321])).missing_ids == [987_654_321]

    await _in_thread(script)


async def test_a_script_gets_the_same_exceptions(sync_as: SyncAs) -> None:
    """NotFound, IssueVersionConflict with the current version, InvalidArgument naming a field."""

    def script() -> None:
        with sync_as("robot") as bugless:
            with pytest.raises(NotFound, match="issue 987654321 not found"):
                bugless.get_issue(987_654_321)

            component = bugless.create_component(f"SyncErr-{secrets.token_hex(3)}")
            issue = bugless.create_issue("contended", component.id)
            bugless.update_issue(issue.id, expected_version=issue.version, priority="P3")
            with pytest.raises(IssueVersionConflict) as caught:
                bugless.update_issue(issue.id, expected_version=issue.version, priority="P4")
            assert (caught.value.issue_id, caught.value.current_version) == (issue.id, 2)
            assert caught.value.expected_version == 1

            with pytest.raises(InvalidArgument, match=r"delta\.fields\.assignee: .*'ghost'"):
                bugless.update_issue(issue.id, assignee="ghost")
            with pytest.raises(InvalidArgument, match="priority: 'P9' is not one of"):
                bugless.update_issue(issue.id, priority="P9")
            # The client still works after errors, and nothing was changed by them.
            now = bugless.get_issue(issue.id)
            assert (now.version, now.priority) == (2, v1.Priority.P3)

    await _in_thread(script)


async def test_a_script_manages_a_hotlist(sync_as: SyncAs) -> None:
    """Hotlist calls through the wrapper, including the tuple of list_hotlist_items."""

    def script() -> None:
        with sync_as("robot") as bugless:
            component = bugless.create_component(f"SyncHot-{secrets.token_hex(3)}")
            first, second = (bugless.create_issue(f"h{n}", component.id) for n in range(2))
            hotlist = bugless.create_hotlist(f"sync-{secrets.token_hex(3)}", editors=["boss"])
            assert (hotlist.owner, hotlist.editors) == ("robot", ["boss"])
            bugless.add_to_hotlist(hotlist.id, [first.id, second.id], note="look")
            assert bugless.rank_hotlist_item(hotlist.id, second.id, 0).item_count == 2
            items, issues = bugless.list_hotlist_items(hotlist.id)
            assert [(i.issue_id, i.note, i.adder) for i in items] == [
                (second.id, "look", "robot"),
                (first.id, "look", "robot"),
            ]
            assert [i.id for i in issues] == [second.id, first.id]
            assert bugless.remove_from_hotlist(hotlist.id, [first.id]).item_count == 1
            bugless.delete_hotlist(hotlist.id)
            with pytest.raises(NotFound, match=str(hotlist.id)):
                bugless.get_hotlist(hotlist.id)

    await _in_thread(script)


async def test_close_is_idempotent_and_a_closed_client_refuses_calls(sync_as: SyncAs) -> None:
    """close() twice is harmless; a call after close fails loudly instead of hanging."""

    def script() -> None:
        bugless = sync_as("robot")
        assert bugless.list_components() is not None
        bugless.close()
        bugless.close()
        with pytest.raises(RuntimeError, match="get_issue: the SyncBuglessClient is closed"):
            bugless.get_issue(1)

    await _in_thread(script)


def test_a_client_that_cannot_be_built_leaves_no_event_loop_open(tmp_path: Path) -> None:
    """Missing certificate files raise at once, and the private loop is closed, not leaked."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FileNotFoundError):
            SyncBuglessClient(
                "127.0.0.1:1",
                cert=tmp_path / "missing.pem",
                key=tmp_path / "missing.key",
                ca=tmp_path / "missing-ca.pem",
            )
        gc.collect()

    leaks = [w for w in caught if "unclosed event loop" in str(w.message)]
    assert leaks == []


async def test_a_script_uses_the_batch_hotlist_and_saved_search_calls(sync_as: SyncAs) -> None:
    """The calls that had no client method before issue 15 work without a loop too."""

    def script() -> None:
        with sync_as("robot") as bugless:
            component = bugless.create_component(f"SyncAll-{secrets.token_hex(3)}")
            issues = [bugless.create_issue(f"batch {n}", component.id) for n in range(2)]
            delta = bugless.delta(priority="P0")
            changed = bugless.batch_change_issues(
                [(i.id, i.version) for i in issues], delta, comment="both", atomic=True
            )
            assert [r.issue.priority for r in changed.results if r.issue] == [v1.Priority.P0] * 2

            hotlist = bugless.create_hotlist(f"sync-{secrets.token_hex(3)}")
            bugless.add_to_hotlist(hotlist.id, [issues[0].id])
            item = bugless.set_hotlist_item_note(hotlist.id, issues[0].id, "first")
            assert item.note == "first"
            renamed = bugless.update_hotlist(v1.Hotlist(id=hotlist.id, name="renamed"), ["name"])
            assert renamed.name == "renamed"
            bugless.delete_hotlist(hotlist.id)

            saved = bugless.create_saved_search(f"s-{secrets.token_hex(3)}", "is:open")
            assert saved.id in {s.id for s in bugless.all_saved_searches(owned_only=True)}
            bugless.delete_saved_search(saved.id)
            with pytest.raises(NotFound):
                bugless.get_hotlist(hotlist.id)

    await _in_thread(script)


async def test_a_script_pages_through_a_search_with_iter_issues(sync_as: SyncAs) -> None:
    """``iter_issues`` is a plain generator over every page, with the async one's arguments.

    Before, the blocking client had no ``iter_issues``: a script paged by hand
    with ``search_issues`` and ``next_page_token``.
    """

    def script() -> None:
        with sync_as("robot") as bugless:
            component = bugless.create_component(f"SyncIter-{secrets.token_hex(3)}")
            made = [
                bugless.create_issue(f"paged {n}", component.id, description="not asked for").id
                for n in range(5)
            ]
            query = f"c:{component.id}"
            every = list(bugless.iter_issues(query, page_size=2))
            assert sorted(i.id for i in every) == sorted(made)
            assert {(i.title, i.description) for i in every} == {
                (f"paged {n}", "not asked for") for n in range(5)
            }
            some = list(bugless.iter_issues(query, limit=3, page_size=2))
            assert len(some) == 3
            titles = list(bugless.iter_issues(query, page_size=2, read_mask=["title"]))
            assert sorted(i.id for i in titles) == sorted(made)
            assert all(i.title and not i.description for i in titles)
            # Left after the first issue: the rest of the pages are never asked for,
            # and the client still makes calls.
            first = next(iter(bugless.iter_issues(query, page_size=2)))
            assert first.id in made
            assert bugless.get_issue(first.id).id == first.id
            held = bugless.iter_issues(query, page_size=2)
            assert next(held).id in made
        # A generator still held when the client closes ends with it, quietly.
        unraisable: list[object] = []
        hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                del held
                gc.collect()
        finally:
            sys.unraisablehook = hook
        assert (unraisable, [str(w.message) for w in caught]) == ([], [])
        with pytest.raises(RuntimeError, match="iter_issues: the SyncBuglessClient is closed"):
            next(iter(bugless.iter_issues(query)))

    await _in_thread(script)


async def test_a_script_watches_with_a_plain_generator_from_a_position(
    sync_as: SyncAs, connect_as: ConnectAs
) -> None:
    """``watch`` blocks for each event; ``after_position`` replays what the script missed.

    Before, the blocking client had no ``watch`` at all (async only).
    """
    (boss,) = await signed_in(connect_as, "boss")
    component = await boss.create_component(f"SyncWatch-{secrets.token_hex(3)}")
    issue = await boss.create_issue("watched by a script", component.id)
    head = boss.watch(issue_id=issue.id, reconnect=False)
    start = (await anext(head)).position
    await head.aclose()
    await boss.comment(issue.id, "while the script was away")

    def script() -> list[tuple[bool, str]]:
        with sync_as("robot") as bugless:
            events = bugless.watch(issue_id=issue.id, after_position=start)
            seen = [next(events), next(events)]
            events.close()  # leaving early cancels the call on the client's loop
            assert bugless.get_issue(issue.id).id == issue.id
        return [(e.subscribed, e.entry.comment if e.entry else "") for e in seen]

    assert await _in_thread(script) == [(True, ""), (False, "while the script was away")]
