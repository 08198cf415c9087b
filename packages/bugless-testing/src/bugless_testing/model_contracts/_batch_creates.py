"""Contract: BatchCreateIssues, many creates of one caller in one call.

The API frontend sends concurrent CreateIssue calls of one caller as one
BatchCreateIssues, so each item must come out exactly as its own CreateIssue
would have: the same issue, or the same error (code, message, reason), with
validation, ACL checks and idempotency keys applied per item, and one item's
failure leaving the others created.
"""

from __future__ import annotations

from grpclib.const import Status

from bugless_core import limits
from bugless_core.search.build import term
from bugless_proto import v1
from bugless_testing.model_contracts._custom_fields import custom_term, define, values
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    UNKNOWN_ID,
    expect_error,
    get_issue,
    history,
    make_component,
    make_issue,
    search_ids,
    search_page,
    unique,
    update_component,
    user_entry,
    within,
)


def _item(
    component_id: int,
    title: str | None = None,
    *,
    description: str = "",
    cc: list[str] | None = None,
    idempotency_key: str = "",
) -> v1.CreateIssueRequest:
    return v1.CreateIssueRequest(
        fields=v1.IssueFields(
            title=unique("batch") if title is None else title, component_id=component_id
        ),
        description=description,
        cc=cc or [],
        idempotency_key=idempotency_key,
    )  # fmt: skip


async def _batch(
    model: v1.ModelStub, items: list[v1.CreateIssueRequest], caller: v1.Caller = ALICE
) -> list[v1.BatchCreateResult]:
    reply = await model.batch_create_issues(v1.BatchCreateIssuesRequest(caller=caller, items=items))
    assert len(reply.results) == len(items)
    return reply.results


