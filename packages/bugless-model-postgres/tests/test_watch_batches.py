"""A Watch stream reads per batch of feed rows and still answers as per change.

A resumed watch used to read each change's issue, query match and entry by
itself (three or four statements a change); it now reads them for a batch
of rows at once (``_watch._events``). These tests hold the batch path to
what the change-at-a-time path gave: each caller's visibility, the query,
the feed's order (also within a position, as a blocking link writes an
entry on each of its two issues) and the position on each event, with the
batch cut between the two entries of one change, and they count the
statements a replay sends. A query naming a custom field is judged with the
field's definitions (it used to fail the stream), one naming no such
field is refused before the marker, and one whose field is deleted or
renamed while it is open ends with FAILED_PRECONDITION naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator

import pytest
from write_support import ADMIN, Sent, component_with_field, fresh_component, valued_issue

from bugless_core.deltas import issue_delta
from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import all_of, term
from bugless_model_postgres import PostgresBackend, _watch
from bugless_model_postgres._watch_query import _ENTRIES_FROM
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

STRANGER = v1.Caller(user_id="stranger")
INSIDER = v1.Caller(user_id="insider")
#: (position, issue id, version) of each event, or of each FeedEntry.
Seen = list[tuple[int, int, int]]


async def _issue(backend: PostgresBackend, component_id: int, title: str) -> v1.Issue:
    return await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title=title, component_id=component_id)
        )
    )


async def _change(
    backend: PostgresBackend, issue_id: int, comment: str = "", delta: v1.IssueDelta | None = None
) -> None:
    current = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue_id))
    await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=issue_id,
            expected_version=current.version,
            comment=comment,
            delta=delta,
        )
    )


async def _head(backend: PostgresBackend) -> int:
    answer = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    return answer.head_position


async def _replay(backend: PostgresBackend, request: v1.WatchRequest, count: int) -> Seen:
    """The first ``count`` events after the marker; then none within 0.5 s."""
    stream = backend.watch(request)
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    try:
        assert (await asyncio.wait_for(anext(stream), 10)).subscribed
        seen: Seen = []
        for _ in range(count):
            event = await asyncio.wait_for(anext(stream), 10)
            assert event.issue is not None
            assert event.entry is not None
            assert event.entry.issue_id == event.issue.id
            seen.append((event.position, event.issue.id, event.entry.version))
        later = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        assert not later.done(), f"an event beyond the changes made: {later.result()}"
        later.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await later
    finally:
        await stream.aclose()
    return seen


async def _feed(backend: PostgresBackend, caller: v1.Caller, after: int, ids: set[int]) -> Seen:
    """What ReadFeed (its own visibility check) lists for ``caller`` among ``ids``."""
    answer = await backend.read_feed(
        v1.ReadFeedRequest(caller=caller, after_position=after, max_changes=1000)
    )
    return [
        (change.position, entry.issue_id, entry.version)
        for change in answer.changes
        for entry in change.entries
        if entry.issue_id in ids
    ]


@pytest.mark.parametrize(("rows", "entries"), [(200, 500), (3, 2), (1, 1)])
async def test_a_resumed_query_watch_keeps_visibility_and_order_across_batches(
    bugless_model_backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch, rows: int, entries: int
) -> None:
    """Several issues, two of them hidden from the stranger, and blocking links
    (two entries at one position, one of them on a hidden issue), replayed to
    three callers: each gets what ReadFeed lists for them, among the query's
    issues, in feed order, with the feed's positions, whatever the batch sizes
    (``(3, 2)`` cuts a blocking change's two entries apart)."""
    monkeypatch.setattr(_watch, "_WATCH_BATCH", rows)
    monkeypatch.setattr(_watch, "_EVENT_BATCH", entries)
    backend = bugless_model_backend
    shown = (await fresh_component(backend, "batches")).id
    insiders = [v1.AclEntry(principal=v1.Principal(user="insider"), role=v1.Role.EDITOR)]
    hidden = (await fresh_component(backend, "batches", acl=insiders)).id
    a, b, c = [(await _issue(backend, shown, f"shown {n}")).id for n in range(3)]
    h, k = [(await _issue(backend, hidden, f"hidden {n}")).id for n in range(2)]
    outside = (await _issue(backend, shown, "not in the query")).id
    start = await _head(backend)
    await _change(backend, a, "one")
    await _change(backend, h, "hidden one")
    await _change(backend, a, delta=v1.IssueDelta(blocking_add=[b]))  # a and b at one position
    await _change(backend, outside, "outside")
    await _change(backend, c, delta=v1.IssueDelta(blocked_by_add=[h]))  # c and h at one
    await _change(backend, b, "two")
    await _change(backend, k, delta=v1.IssueDelta(blocking_add=[a]))  # k and a at one
    await _change(backend, outside, delta=v1.IssueDelta(blocking_add=[c]))  # only c matches
    await _change(backend, c, "three")
    watched = {a, b, c, h, k}
    query = v1.StructuredQuery(filter=term(v1.SearchField.ID, v1.SearchOperator.EQ, *watched))

    expected: dict[str, Seen] = {}
    for name, caller in (("admin", ADMIN), ("insider", INSIDER), ("stranger", STRANGER)):
        expected[name] = await _feed(backend, caller, start, watched)
        request = v1.WatchRequest(caller=caller, query=query, after_position=start)
        assert await _replay(backend, request, len(expected[name])) == expected[name], name

    # What those lists hold, so the comparison above compares something.
    assert len(expected["admin"]) == 11
    assert expected["insider"] == expected["admin"]
    assert [i for _, i, _ in expected["stranger"]] == [a, a, b, c, b, a, c, c]
    positions = [p for p, _, _ in expected["admin"]]
    assert positions == sorted(positions)
    pairs = [p for p in set(positions) if positions.count(p) == 2]
    assert len(pairs) == 3  # the blocking links: two entries each


#: The states' history statement as ``Sent`` records it (spaces collapsed).
_STATES_HISTORY = " ".join(_ENTRIES_FROM.split())


async def test_a_replay_reads_per_batch_not_per_change(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Sixteen changes replayed to a query watch: a handful of statements, where
    the change-at-a-time path sent four a change (the issue, the query's match,
    the entry, its attachments). Each issue changed again after most of them,
    so whether they made it leave the query is judged too: three statements
    for the batch (its history from the oldest change on, the rows, the query
    over both states of each change), not three a change."""
    backend = bugless_model_backend
    component = (await fresh_component(backend, "batches")).id
    issues = [(await _issue(backend, component, f"replayed {n}")).id for n in range(4)]
    start = await _head(backend)
    for n in range(16):
        await _change(backend, issues[n % 4], f"change {n}")
    query = v1.StructuredQuery(filter=term(v1.SearchField.ID, v1.SearchOperator.EQ, *issues))
    request = v1.WatchRequest(caller=STRANGER, query=query, after_position=start)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        seen = await _replay(backend, request, 16)
    assert [i for _, i, _ in seen] == issues * 4
    assert sent.starting("SELECT * FROM issue_history") == 0  # no entry read by itself
    entry_reads = [s for s in sent.statements if "JOIN issue_history h" in s]
    assert len(entry_reads) == 1, sent.statements  # the events'
    assert sent.statements.count(_STATES_HISTORY) == 1, sent.statements  # the states' history
    # Comments set no column of the row: no state is judged.
    assert not [s for s in sent.statements if "jsonb_populate_record" in s]
    # The feed's state, its rows (and the empty look after them), the issues,
    # the query's matches, the states' history, the entries and their
    # attachments, plus a few more empty looks within the 0.5 s of waiting.
    assert len(sent.statements) <= 13, sent.statements


async def test_a_replay_judges_the_states_of_a_batch_in_one_statement(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Sixteen priority changes replayed: whether each made its issue leave the
    query is three statements for the batch (the history from its oldest change
    on, the rows, the query over both states of each change), not three a change."""
    backend = bugless_model_backend
    component = (await fresh_component(backend, "batches")).id
    issues = [(await _issue(backend, component, f"reprioritised {n}")).id for n in range(4)]
    start = await _head(backend)
    levels = [v1.Priority.P0, v1.Priority.P1, v1.Priority.P3, v1.Priority.P2]
    for n in range(16):
        raised = v1.IssueDelta(
            fields=v1.IssueFields(priority=levels[n // 4]),
            update_mask=FieldMask(paths=["priority"]),
        )
        await _change(backend, issues[n % 4], delta=raised)
    # Every priority: the query reads the field the changes set (one that does
    # not read it has nothing to judge: they cannot make it leave).
    any_priority = term(v1.SearchField.PRIORITY, v1.SearchOperator.EQ, 0, 1, 2, 3, 4)
    query = v1.StructuredQuery(
        filter=all_of(term(v1.SearchField.ID, v1.SearchOperator.EQ, *issues), any_priority)
    )
    request = v1.WatchRequest(caller=STRANGER, query=query, after_position=start)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        seen = await _replay(backend, request, 16)
    assert [i for _, i, _ in seen] == issues * 4
    assert len([s for s in sent.statements if "JOIN issue_history h" in s]) == 1  # the events'
    assert sent.statements.count(_STATES_HISTORY) == 1  # the states' history
    assert len([s for s in sent.statements if "jsonb_populate_record" in s]) == 1
    assert len(sent.statements) <= 15, sent.statements


async def test_custom_value_changes_are_judged_only_for_a_query_with_a_custom_term(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Sixteen changes of a custom value replayed: their states are rebuilt
    (the values from the history) and judged in one statement for a query with
    a custom term (``has:<field>``), in none for one without (``id:``), whose
    matching they cannot change."""
    backend = bugless_model_backend
    component, field = await component_with_field(backend, "revalued")
    issues = [(await _issue(backend, component.id, f"revalued {n}")).id for n in range(4)]
    start = await _head(backend)
    for n in range(16):
        valued = v1.IssueDelta(
            custom_fields_set=[v1.CustomFieldValue(field_id=field.id, values=[f"v{n}"])]
        )
        await _change(backend, issues[n % 4], delta=valued)
    has = v1.SearchTerm(
        field=v1.SearchField.CUSTOM, op=v1.SearchOperator.ANY, custom_field_id=field.id
    )
    for node, judged in (
        (term(v1.SearchField.ID, v1.SearchOperator.EQ, *issues), 0),
        (v1.SearchNode(term=has), 1),
    ):
        query = v1.StructuredQuery(filter=node)
        request = v1.WatchRequest(caller=ADMIN, query=query, after_position=start)
        async with Sent(backend, model_settings.pool_max_size) as sent:
            seen = await _replay(backend, request, 16)
        assert [i for _, i, _ in seen] == issues * 4
        states = [s for s in sent.statements if "jsonb_populate_record" in s]
        assert len(states) == judged, sent.statements


async def test_the_states_carry_custom_values_only_for_a_query_with_a_custom_term(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Priority changes of issues holding custom values, replayed to ``p:P2`` and to
    ``p:P2 has:<field>`` (each change a leave): the states statement of the first
    carries no custom rows (nothing reads them; making them was most of a
    state's cost, and most of the statement's bytes), that of the second
    carries each state's."""
    backend = bugless_model_backend
    component, field = await component_with_field(backend, "unvalued")
    valued = [v1.CustomFieldValue(field_id=field.id, values=["1.2"])]
    issues = [
        await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"unvalued {n}", component_id=component.id),
                custom_fields=valued,
            )
        )
        for n in range(4)
    ]
    start = await _head(backend)
    for issue in issues:
        raised = v1.IssueDelta(
            fields=v1.IssueFields(priority=v1.Priority.P1),
            update_mask=FieldMask(paths=["priority"]),
        )
        await _change(backend, issue.id, delta=raised)
    p2 = term(v1.SearchField.PRIORITY, v1.SearchOperator.EQ, 2)  # P2, every new issue's
    within = term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component.id)
    has = v1.SearchNode(
        term=v1.SearchTerm(
            field=v1.SearchField.CUSTOM, op=v1.SearchOperator.ANY, custom_field_id=field.id
        )
    )
    for node, carried in ((all_of(within, p2), False), (all_of(within, p2, has), True)):
        query = v1.StructuredQuery(filter=node)
        request = v1.WatchRequest(caller=ADMIN, query=query, after_position=start)
        async with Sent(backend, model_settings.pool_max_size) as sent:
            seen = await _replay(backend, request, 4)
        assert [i for _, i, _ in seen] == [i.id for i in issues]
        [states] = [args for text, args in sent.arguments if "jsonb_populate_record" in text]
        payload = next(a for a in states if isinstance(a, str) and a.startswith("[{"))
        rows = [state["fields"].get("custom_rows") for state in json.loads(payload)]
        assert len(rows) == 8  # before and after each change
        if carried:
            assert all(r and r[0]["value"] == "1.2" for r in rows), rows
        else:
            assert rows == [None] * 8, rows


async def test_a_change_of_a_column_the_query_does_not_read_is_not_judged_in_the_database(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Four issues at P2 assigned, then two raised to P1, replayed to ``component:C p:P2``.

    The assignments of the two that no longer match cannot have made them
    leave: the query reads the priority and the component (the caller's
    view), not the assignee, so the states before and after are alike for
    it. Only the two raises are judged (four states, not eight), and they
    are the leaves; the assignments of the two still matching are events.
    """
    backend = bugless_model_backend
    component = (await fresh_component(backend, "unread")).id
    issues = [(await _issue(backend, component, f"unread {n}")).id for n in range(4)]
    start = await _head(backend)
    for issue in issues:
        await _change(backend, issue, delta=issue_delta(assignee="alice"))
    for issue in issues[:2]:
        await _change(backend, issue, delta=issue_delta(priority=v1.Priority.P1))
    query = v1.StructuredQuery(
        filter=all_of(
            term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component),
            term(v1.SearchField.PRIORITY, v1.SearchOperator.EQ, 2),  # P2, every new issue's
        )
    )
    request = v1.WatchRequest(caller=ADMIN, query=query, after_position=start)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        seen = await _replay(backend, request, 4)
    assert [(i, v) for _, i, v in seen] == [
        (issues[2], 2),
        (issues[3], 2),
        *[(i, 3) for i in issues[:2]],
    ]
    [states] = [args for text, args in sent.arguments if "jsonb_populate_record" in text]
    payload = next(a for a in states if isinstance(a, str) and a.startswith("[{"))
    judged = {(state["id"], state["fields"]["version"]) for state in json.loads(payload)}
    assert judged == {(i, v) for i in issues[:2] for v in (2, 3)}


async def test_a_query_watch_on_a_custom_field_replays_the_matching_issues(
    bugless_model_backend: PostgresBackend,
) -> None:
    """A query naming a custom field (``"Found In":1.2``) is judged with the
    field's definition: the issue holding the value comes, the other does not.
    Before, the watch compiled its query without the definitions, so the first
    visible change failed the stream with "there is no custom field"."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    other = await _issue(backend, issue.component_id, "no value")
    start = await _head(backend)
    await _change(backend, other.id, "not matching")
    await _change(backend, issue.id, "matching")
    for custom in (
        v1.SearchTerm(custom_field_name=field.name, values=[v1.SearchValue(text="1.2")]),
        v1.SearchTerm(custom_field_id=field.id, values=[v1.SearchValue(text="1.2")]),
    ):
        custom.field = v1.SearchField.CUSTOM
        query = v1.StructuredQuery(filter=v1.SearchNode(term=custom))
        request = v1.WatchRequest(caller=ADMIN, query=query, after_position=start)
        seen = await _replay(backend, request, 1)
        assert [(i, v) for _, i, v in seen] == [(issue.id, issue.version + 1)]


async def test_a_query_watch_on_no_such_custom_field_is_refused_before_its_marker(
    bugless_model_backend: PostgresBackend,
) -> None:
    """As a search refuses it, and before anything is sent: it used to subscribe
    and then fail at the first visible change."""
    backend = bugless_model_backend
    unknown = v1.SearchTerm(
        field=v1.SearchField.CUSTOM,
        custom_field_name="no such field",
        values=[v1.SearchValue(text="1.2")],
    )
    query = v1.StructuredQuery(filter=v1.SearchNode(term=unknown))
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, query=query))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    with pytest.raises(InvalidArgument, match="there is no custom field named 'no such field'"):
        await anext(stream)
    await stream.aclose()


