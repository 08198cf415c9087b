"""Property: replaying an issue's history from empty yields its current state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bugless_core.errors import InvalidArgument
from bugless_core.issue_fields import LIST_FIELDS, SCALAR_FIELDS
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

T = TypeVar("T")
ADMIN = v1.Caller(user_id="root", admin=True)


class LoopThread:
    """A private event loop on a thread: hypothesis drives sync examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class World:
    """A backend on its own loop plus the components and hotlists deltas use."""

    def __init__(self, runner: LoopThread, backend: PostgresBackend) -> None:
        self.runner = runner
        self.backend = backend
        self.components: list[int] = []
        self.hotlists: list[int] = []

    async def setup(self) -> None:
        for _ in range(2):
            comp = await self.backend.create_component(
                v1.CreateComponentRequest(caller=ADMIN, name=f"replay-{id(self)}-{_}")
            )
            self.components.append(comp.id)
            hotlist = await self.backend.create_hotlist(
                v1.CreateHotlistRequest(caller=ADMIN, name="replay")
            )
            self.hotlists.append(hotlist.id)


@pytest.fixture(scope="module")
def world(model_settings: ModelSettings, bugless_model_backend: PostgresBackend) -> Iterator[World]:
    runner = LoopThread()
    backend = runner.run(PostgresBackend.open(model_settings))
    made = World(runner, backend)
    runner.run(made.setup())
    yield made
    runner.run(backend.close())
    runner.stop()


def replay(entries: list[v1.HistoryEntry]) -> dict[str, Any]:
    state: dict[str, Any] = {name: "" for name in SCALAR_FIELDS} | {
        name: set() for name in LIST_FIELDS
    }
    for entry in entries:
        for change in entry.changes:
            if change.field in LIST_FIELDS:
                state[change.field] |= set(change.added)
                state[change.field] -= set(change.removed)
            else:
                assert state[change.field] == change.old_value, (entry.version, change)
                state[change.field] = change.new_value
    return state


def rendered(issue: v1.Issue) -> dict[str, Any]:
    def ref(value: int) -> str:
        return str(value) if value else ""

    return {
        "title": issue.title,
        "status": issue.status.name,
        "priority": issue.priority.name,
        "severity": issue.severity.name,
        "type": issue.type.name,
        "component_id": ref(issue.component_id),
        "assignee": issue.assignee,
        "verifier": issue.verifier,
        "parent_id": ref(issue.parent_id),
        "duplicate_of_id": ref(issue.duplicate_of_id),
        "cc": set(issue.cc),
        "hotlist_ids": {str(i) for i in issue.hotlist_ids},
        "blocking_ids": {str(i) for i in issue.blocking_ids},
        "blocked_by_ids": {str(i) for i in issue.blocked_by_ids},
    }


_subset = st.lists(st.integers(0, 2), unique=True, max_size=3)
step = st.fixed_dictionaries(
    {
        "mask": st.lists(st.sampled_from(SCALAR_FIELDS), unique=True, max_size=4),
        "title": st.sampled_from(["alpha", "beta", "gamma"]),
        "status": st.sampled_from([s for s in v1.Status if s.value]),
        "priority": st.sampled_from([p for p in v1.Priority if p.value]),
        "severity": st.sampled_from([s for s in v1.Severity if s.value]),
        "type": st.sampled_from([t for t in v1.IssueType if t.value]),
        "component": st.integers(0, 1),
        "assignee": st.sampled_from(["", "ann", "ben"]),
        "verifier": st.sampled_from(["", "vic"]),
        "parent": st.integers(-1, 2),
        "duplicate": st.integers(-1, 2),
        "cc_add": st.lists(st.sampled_from(["c1", "c2", "c3"]), unique=True, max_size=2),
        "cc_remove": st.lists(st.sampled_from(["c1", "c2", "c3"]), unique=True, max_size=2),
        "hotlists": st.lists(st.integers(0, 1), unique=True, max_size=2),
        "hotlists_remove": st.booleans(),
        "blocking": _subset,
        "blocking_remove": st.booleans(),
        "blocked_by": _subset,
        "blocked_by_remove": st.booleans(),
        "comment": st.sampled_from(["", "", "a note"]),
        "via_hotlist_call": st.booleans(),
    }
)