class BatchCreateContract:
    """Per-item results of BatchCreateIssues, as CreateIssue would give each."""

    async def test_each_item_is_created_as_create_issue_would(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        items = [
            _item(comp.id, "first", description="d1", cc=["x"]),
            v1.CreateIssueRequest(
                fields=v1.IssueFields(title="second", component_id=comp.id, assignee="bob")
            ),
        ]
        results = await _batch(model, items)
        assert [r.code for r in results] == [0, 0]
        first, second = (r.issue for r in results)
        assert first is not None
        assert second is not None
        assert first.id != second.id
        assert (first.title, first.reporter, first.version, first.cc) == (
            "first",
            "alice",
            1,
            ["x"],
        )
        assert (second.status, second.assignee) == (v1.Status.ASSIGNED, "bob")
        for created in (first, second):
            assert await get_issue(model, created.id, caller=ALICE) == created
            entries = await history(model, created.id)
            assert [e.version for e in entries] == [1]
            assert entries[0].author == "alice"
        assert (await history(model, first.id))[0].comment == "d1"

    async def test_custom_values_mentions_and_closed_items_as_create_issue_writes_them(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        number = await define(model, comp.id, v1.CustomFieldType.INTEGER)
        kinds = await define(
            model, comp.id, v1.CustomFieldType.ENUM_MULTI, options=("a", "b"), defaults=("b",)
        )
        name, other = unique("pat"), unique("sam")

        def item(title: str) -> v1.CreateIssueRequest:
            return v1.CreateIssueRequest(
                fields=v1.IssueFields(title=title, component_id=comp.id, status=v1.Status.FIXED),
                description=f'ask @{other}: "quoted", back\\slash, {{braces}}',
                cc=["zoe", "carol"],
                custom_fields=[values(number.id, "42"), values(kinds.id, "a", "b")],
            )

        results = await _batch(model, [item(f"for @{name}"), _item(comp.id, "plain")])
        alone_request = item(f"alone for @{name}")
        alone_request.caller = ALICE
        alone = await model.create_issue(alone_request)
        assert [r.code for r in results] == [0, 0]
        batched, plain = (r.issue for r in results)
        assert batched is not None
        assert plain is not None
        for created in (batched, plain):
            assert await get_issue(model, created.id, caller=ALICE) == created
        assert batched.closed_at is not None
        assert batched.cc == ["carol", "zoe"]
        assert {v.field_id: list(v.values) for v in batched.custom_fields} == {
            number.id: ["42"],
            kinds.id: ["a", "b"],
        }
        assert {v.field_id: list(v.values) for v in plain.custom_fields} == {kinds.id: ["b"]}
        ((entry,), (alone_entry,)) = [await history(model, i.id) for i in (batched, alone)]
        assert entry.comment == alone_entry.comment
        assert [c for c in entry.changes if c.field != "title"] == [
            c for c in alone_entry.changes if c.field != "title"
        ]
        mentioning = term(v1.SearchField.MENTION, v1.SearchOperator.EQ, name)
        assert sorted(await search_ids(model, within(comp.id, mentioning))) == [
            batched.id,
            alone.id,
        ]
        by_description = term(v1.SearchField.MENTION, v1.SearchOperator.EQ, other)
        assert sorted(await search_ids(model, within(comp.id, by_description))) == [
            batched.id,
            alone.id,
        ]
        valued = custom_term(number, v1.SearchOperator.EQ, "42")
        assert sorted(await search_ids(model, within(comp.id, valued))) == [batched.id, alone.id]
        defaulted = custom_term(kinds, v1.SearchOperator.EQ, "b")
        assert sorted(await search_ids(model, within(comp.id, defaulted))) == sorted(
            [batched.id, plain.id, alone.id]
        )

    async def test_one_item_failing_leaves_the_others_created(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        guarded = await make_component(
            model,
            acl=[user_entry("bob", v1.Role.EDITOR), user_entry("alice", v1.Role.VIEWER)],
        )
        archived = await make_component(model)
        await update_component(model, v1.Component(id=archived.id, archived=True), "archived")
        results = await _batch(
            model,
            [
                _item(comp.id, "kept"),
                _item(comp.id, "   "),  # invalid: a blank title
                _item(UNKNOWN_ID),  # no such component
                _item(guarded.id),  # alice only views it
                _item(archived.id),  # takes no new issues
                _item(comp.id, "kept too"),
            ],
        )
        codes = [Status(r.code) for r in results]
        assert codes == [
            Status.OK,
            Status.INVALID_ARGUMENT,
            Status.NOT_FOUND,
            Status.PERMISSION_DENIED,
            Status.FAILED_PRECONDITION,
            Status.OK,
        ]
        assert "fields.title" in results[1].message
        assert str(UNKNOWN_ID) in results[2].message
        assert results[2].reason == "NOT_FOUND"
        assert results[3].reason == "PERMISSION_DENIED"
        assert all(r.issue is None for r in results[1:5])
        page = await search_page(model, within(comp.id))
        assert sorted(i.title for i in page.issues) == ["kept", "kept too"]
        for component_id in (guarded.id, archived.id):
            assert (await search_page(model, within(component_id))).total_count == 0

    async def test_each_item_errs_as_its_own_create_would(self, model: v1.ModelStub) -> None:
        guarded = await make_component(
            model,
            acl=[user_entry("bob", v1.Role.EDITOR), user_entry("alice", v1.Role.VIEWER)],
        )
        alone = await expect_error(make_issue(model, guarded.id), Status.PERMISSION_DENIED)
        (result,) = await _batch(model, [_item(guarded.id)])
        assert (Status(result.code), result.message) == (alone.status, alone.message)

    async def test_idempotency_keys_apply_per_item(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        key, other = unique("key"), unique("key")
        earlier = await make_issue(model, comp.id, idempotency_key=key, title="earlier")
        results = await _batch(
            model,
            [
                _item(comp.id, "again", idempotency_key=key),  # the earlier create's
                _item(comp.id, "new", idempotency_key=other),
                _item(comp.id, "new, repeated", idempotency_key=other),  # the item above's
            ],
        )
        assert [r.code for r in results] == [0, 0, 0]
        ids = [r.issue.id for r in results if r.issue is not None]
        assert ids[0] == earlier.id
        assert ids[1] == ids[2] != earlier.id
        assert results[0].issue is not None
        assert results[0].issue.title == "earlier"
        assert results[2].issue is not None
        assert results[2].issue.title == "new"
        # Keys are the caller's: bob's item with alice's key makes bob's issue.
        (bobs,) = await _batch(model, [_item(comp.id, "bob's", idempotency_key=key)], caller=BOB)
        assert bobs.issue is not None
        assert bobs.issue.id != earlier.id

    async def test_the_request_caller_creates_every_item(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        item = _item(comp.id)
        item.caller = ADMIN  # ignored: the request's caller creates it
        (result,) = await _batch(model, [item], caller=BOB)
        assert result.issue is not None
        assert result.issue.reporter == "bob"

    async def test_items_and_caller_are_required_and_bounded(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        await expect_error(
            model.batch_create_issues(v1.BatchCreateIssuesRequest(caller=ALICE)),
            Status.INVALID_ARGUMENT,
            "items",
        )
        await expect_error(
            model.batch_create_issues(v1.BatchCreateIssuesRequest(items=[_item(comp.id)])),
            Status.INVALID_ARGUMENT,
            "caller",
        )
        too_many = [_item(comp.id) for _ in range(limits.MAX_BATCH_CREATE + 1)]
        await expect_error(
            model.batch_create_issues(v1.BatchCreateIssuesRequest(caller=ALICE, items=too_many)),
            Status.INVALID_ARGUMENT,
            str(limits.MAX_BATCH_CREATE),
        )
        page = await search_page(model, within(comp.id))
        assert page.total_count == 0
