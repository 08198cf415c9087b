"""Kept search plans: what a page compiles anew, for every caller, query and position.

A backend keeps each search's compiled form and statements
(:mod:`bugless_model_postgres._search_plans`); a page resuming from another
position binds it in place of the one the search was compiled with. These
tests hold that to compiling anew: the compiled search itself, and real
pages of a real PostgreSQL walked with plans kept and with none.
"""

from __future__ import annotations

import datetime
from typing import ClassVar

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given
from hypothesis import strategies as st
from write_support import open_and_restricted

from bugless_core.grpc import CorkedChannel, GrpcServerSettings
from bugless_core.model.backend import ModelSettings
from bugless_core.model.runner import close_model, start_model
from bugless_core.page_tokens import PageTokenCodec
from bugless_core.plugins import load_plugins
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._convert import principals_of
from bugless_model_postgres._custom_search import CustomCatalog, catalog_key
from bugless_model_postgres._paging import caller_key
from bugless_model_postgres._search import compile_search, resumed
from bugless_model_postgres._search_plans import STATEMENTS_PER_PLAN, SearchPlans
from bugless_proto import v1, wire, wire_unread
from bugless_proto.google.protobuf import FieldMask

F = v1.SearchField
Op = v1.SearchOperator
S = v1.SortField
ADMIN = v1.Caller(user_id="root", admin=True)
CALLER = v1.Caller(user_id="viewer", groups=["b-team", "a-team"])

_FIELD = v1.CustomField(id=7, name="Found In", type=v1.CustomFieldType.INTEGER, version=3)
_CATALOG = CustomCatalog(by_id={7: _FIELD}, by_name={"found in": [_FIELD]})

_WHEN = st.datetimes(
    min_value=datetime.datetime(1990, 1, 1),
    max_value=datetime.datetime(2090, 1, 1),
    timezones=st.just(datetime.UTC),
).map(datetime.datetime.isoformat)
_ID = st.integers(min_value=1, max_value=2**62)
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))

#: Queries, each with a strategy of positions fitting its sort.
_SEARCHES = [
    (v1.StructuredQuery(), st.tuples(_ID)),
    (
        v1.StructuredQuery(
            filter=all_of(term(F.STATUS_CLASS, Op.EQ, "open"), term(F.TEXT, Op.EQ, "disk")),
            order_by=[v1.SortKey(field=S.MODIFIED, descending=True)],
        ),
        st.tuples(_WHEN, _ID),
    ),
    (
        v1.StructuredQuery(
            filter=any_of(term(F.ASSIGNEE, Op.EQ, "viewer"), negate(term(F.PRIORITY, Op.LE, 1))),
            order_by=[
                v1.SortKey(field=S.TITLE),
                v1.SortKey(field=S.CREATED, descending=True),
                v1.SortKey(field=S.PRIORITY),
            ],
        ),
        st.tuples(_TEXT, _WHEN, st.integers(0, 4), _ID),
    ),
    (
        v1.StructuredQuery(
            filter=v1.SearchNode(
                term=v1.SearchTerm(
                    field=F.CUSTOM,
                    op=Op.GE,
                    custom_field_id=7,
                    values=[v1.SearchValue(text="4")],
                )
            ),
            order_by=[v1.SortKey(field=S.CUSTOM, custom_field_id=7, descending=True)],
        ),
        st.tuples(st.booleans(), st.integers(-(2**62), 2**62), _ID),
    ),
]


@pytest.mark.parametrize(("query", "positions"), _SEARCHES)
@given(data=st.data())
def test_a_resumed_search_is_the_search_compiled_at_its_position(
    query: v1.StructuredQuery, positions: st.SearchStrategy[tuple[object, ...]], data: st.DataObject
) -> None:
    first, other = list(data.draw(positions)), list(data.draw(positions))
    for caller in (ADMIN, CALLER):
        principals = principals_of(caller)
        kept = compile_search(query, caller, principals, first, _CATALOG)
        assert resumed(kept, other) == compile_search(query, caller, principals, other, _CATALOG)


