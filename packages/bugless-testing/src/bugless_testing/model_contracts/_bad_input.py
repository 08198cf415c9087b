"""Contract: a bad request that would write gets a clear error and writes nothing.

Reads and queries have their own contract (:mod:`._bad_reads`): they cannot
write, so there only the status and the field named are checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from grpclib.const import Status

from bugless_core import limits
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    UNKNOWN_ID,
    change,
    delta,
    expect_error,
    get_component,
    get_issue,
    history,
    make_component,
    make_hotlist,
    make_issue,
    search_page,
    unique,
    within,
)

#: Every call, made without a caller (the Model must know who is calling).
_NO_CALLER_CALLS: list[tuple[str, Callable[[v1.ModelStub], Awaitable[object]]]] = [
    (
        "create_issue",
        lambda m: m.create_issue(
            v1.CreateIssueRequest(fields=v1.IssueFields(title="t", component_id=1))
        ),
    ),
    ("get_issue", lambda m: m.get_issue(v1.GetIssueRequest(issue_id=1))),
    ("batch_get_issues", lambda m: m.batch_get_issues(v1.BatchGetIssuesRequest(issue_ids=[1]))),
    (
        "change_issue",
        lambda m: m.change_issue(
            v1.ChangeIssueRequest(issue_id=1, expected_version=1, comment="c")
        ),
    ),
    (
        "batch_change_issues",
        lambda m: m.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                issues=[v1.IssueVersion(issue_id=1, expected_version=1)], comment="c"
            )
        ),
    ),
    ("list_history", lambda m: m.list_history(v1.ListHistoryRequest(issue_id=1))),
    ("search_issues", lambda m: m.search_issues(v1.SearchIssuesRequest())),
    ("create_component", lambda m: m.create_component(v1.CreateComponentRequest(name="x"))),
    ("get_component", lambda m: m.get_component(v1.GetComponentRequest(component_id=1))),
    ("list_components", lambda m: m.list_components(v1.ListComponentsRequest())),
    ("create_hotlist", lambda m: m.create_hotlist(v1.CreateHotlistRequest(name="x"))),
    ("list_hotlists", lambda m: m.list_hotlists(v1.ListHotlistsRequest())),
    (
        "add_hotlist_items",
        lambda m: m.add_hotlist_items(v1.AddHotlistItemsRequest(hotlist_id=1, issue_ids=[1])),
    ),
    (
        "create_saved_search",
        lambda m: m.create_saved_search(v1.CreateSavedSearchRequest(name="x", query="q")),
    ),
    ("list_saved_searches", lambda m: m.list_saved_searches(v1.ListSavedSearchesRequest())),
]


def _create(component_id: int, **fields: object) -> v1.CreateIssueRequest:
    base: dict[str, object] = {"title": "Valid title", "component_id": component_id}
    base.update(fields)
    return v1.CreateIssueRequest(caller=ALICE, fields=v1.IssueFields(**base))  # type: ignore[arg-type]


def _raw_delta(paths: list[str], fields: v1.IssueFields | None = None) -> v1.IssueDelta:
    return v1.IssueDelta(fields=fields or v1.IssueFields(), update_mask=FieldMask(paths=paths))


class BadInputContract:
    """Malformed or impossible requests: a clear status naming the field, and no write.

    Pins down: INVALID_ARGUMENT naming the field for missing callers (on every
    call, reads included), blank titles, unknown enum values, bad field masks
    and oversize batches; NOT_FOUND naming the id for unknown issues,
    components and related issues; and, for every refusal, that re-reading shows
    nothing was written (no issue, no entry, no version bump, no idempotency key
    consumed). Bad reads and queries: :class:`BadReadContract`.
    """

    @pytest.mark.parametrize(
        "call", [c for _, c in _NO_CALLER_CALLS], ids=[n for n, _ in _NO_CALLER_CALLS]
    )
    async def test_missing_caller_is_invalid_argument_naming_it(
        self, model: v1.ModelStub, call: Callable[[v1.ModelStub], Awaitable[object]]
    ) -> None:
        await expect_error(call(model), Status.INVALID_ARGUMENT, "caller.user_id")

    async def test_caller_with_whitespace_is_invalid_argument(self, model: v1.ModelStub) -> None:
        await expect_error(
            get_issue(model, 1, caller=v1.Caller(user_id="two words")),
            Status.INVALID_ARGUMENT,
            "caller.user_id",
        )

    # ---- creates ----

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            pytest.param({"title": ""}, "fields.title", id="empty-title"),
            pytest.param({"title": "   \t"}, "fields.title", id="blank-title"),
            pytest.param(
                {"title": "x" * (limits.MAX_TITLE_LENGTH + 1)}, "fields.title", id="long-title"
            ),
            pytest.param({"priority": v1.Priority(99)}, "fields.priority", id="priority"),
            pytest.param({"severity": v1.Severity(42)}, "fields.severity", id="severity"),
            pytest.param({"type": v1.IssueType(77)}, "fields.type", id="type"),
            pytest.param({"status": v1.Status(55)}, "fields.status", id="status"),
            pytest.param({"assignee": "has space"}, "fields.assignee", id="assignee"),
            pytest.param({"parent_id": -3}, "fields.parent_id", id="negative-parent"),
        ],
    )
    async def test_bad_create_field_is_named_and_nothing_is_created(
        self, model: v1.ModelStub, fields: dict[str, object], named: str
    ) -> None:
        comp = await make_component(model)
        await expect_error(
            model.create_issue(_create(comp.id, **fields)), Status.INVALID_ARGUMENT, named
        )
        assert (await search_page(model, within(comp.id))).total_count == 0

    async def test_create_without_component_is_invalid_argument(self, model: v1.ModelStub) -> None:
        await expect_error(
            model.create_issue(
                v1.CreateIssueRequest(caller=ALICE, fields=v1.IssueFields(title="t"))
            ),
            Status.INVALID_ARGUMENT,
            "fields.component_id",
        )

    async def test_oversize_idempotency_key_is_invalid_argument(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        await expect_error(
            make_issue(model, comp.id, idempotency_key="k" * 129),
            Status.INVALID_ARGUMENT,
            "idempotency_key",
        )
        assert (await search_page(model, within(comp.id))).total_count == 0

    @pytest.mark.parametrize(
        "where", ["blocking_ids", "blocked_by_ids", "parent_id", "duplicate_of_id"]
    )
    async def test_create_referencing_unknown_issue_creates_nothing(
        self, model: v1.ModelStub, where: str
    ) -> None:
        comp = await make_component(model)
        key = unique("key")
        value: object = [UNKNOWN_ID] if where.endswith("_ids") else UNKNOWN_ID
        await expect_error(
            make_issue(model, comp.id, idempotency_key=key, **{where: value}),  # type: ignore[arg-type]
            Status.NOT_FOUND,
            str(UNKNOWN_ID),
        )
        assert (await search_page(model, within(comp.id))).total_count == 0
        fresh = await make_issue(model, comp.id, idempotency_key=key)
        assert fresh.version == 1, "the failed create did not consume the key"
        assert (await search_page(model, within(comp.id))).total_count == 1

    async def test_create_with_unknown_hotlist_creates_nothing(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        await expect_error(
            make_issue(model, comp.id, hotlist_ids=[UNKNOWN_ID]),
            Status.NOT_FOUND,
            str(UNKNOWN_ID),
        )
        assert (await search_page(model, within(comp.id))).total_count == 0

    async def test_create_blocking_a_good_and_a_bad_issue_touches_neither(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        good = await make_issue(model, comp.id)
        await expect_error(
            make_issue(model, comp.id, blocking_ids=[good.id, UNKNOWN_ID]), Status.NOT_FOUND
        )
        after = await get_issue(model, good.id)
        assert after.version == 1
        assert after.blocked_by_ids == []
        assert (await search_page(model, within(comp.id))).total_count == 1

    # ---- changes ----

    @pytest.mark.parametrize(
        ("the_delta", "named"),
        [
            pytest.param(_raw_delta(["reporter"]), "delta.update_mask", id="unchangeable-path"),
            pytest.param(_raw_delta(["nonsense"]), "delta.update_mask", id="unknown-path"),
            pytest.param(
                _raw_delta(["title", "title"], v1.IssueFields(title="x")),
                "delta.update_mask",
                id="repeated-path",
            ),
            pytest.param(_raw_delta(["title"]), "delta.fields.title", id="blank-title"),
            pytest.param(_raw_delta(["status"]), "delta.fields.status", id="unspecified-status"),
            pytest.param(
                _raw_delta(["priority"], v1.IssueFields(priority=v1.Priority(9))),
                "delta.fields.priority",
                id="unknown-priority",
            ),
            pytest.param(
                _raw_delta(["component_id"]), "delta.fields.component_id", id="zero-component"
            ),
            pytest.param(delta(cc_add=["x"], cc_remove=["x"]), "delta.cc_add", id="cc-both"),
            pytest.param(delta(cc_add=["x", "x"]), "delta.cc_add", id="cc-twice"),
            pytest.param(delta(cc_add=["a b"]), "delta.cc_add", id="cc-not-a-user"),
            pytest.param(delta(blocking_add=[0]), "delta.blocking_add", id="zero-id"),
        ],
    )
    async def test_bad_delta_is_named_and_nothing_is_written(
        self, model: v1.ModelStub, the_delta: v1.IssueDelta, named: str
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(
            change(model, issue, the_delta, comment="with a comment"),
            Status.INVALID_ARGUMENT,
            named,
        )
        assert await get_issue(model, issue.id) == await get_issue(model, issue.id)
        assert (await get_issue(model, issue.id)).version == 1
        assert len(await history(model, issue.id)) == 1

    async def test_missing_expected_version_is_invalid_argument(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(
            change(model, issue, comment="c", expected_version=0),
            Status.INVALID_ARGUMENT,
            "expected_version",
        )
        assert len(await history(model, issue.id)) == 1

    async def test_empty_change_without_comment_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(change(model, issue), Status.INVALID_ARGUMENT, "the change is empty")
        assert len(await history(model, issue.id)) == 1

    async def test_change_of_unknown_issue_is_not_found(self, model: v1.ModelStub) -> None:
        await expect_error(
            model.change_issue(
                v1.ChangeIssueRequest(
                    caller=ALICE, issue_id=UNKNOWN_ID, expected_version=1, comment="c"
                )
            ),
            Status.NOT_FOUND,
            f"issue {UNKNOWN_ID} not found",
        )

    @pytest.mark.parametrize(
        "make_delta",
        [
            pytest.param(lambda: delta(component_id=UNKNOWN_ID), id="component"),
            pytest.param(lambda: delta(parent_id=UNKNOWN_ID), id="parent"),
            pytest.param(lambda: delta(duplicate_of_id=UNKNOWN_ID), id="duplicate"),
            pytest.param(lambda: delta(blocked_by_add=[UNKNOWN_ID]), id="blocked-by"),
            pytest.param(lambda: delta(hotlist_add=[UNKNOWN_ID]), id="hotlist"),
        ],
    )
    async def test_change_naming_unknown_thing_is_not_found_and_writes_nothing(
        self, model: v1.ModelStub, make_delta: Callable[[], v1.IssueDelta]
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        the_delta = make_delta()
        the_delta.cc_add = ["also-not-applied"]
        the_delta.fields = the_delta.fields or v1.IssueFields()
        await expect_error(
            change(model, issue, the_delta, comment="c"), Status.NOT_FOUND, str(UNKNOWN_ID)
        )
        after = await get_issue(model, issue.id)
        assert after == issue
        assert len(await history(model, issue.id)) == 1

    async def test_batch_change_of_101_issues_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        ids = [issue.id, *range(UNKNOWN_ID, UNKNOWN_ID + limits.MAX_BATCH_CHANGE)]
        await expect_error(
            model.batch_change_issues(
                v1.BatchChangeIssuesRequest(
                    caller=ALICE,
                    issues=[v1.IssueVersion(issue_id=i, expected_version=1) for i in ids],
                    comment="c",
                    atomic=False,
                )
            ),
            Status.INVALID_ARGUMENT,
            "issues",
        )
        assert (await get_issue(model, issue.id)).version == 1

    async def test_batch_change_listing_an_issue_twice_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await expect_error(
            model.batch_change_issues(
                v1.BatchChangeIssuesRequest(
                    caller=ALICE,
                    issues=[v1.IssueVersion(issue_id=issue.id, expected_version=1)] * 2,
                    comment="c",
                )
            ),
            Status.INVALID_ARGUMENT,
            "issues",
        )
        assert (await get_issue(model, issue.id)).version == 1

    # ---- components and hotlists ----

    @pytest.mark.parametrize("name", ["", "  ", "a>b", " padded", "x" * 201])
    async def test_bad_component_name_is_invalid_argument(
        self, model: v1.ModelStub, name: str
    ) -> None:
        await expect_error(
            model.create_component(v1.CreateComponentRequest(caller=ADMIN, name=name)),
            Status.INVALID_ARGUMENT,
            "name",
        )

    @pytest.mark.parametrize("path", ["owner", "version", "nonsense"])
    async def test_bad_component_mask_is_invalid_argument_and_writes_nothing(
        self, model: v1.ModelStub, path: str
    ) -> None:
        comp = await make_component(model)
        await expect_error(
            model.update_component(
                v1.UpdateComponentRequest(
                    caller=ADMIN,
                    component=v1.Component(id=comp.id, name="renamed"),
                    update_mask=FieldMask(paths=[path]),
                )
            ),
            Status.INVALID_ARGUMENT,
            "update_mask",
        )
        assert await get_component(model, comp.id) == await get_component(model, comp.id)
        assert (await get_component(model, comp.id)).version == comp.version

    async def test_an_acl_naming_a_user_twice_is_invalid_argument_and_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        twice = [
            v1.AclEntry(principal=v1.Principal(user=ALICE.user_id), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(group="eng"), role=v1.Role.EDITOR),
            v1.AclEntry(principal=v1.Principal(user=ALICE.user_id), role=v1.Role.VIEWER),
        ]
        await expect_error(
            model.create_component(
                v1.CreateComponentRequest(caller=ADMIN, name="acl twice", acl=twice)
            ),
            Status.INVALID_ARGUMENT,
            "acl[2].principal",
        )
        comp = await make_component(model)
        await expect_error(
            model.update_component(
                v1.UpdateComponentRequest(
                    caller=ADMIN,
                    component=v1.Component(id=comp.id, acl=twice),
                    update_mask=FieldMask(paths=["acl"]),
                )
            ),
            Status.INVALID_ARGUMENT,
            "component.acl[2].principal",
        )
        assert (await get_component(model, comp.id)).version == comp.version

    async def test_component_page_size_above_1000_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        await expect_error(
            model.list_components(
                v1.ListComponentsRequest(caller=ALICE, page=v1.PageRequest(page_size=1001))
            ),
            Status.INVALID_ARGUMENT,
            "page.page_size",
        )

    async def test_update_of_unknown_component_is_not_found(self, model: v1.ModelStub) -> None:
        await expect_error(
            model.update_component(
                v1.UpdateComponentRequest(
                    caller=ADMIN,
                    component=v1.Component(id=UNKNOWN_ID, description="x"),
                    update_mask=FieldMask(paths=["description"]),
                )
            ),
            Status.NOT_FOUND,
            str(UNKNOWN_ID),
        )

    async def test_adding_501_issues_to_a_hotlist_is_invalid_argument(
        self, model: v1.ModelStub
    ) -> None:
        hot = await make_hotlist(model)
        await expect_error(
            model.add_hotlist_items(
                v1.AddHotlistItemsRequest(
                    caller=ALICE,
                    hotlist_id=hot.id,
                    issue_ids=list(range(1, limits.MAX_HOTLIST_ADD + 2)),
                )
            ),
            Status.INVALID_ARGUMENT,
            "issue_ids",
        )

    async def test_adding_good_and_unknown_issues_to_a_hotlist_adds_none(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        hot = await make_hotlist(model)
        await expect_error(
            model.add_hotlist_items(
                v1.AddHotlistItemsRequest(
                    caller=ALICE, hotlist_id=hot.id, issue_ids=[issue.id, UNKNOWN_ID]
                )
            ),
            Status.NOT_FOUND,
            str(UNKNOWN_ID),
        )
        got = await model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id))
        assert got.item_count == 0
        assert (await get_issue(model, issue.id)).version == 1

    async def test_bad_hotlist_mask_is_invalid_argument(self, model: v1.ModelStub) -> None:
        hot = await make_hotlist(model)
        await expect_error(
            model.update_hotlist(
                v1.UpdateHotlistRequest(
                    caller=ALICE,
                    hotlist=v1.Hotlist(id=hot.id, item_count=5),
                    update_mask=FieldMask(paths=["item_count"]),
                )
            ),
            Status.INVALID_ARGUMENT,
            "update_mask",
        )