def _custom_query(field: v1.CustomField, *, by_id: bool) -> v1.StructuredQuery:
    """``"<field>":1.2``, naming the field by its id or by its name."""
    custom = v1.SearchTerm(field=v1.SearchField.CUSTOM, values=[v1.SearchValue(text="1.2")])
    if by_id:
        custom.custom_field_id = field.id
    else:
        custom.custom_field_name = field.name
    return v1.StructuredQuery(filter=v1.SearchNode(term=custom))


async def _subscribed(
    backend: PostgresBackend, query: v1.StructuredQuery
) -> AsyncGenerator[v1.WatchEvent, None]:
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, query=query))
    assert isinstance(stream, AsyncGenerator)  # PostgresBackend.watch is one
    assert (await asyncio.wait_for(anext(stream), 10)).subscribed
    return stream


async def _delete_field(backend: PostgresBackend, field: v1.CustomField) -> None:
    listed = await backend.list_custom_fields(
        v1.ListCustomFieldsRequest(caller=ADMIN, component_id=field.component_id)
    )
    (current,) = [f for f in listed.custom_fields if f.id == field.id]
    await backend.delete_custom_field(
        v1.DeleteCustomFieldRequest(
            caller=ADMIN, field_id=field.id, expected_version=current.version
        )
    )