def test_a_position_that_does_not_fit_raises_as_compiling_does() -> None:
    query, _ = _SEARCHES[1]
    kept = compile_search(query, ADMIN, principals_of(ADMIN), ["2026-01-01T00:00:00+00:00", 1])
    for position in (["not a time", 1], [5, 1], ["2026-01-01T00:00:00+00:00"]):
        with pytest.raises((ValueError, TypeError)) as resumed_error:
            resumed(kept, position)
        with pytest.raises((ValueError, TypeError)) as compiled_error:
            compile_search(query, ADMIN, principals_of(ADMIN), position)
        assert type(resumed_error.value) is type(compiled_error.value)


def test_a_first_page_is_not_resumed() -> None:
    kept = compile_search(v1.StructuredQuery(), ADMIN, principals_of(ADMIN), None)
    with pytest.raises(ValueError, match="no position"):
        resumed(kept, [1])


def test_the_fingerprint_is_the_page_tokens_own() -> None:
    """Kept or not, a request's fingerprint is the same text: tokens stay valid."""
    plans = SearchPlans()
    for query, _ in _SEARCHES:
        encoded = wire.encode(query)
        for caller in (ADMIN, CALLER, v1.Caller(user_id="viewer", groups=["a-team", "b-team"])):
            expected = PageTokenCodec.fingerprint("search", encoded.hex(), caller_key(caller))
            assert plans.fingerprint(encoded, caller) == expected
            assert plans.fingerprint(encoded, caller) == expected


def test_a_kept_catalog_key_is_the_querys_own() -> None:
    plans = SearchPlans(entries=2)
    for query, _ in [*_SEARCHES, *_SEARCHES]:
        encoded = wire.encode(query)
        assert plans.catalog_key(encoded, query) == catalog_key(query)
    assert catalog_key(_SEARCHES[3][0]) == ((7,), ())
    assert len(plans._catalog_keys) == 2


def test_plans_are_kept_per_caller_and_catalog_up_to_their_number() -> None:
    plans = SearchPlans(entries=3)
    query, _ = _SEARCHES[3]
    encoded = wire.encode(query)
    admin = plans.plan(encoded, query, ADMIN, None, _CATALOG)
    assert plans.plan(encoded, query, ADMIN, None, _CATALOG) is admin
    other = plans.plan(encoded, query, CALLER, None, _CATALOG)
    assert other is not admin
    assert other.compiled.page_params != admin.compiled.page_params
    renamed = v1.CustomField(id=7, name="Seen In", type=v1.CustomFieldType.INTEGER, version=4)
    changed = CustomCatalog(by_id={7: renamed}, by_name={"seen in": [renamed]})
    assert plans.plan(encoded, query, ADMIN, None, changed) is not admin
    plans.plan(encoded, query, ADMIN, [True, 3, 9], _CATALOG)
    # Three entries kept: the first one went for the fourth.
    assert plans.plan(encoded, query, ADMIN, None, _CATALOG) is not admin


@pytest.fixture(scope="module")
async def world(bugless_model_backend: PostgresBackend) -> str:
    """Issues in an open and a restricted component, some with a custom value."""
    b = bugless_model_backend
    tag, open_one, secret = await open_and_restricted(b, "p", v1.Principal(group="a-team"))
    field = await b.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=open_one.id,
            name=f"Level {tag}",
            type=v1.CustomFieldType.INTEGER,
        )
    )
    for n in range(14):
        component = secret if n % 4 == 3 else open_one
        await b.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(
                    title=f"plan {tag} {n % 5}",
                    component_id=component.id,
                    priority=v1.Priority(n % 5),
                    assignee="viewer" if n % 2 else "",
                ),
                custom_fields=[v1.CustomFieldValue(field_id=field.id, values=[str(n % 3)])]
                if component is open_one and n % 2
                else [],
            )
        )
    return tag