async def run_steps(world: World, steps: list[dict[str, Any]]) -> list[int]:
    b = world.backend
    issue_ids = []
    for n in range(4):
        made = await b.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"issue {n}", component_id=world.components[0]),
                description="first" if n == 0 else "",
            )
        )
        issue_ids.append(made.id)
    main, helpers = issue_ids[0], issue_ids[1:]
    for s in steps:
        if s["via_hotlist_call"] and s["hotlists"]:
            hotlist = world.hotlists[s["hotlists"][0]]
            if s["hotlists_remove"]:
                await b.remove_hotlist_items(
                    v1.RemoveHotlistItemsRequest(caller=ADMIN, hotlist_id=hotlist, issue_ids=[main])
                )
            else:
                await b.add_hotlist_items(
                    v1.AddHotlistItemsRequest(caller=ADMIN, hotlist_id=hotlist, issue_ids=[main])
                )
            continue
        current = await b.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=main))
        fields = v1.IssueFields(
            title=s["title"],
            status=s["status"],
            priority=s["priority"],
            severity=s["severity"],
            type=s["type"],
            component_id=world.components[s["component"]],
            assignee=s["assignee"],
            verifier=s["verifier"],
            parent_id=helpers[s["parent"]] if s["parent"] >= 0 else 0,
            duplicate_of_id=helpers[s["duplicate"]] if s["duplicate"] >= 0 else 0,
        )
        hotlists = [world.hotlists[i] for i in s["hotlists"]]
        blocking = [helpers[i] for i in s["blocking"]]
        blocked_by = [helpers[i] for i in s["blocked_by"]]
        cc_remove = [c for c in s["cc_remove"] if c not in s["cc_add"]]
        delta = v1.IssueDelta(
            fields=fields,
            update_mask=FieldMask(paths=s["mask"]),
            cc_add=s["cc_add"],
            cc_remove=cc_remove,
            hotlist_add=[] if s["hotlists_remove"] else hotlists,
            hotlist_remove=hotlists if s["hotlists_remove"] else [],
            blocking_add=[] if s["blocking_remove"] else blocking,
            blocking_remove=blocking if s["blocking_remove"] else [],
            blocked_by_add=[] if s["blocked_by_remove"] else blocked_by,
            blocked_by_remove=blocked_by if s["blocked_by_remove"] else [],
        )
        request = v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=main,
            expected_version=current.version,
            delta=delta,
            comment=s["comment"],
        )
        # A random delta may change nothing; that one must be refused as empty.
        refused: InvalidArgument | None = None
        try:
            await b.change_issue(request)
        except InvalidArgument as exc:
            refused = exc
        if refused is not None:
            assert "the change is empty" in refused.message
    return issue_ids


async def check_replay(world: World, issue_ids: list[int]) -> None:
    b = world.backend
    for issue_id in issue_ids:
        issue = await b.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue_id))
        entries: list[v1.HistoryEntry] = []
        token = ""
        while True:
            page = await b.list_history(
                v1.ListHistoryRequest(
                    caller=ADMIN,
                    issue_id=issue_id,
                    page=v1.PageRequest(page_size=7, page_token=token),
                )
            )
            entries += page.entries
            token = page.next_page_token
            if not token:
                break
        assert [e.version for e in entries] == list(range(1, issue.version + 1))
        assert issue.comment_count == sum(1 for e in entries if e.comment)
        assert replay(entries) == rendered(issue)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_replaying_history_from_empty_gives_the_current_issue(
    world: World, steps: list[dict[str, Any]]
) -> None:
    issue_ids = world.runner.run(run_steps(world, steps))
    world.runner.run(check_replay(world, issue_ids))