@pytest.mark.parametrize("by_id", [False, True], ids=["by name", "by id"])
async def test_a_query_watch_whose_field_is_deleted_ends_saying_so(
    bugless_model_backend: PostgresBackend, by_id: bool
) -> None:
    """The field a query watch names is deleted while it is open: at the next
    change it judges, the stream ends with FAILED_PRECONDITION (reason
    WATCHED_FIELD_CHANGED) naming the field as the watch knew it. Before, it
    ended with the INVALID_ARGUMENT a new query naming no such field gets
    ("there is no custom field named ..."), which the command line reports as
    a mistake in the query the person typed."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    stream = await _subscribed(backend, _custom_query(field, by_id=by_id))
    try:
        await _change(backend, issue.id, "seen before the deletion")
        before = await asyncio.wait_for(anext(stream), 10)
        assert before.entry is not None
        assert before.entry.comment == "seen before the deletion"
        await _delete_field(backend, field)
        await _change(backend, issue.id, "after the deletion")
        with pytest.raises(FailedPrecondition) as raised:
            await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    error = raised.value
    assert error.reason == "WATCHED_FIELD_CHANGED"
    assert repr(field.name) in error.message
    assert "deleted or renamed while the watch was open" in error.message
    assert (f"custom field {field.id}" in error.message) is by_id
    assert error.metadata["field"] == "query.filter"


async def test_a_query_watch_goes_on_while_another_field_bears_the_name(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Two components each define a field of one name; the watch names it. One
    is deleted: the query still means something (the other's values), so the
    watch goes on and delivers the other component's matching change."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    other_component, twin = await component_with_field(backend, "twins")
    twin = await backend.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=twin.id, name=field.name),
            update_mask=FieldMask(paths=["name"]),
        )
    )
    other = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title="the twin's", component_id=other_component.id),
            custom_fields=[v1.CustomFieldValue(field_id=twin.id, values=["1.2"])],
        )
    )
    stream = await _subscribed(backend, _custom_query(field, by_id=False))
    try:
        await _delete_field(backend, field)
        await _change(backend, issue.id, "no longer matching")
        await _change(backend, other.id, "matching by the twin")
        event = await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    assert event.issue is not None
    assert event.entry is not None
    assert (event.issue.id, event.entry.comment) == (other.id, "matching by the twin")


async def test_a_query_watch_goes_on_when_only_its_sort_keys_field_is_deleted(
    bugless_model_backend: PostgresBackend,
) -> None:
    """A watch sends changes, not an order: a custom field only the query's sort
    key names is deleted, and the watch goes on delivering its issue's changes."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    query = v1.StructuredQuery(
        filter=term(v1.SearchField.ID, v1.SearchOperator.EQ, issue.id),
        order_by=[v1.SortKey(field=v1.SortField.CUSTOM, custom_field_id=field.id)],
    )
    stream = await _subscribed(backend, query)
    try:
        await _delete_field(backend, field)
        await _change(backend, issue.id, "still watched")
        event = await asyncio.wait_for(anext(stream), 10)
    finally:
        await stream.aclose()
    assert event.entry is not None
    assert event.entry.comment == "still watched"