def _request(query: v1.StructuredQuery, caller: v1.Caller) -> v1.SearchIssuesRequest:
    return v1.SearchIssuesRequest(
        caller=caller, query=query, page=v1.PageRequest(page_size=3), summary=True
    )


async def _walk(
    b: PostgresBackend, request: v1.SearchIssuesRequest, *, kept: bool
) -> list[v1.SearchIssuesResponse]:
    """Every page of ``request``; ``kept=False`` compiles each page anew (plans left as found)."""
    plans = b._plans
    pages = []
    while True:
        if not kept:
            b._plans = None
        reply = await b.search_issues(request)
        pages.append(reply)
        if not reply.next_page_token:
            if not kept:
                b._plans = plans
            return pages
        request.page = v1.PageRequest(page_size=3, page_token=reply.next_page_token)


async def test_pages_with_kept_plans_are_the_pages_compiled_anew(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    """Plans kept across queries and callers (the second round finds them all kept)."""
    b = bugless_model_backend
    text = term(F.TEXT, Op.EQ, world)
    queries = [
        v1.StructuredQuery(filter=text),
        v1.StructuredQuery(
            filter=all_of(text, term(F.ASSIGNEE, Op.EQ, "viewer")),
            order_by=[v1.SortKey(field=S.TITLE), v1.SortKey(field=S.PRIORITY, descending=True)],
        ),
        v1.StructuredQuery(
            filter=all_of(
                text,
                v1.SearchNode(
                    term=v1.SearchTerm(
                        field=F.CUSTOM,
                        op=Op.GE,
                        custom_field_name=f"level {world}",
                        values=[v1.SearchValue(text="1")],
                    )
                ),
            ),
            order_by=[v1.SortKey(field=S.MODIFIED, descending=True)],
        ),
    ]
    callers = [ADMIN, CALLER, v1.Caller(user_id="viewer"), v1.Caller(user_id="stranger")]
    b._plans = None
    ids: dict[tuple[int, str, int], list[int]] = {}
    kept_after: list[int] = []
    for _ in range(2):
        for number, query in enumerate(queries):
            for caller in callers:
                anew = await _walk(b, _request(query, caller), kept=False)
                kept = await _walk(b, _request(query, caller), kept=True)
                assert [wire.encode(r) for r in kept] == [wire.encode(r) for r in anew]
                found = [i.id for r in anew for i in r.issues]
                assert found
                ids[number, caller.user_id, len(caller.groups) + caller.admin] = found
        kept_after.append(len(b._search_plans()._plans))
    assert kept_after[0] == kept_after[1]  # the second round compiled nothing
    # The restricted component's issues are the admin's and a-team's only.
    assert ids[0, "root", 1] == ids[0, "viewer", 2]
    assert ids[0, "viewer", 0] == ids[0, "stranger", 0]
    assert set(ids[0, "stranger", 0]) < set(ids[0, "root", 1])


async def test_a_plan_keeps_a_bounded_number_of_statements(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    """Each read mask is a statement of its own; past the bound they are written, not kept."""
    b = bugless_model_backend
    b._plans = None
    query = v1.StructuredQuery(filter=term(F.TEXT, Op.EQ, world))
    masks = [["title"], ["status"], ["priority"], ["assignee"], ["reporter"], ["verifier"]]
    masks += [["version"], ["cc"], ["created_at"], ["modified_at"]]
    assert len(masks) > STATEMENTS_PER_PLAN
    for mask in masks:
        request = _request(query, ADMIN)
        request.read_mask = FieldMask(paths=mask)
        anew = await _walk(b, request, kept=False)
        request.page = v1.PageRequest(page_size=3)
        kept = await _walk(b, request, kept=True)
        assert [wire.encode(r) for r in kept] == [wire.encode(r) for r in anew]
    plans = list(b._search_plans()._plans.values())
    assert plans
    assert all(len(plan.statements) <= STATEMENTS_PER_PLAN for plan in plans)
    assert any(len(plan.statements) == STATEMENTS_PER_PLAN for plan in plans)


async def test_an_empty_caller_and_an_empty_mask_read_as_none(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    b = bugless_model_backend
    query = v1.StructuredQuery(filter=term(F.TEXT, Op.EQ, world))

    def variants() -> list[v1.SearchIssuesRequest]:
        empty_mask = _request(query, v1.Caller())
        empty_mask.read_mask = FieldMask(paths=[])
        no_caller = _request(query, v1.Caller())
        no_caller.caller = None
        return [empty_mask, no_caller]

    expected = [wire.encode(r) for r in await _walk(b, _request(query, v1.Caller()), kept=True)]
    for request in variants():
        assert [wire.encode(r) for r in await _walk(b, request, kept=True)] == expected
    for request in variants():
        assert bytes(await b.search_issues_reply(request)) == expected[0]


async def test_an_empty_query_reads_as_none(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    b = bugless_model_backend
    empty = _request(v1.StructuredQuery(), CALLER)
    none = _request(v1.StructuredQuery(), CALLER)
    none.query = None
    first = await b.search_issues(empty)
    assert first.issues
    assert await b.search_issues(none) == first
    assert bytes(await b.search_issues_reply(none)) == bytes(await b.search_issues_reply(empty))
    later = v1.PageRequest(page_size=3, page_token=first.next_page_token)
    empty.page, none.page = later, later
    assert await b.search_issues(none) == await b.search_issues(empty)


class _Receiving(PostgresBackend):
    """The backend, noting whether each page left its request's query unread."""

    #: Whether the page left the request's query unread (its check and plan were kept).
    unread: ClassVar[list[bool]] = []

    async def search_issues_reply(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        reply = await super().search_issues_reply(request)
        self.unread.append(wire_unread.unread_bytes(request.query) is not None)
        return reply


async def test_served_pages_read_a_query_once_and_are_the_pages_in_process(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings, world: str
) -> None:
    """Through gRPC a query seen before is never decoded; pages and tokens alike."""
    text = term(F.TEXT, Op.EQ, world)
    queries = [
        v1.StructuredQuery(filter=text),
        v1.StructuredQuery(
            filter=all_of(text, negate(term(F.PRIORITY, Op.LE, 1))),
            order_by=[v1.SortKey(field=S.TITLE), v1.SortKey(field=S.PRIORITY, descending=True)],
        ),
    ]
    _Receiving.unread.clear()
    backend, runner = await start_model(
        load_plugins(entry_points=False),
        _Receiving,
        model_settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
    )
    channel = CorkedChannel("127.0.0.1", runner.port)
    try:
        model = v1.ModelStub(channel)
        for query in queries:
            for caller in (ADMIN, CALLER, v1.Caller(user_id="stranger")):
                local = await _walk(bugless_model_backend, _request(query, caller), kept=False)
                for walk in range(2):
                    _Receiving.unread.clear()
                    request = _request(query, caller)
                    served = []
                    while True:
                        reply = await model.search_issues(request)
                        served.append(reply)
                        if not reply.next_page_token:
                            break
                        request.page = v1.PageRequest(page_size=3, page_token=reply.next_page_token)
                    assert len(served) > 1 or caller.user_id == "stranger"
                    assert [wire.encode(r) for r in served] == [wire.encode(r) for r in local]
                    # The second walk finds every check and plan kept: no page reads its query.
                    assert all(_Receiving.unread) == (walk == 1)
        # A refused query is checked, and refused, every time.
        bad = _request(v1.StructuredQuery(order_by=[v1.SortKey(field=S.CUSTOM)]), ADMIN)
        for _ in range(2):
            with pytest.raises(GRPCError) as refused:
                await model.search_issues(bad)
            assert refused.value.status is Status.INVALID_ARGUMENT
            assert "a CUSTOM sort key names its field" in (refused.value.message or "")
    finally:
        channel.close()
        await runner.close()
        await close_model(backend)
