"""The search compiler: parameterised SQL, every construct, keyset pages."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.errors import InvalidArgument
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._search import compile_search
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

F = v1.SearchField
Op = v1.SearchOperator
ADMIN = v1.Caller(user_id="root", admin=True)
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=4
).map(lambda s: f"zq{s}")


@given(text=_TEXT, user=_TEXT, number=st.integers(min_value=10**6, max_value=2**62))
def test_values_never_appear_in_the_sql(text: str, user: str, number: int) -> None:
    query = v1.StructuredQuery(
        filter=all_of(
            term(F.TEXT, Op.EQ, text),
            term(F.TITLE, Op.EQ, text, phrase=True),
            term(F.ASSIGNEE, Op.EQ, user),
            term(F.CC, Op.EQ, user),
            term(F.ID, Op.GT, number),
            term(F.COMPONENT, Op.EQ, number, include_subtree=True),
            negate(term(F.HOTLIST, Op.EQ, number)),
            term(F.CREATED, Op.LT, T0),
        ),
        order_by=[v1.SortKey(field=v1.SortField.TITLE)],
    )
    compiled = compile_search(query, v1.Caller(user_id=user), [f"user:{user}"], [text, number])
    for sql in (compiled.page_sql, compiled.count_sql):
        assert text not in sql
        assert user not in sql
        assert str(number) not in sql
    assert text in compiled.page_params
    assert user in compiled.count_params
    assert number in compiled.page_params


@pytest.fixture(scope="module")
async def world(bugless_model_backend: PostgresBackend) -> dict[str, int]:
    """A small tree with issues covering every searchable field."""
    backend = bugless_model_backend
    tag = uuid.uuid4().hex[:8]

    async def component(parent: int, name: str) -> int:
        made = await backend.create_component(
            v1.CreateComponentRequest(caller=ADMIN, parent_id=parent, name=f"{name}-{tag}")
        )
        return made.id

    root = await component(0, "search")
    child = await component(root, "child")
    hotlist = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name="hl"))

    async def issue(title: str, comp: int, description: str = "", **fields: Any) -> int:
        made = await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=title, component_id=comp, **fields),
                description=description,
            )
        )
        return made.id

    ids = {
        "disk": await issue("Disk is full", root, "the volumes fill up quickly"),
        "net": await issue("Network flaps", child, "", assignee="bob", priority=v1.Priority.P0),
        "ui": await issue("Button misaligned", child, "css", status=v1.Status.FIXED),
    }
    disk = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=ids["disk"]))
    await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=disk.id,
            expected_version=disk.version,
            delta=v1.IssueDelta(
                cc_add=["carol"],
                blocking_add=[ids["net"]],
                hotlist_add=[hotlist.id],
                fields=v1.IssueFields(parent_id=ids["ui"]),
                update_mask=FieldMask(paths=["parent_id"]),
            ),
            comment="seen again on the storage nodes",
        )
    )
    return {**ids, "root": root, "child": child, "hotlist": hotlist.id}


async def search(
    backend: PostgresBackend, world: dict[str, int], node: v1.SearchNode | None, **kw: Any
) -> list[int]:
    scoped = all_of(term(F.COMPONENT, Op.EQ, world["root"], include_subtree=True))
    if node is not None:
        scoped = all_of(scoped, node)
    response = await backend.search_issues(
        v1.SearchIssuesRequest(
            caller=ADMIN,
            query=v1.StructuredQuery(filter=scoped, **kw),
            page=v1.PageRequest(page_size=50),
        )
    )
    return [i.id for i in response.issues]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (term(F.TEXT, Op.EQ, "volume"), {"disk"}),
        (term(F.TEXT, Op.EQ, "storage nodes"), {"disk"}),
        (term(F.COMMENT, Op.EQ, "disk"), set()),
        (term(F.TITLE, Op.EQ, "full disk"), {"disk"}),
        (term(F.TITLE, Op.EQ, "full disk", phrase=True), set()),
        (term(F.TITLE, Op.EQ, "disk is full", phrase=True), {"disk"}),
        (term(F.STATUS, Op.EQ, "FIXED"), {"ui"}),
        (term(F.STATUS_CLASS, Op.EQ, "open"), {"disk", "net"}),
        (term(F.ASSIGNEE, Op.EQ, "bob"), {"net"}),
        (term(F.ASSIGNEE, Op.NONE), {"disk", "ui"}),
        (term(F.CC, Op.ANY), {"disk"}),
        (term(F.PRIORITY, Op.LT, 2), {"net"}),
        (term(F.PRIORITY, Op.EQ, 2), {"disk", "ui"}),
        (term(F.TYPE, Op.EQ, "BUG"), {"disk", "net", "ui"}),
        (term(F.BLOCKING, Op.ANY), {"disk"}),
        (term(F.BLOCKED_BY, Op.ANY), {"net"}),
        (term(F.PARENT, Op.ANY), {"disk"}),
        (term(F.CANONICAL, Op.NONE), {"disk", "net", "ui"}),
        (term(F.HOTLIST, Op.ANY), {"disk"}),
        (term(F.CREATED, Op.GT, T0), {"disk", "net", "ui"}),
        (term(F.MODIFIED, Op.LT, T0), set()),
        (negate(term(F.STATUS_CLASS, Op.EQ, "open")), {"ui"}),
        (any_of(term(F.ASSIGNEE, Op.EQ, "bob"), term(F.STATUS, Op.EQ, "FIXED")), {"net", "ui"}),
        (any_of(), set()),
    ],
)
async def test_each_construct_matches_what_it_says(
    bugless_model_backend: PostgresBackend,
    world: dict[str, int],
    node: v1.SearchNode,
    expected: set[str],
) -> None:
    found = await search(bugless_model_backend, world, node)
    assert set(found) == {world[name] for name in expected}


async def test_reference_terms_use_the_given_ids(
    bugless_model_backend: PostgresBackend, world: dict[str, int]
) -> None:
    b = bugless_model_backend
    assert await search(b, world, term(F.BLOCKING, Op.EQ, world["net"])) == [world["disk"]]
    assert await search(b, world, term(F.BLOCKED_BY, Op.EQ, world["disk"])) == [world["net"]]
    assert await search(b, world, term(F.PARENT, Op.EQ, world["ui"])) == [world["disk"]]
    assert await search(b, world, term(F.HOTLIST, Op.EQ, world["hotlist"])) == [world["disk"]]
    subtree = term(F.COMPONENT, Op.EQ, world["child"], include_subtree=True)
    assert set(await search(b, world, subtree)) == {world["net"], world["ui"]}


async def test_default_order_is_newest_first_and_sorts_combine(
    bugless_model_backend: PostgresBackend, world: dict[str, int]
) -> None:
    b = bugless_model_backend
    assert await search(b, world, None) == sorted(
        [world["disk"], world["net"], world["ui"]], reverse=True
    )
    by_priority = await search(b, world, None, order_by=[v1.SortKey(field=v1.SortField.PRIORITY)])
    assert by_priority[0] == world["net"]
    by_title = await search(
        b, world, None, order_by=[v1.SortKey(field=v1.SortField.TITLE, descending=True)]
    )
    assert by_title == [world["net"], world["disk"], world["ui"]]


async def test_pages_walk_every_match_once_with_a_bound_token(
    bugless_model_backend: PostgresBackend, world: dict[str, int]
) -> None:
    b = bugless_model_backend
    query = v1.StructuredQuery(
        filter=term(F.COMPONENT, Op.EQ, world["root"], include_subtree=True),
        order_by=[v1.SortKey(field=v1.SortField.MODIFIED, descending=True)],
    )
    seen: list[int] = []
    token = ""
    while True:
        page = await b.search_issues(
            v1.SearchIssuesRequest(
                caller=ADMIN, query=query, page=v1.PageRequest(page_size=1, page_token=token)
            )
        )
        assert page.total_count == 3
        assert not page.total_is_lower_bound
        seen += [i.id for i in page.issues]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted([world["disk"], world["net"], world["ui"]])
    first = await b.search_issues(
        v1.SearchIssuesRequest(caller=ADMIN, query=query, page=v1.PageRequest(page_size=1))
    )
    with pytest.raises(InvalidArgument, match="different request"):
        await b.search_issues(
            v1.SearchIssuesRequest(
                caller=v1.Caller(user_id="someone-else"),
                query=query,
                page=v1.PageRequest(page_size=1, page_token=first.next_page_token),
            )
        )


async def test_a_page_carries_what_get_issue_returns(
    bugless_model_backend: PostgresBackend,
) -> None:
    """One statement reads a page; each issue must equal GetIssue's, as the caller sees it.

    Custom values (with the fields' names and types), the hotlists the
    caller may see (not another user's private one), the caller's star, and
    a summary page equal to the full one without description and cc.
    """
    b = bugless_model_backend
    tag = uuid.uuid4().hex[:8]
    dana = v1.Caller(user_id=f"dana-{tag}")
    comp = await b.create_component(v1.CreateComponentRequest(caller=ADMIN, name=f"page-{tag}"))
    stage = await b.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=comp.id,
            name="Stage",
            type=v1.CustomFieldType.ENUM,
            options=["alpha", "beta"],
        )
    )
    count = await b.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=comp.id, name="Count", type=v1.CustomFieldType.INTEGER
        )
    )
    made = [
        await b.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"issue {n}", component_id=comp.id),
                description=f"story {n}",
                cc=["erin"] if n else [],
                custom_fields=[
                    v1.CustomFieldValue(field_id=stage.id, values=["beta"]),
                    v1.CustomFieldValue(field_id=count.id, values=[str(n)]),
                ]
                if n % 2
                else [],
            )
        )
        for n in range(3)
    ]
    public = await b.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name=f"pub-{tag}"))
    private = await b.create_hotlist(
        v1.CreateHotlistRequest(caller=ADMIN, name=f"own-{tag}", private=True)
    )
    for hotlist in (public, private):
        await b.add_hotlist_items(
            v1.AddHotlistItemsRequest(
                caller=ADMIN, hotlist_id=hotlist.id, issue_ids=[made[0].id, made[1].id]
            )
        )
    await b.star_issue(v1.StarIssueRequest(caller=dana, issue_id=made[1].id, starred=True))
    query = v1.StructuredQuery(filter=term(F.COMPONENT, Op.EQ, comp.id))
    for caller in (dana, ADMIN):
        expected = [
            await b.get_issue(v1.GetIssueRequest(caller=caller, issue_id=i.id))
            for i in reversed(made)
        ]
        full = await b.search_issues(v1.SearchIssuesRequest(caller=caller, query=query))
        assert list(full.issues) == expected
        assert (full.total_count, full.next_page_token) == (3, "")
        summary = await b.search_issues(
            v1.SearchIssuesRequest(caller=caller, query=query, summary=True)
        )
        for listed, issue in zip(summary.issues, expected, strict=True):
            assert (listed.description, listed.cc) == ("", [])
            listed.description, listed.cc = issue.description, issue.cc
        assert list(summary.issues) == expected
        # A read mask here is exact: the fields it names and the id, every other
        # field at its default (the contract, bugless_testing's
        # SearchReadMaskContract, lets a backend send more), and the same for
        # each statement shape of a read by id.
        for paths in (
            ["title", "modified_at"],
            ["custom_fields", "hotlist_ids", "starred", "status", "version"],
            ["cc", "description", "created_at", "star_count"],
        ):
            masked = await b.search_issues(
                v1.SearchIssuesRequest(
                    caller=caller, query=query, summary=True, read_mask=FieldMask(paths=paths)
                )
            )
            only_named = [v1.Issue(id=i.id, **{p: getattr(i, p) for p in paths}) for i in expected]
            assert list(masked.issues) == only_named
            assert (masked.total_count, masked.next_page_token) == (3, "")
            # BatchGetIssues reads a mask the same way (one id, id slots, an id array).
            for extra in (0, 1, 200):
                ids = [i.id for i in expected]
                ids = ids[:1] if not extra else [*ids, *range(10**12, 10**12 + extra)]
                batch = await b.batch_get_issues(
                    v1.BatchGetIssuesRequest(
                        caller=caller, issue_ids=ids, read_mask=FieldMask(paths=paths)
                    )
                )
                assert list(batch.issues) == only_named[: len(batch.issues)]
                assert len(batch.issues) == (1 if not extra else 3)
                assert batch.missing_ids == ids[len(batch.issues) :]
    with_values = expected[1]
    assert [(v.name, v.type, v.values) for v in with_values.custom_fields] == [
        ("Stage", v1.CustomFieldType.ENUM, ["beta"]),
        ("Count", v1.CustomFieldType.INTEGER, ["1"]),
    ]
    seen_by_dana = await b.search_issues(v1.SearchIssuesRequest(caller=dana, query=query))
    assert [i.hotlist_ids for i in seen_by_dana.issues] == [[], [public.id], [public.id]]
    assert [i.starred for i in seen_by_dana.issues] == [False, True, False]
