"""Which changes made an issue stop matching a query watch (``WatchEvent.left_query``).

A change made issue ``i`` leave the query when the issue matched it as it
was just before the change (version ``v - 1``) and does not as the change
left it (version ``v``). Both states are judged by the search compiler
itself (:func:`bugless_model_postgres._search.compile_search`), reading a
derived table of the issue's rows *as they were* in place of ``issues``: the
current row with the columns the later history entries changed set back to
the values those entries record as old (``jsonb_populate_record`` over the
current row keeps every other column). One rule, one compiler: no second
matcher that could drift from what a search of the query returns, and the
caller's visibility is judged with the component the issue was in, so a
move out of the caller's view is a leave.

What the entries record is exact: the scalar fields (status, priority,
assignee, component, parent, ...), cc, the blocking relations, the
hotlists (a column ``hotlist_ids`` of the derived rows, which the compiler's
hotlist terms read instead of ``hotlist_items``), the custom field values
(``customfield<ID>`` changes: the state's ``custom_fields``, and its search
rows as a column ``custom_rows`` that the compiler's custom terms read
instead of ``issue_custom_values``; for a query with a custom term only),
and the version and time of each state; the title's search vectors are
made again from the state's title (``title:`` and bare words read it), and
the comment count
(``commenter:none``, ``has:commenter``) is the row's less the comments of
the entries after the state (an edit is no new comment; a redacted one
was one), and ``commenter:``, ``lastcommenter:`` and ``modifier:`` terms
read the history up to the state's version, as ``has:attachment`` and
``attachment:`` terms read the attachments (an attachment's row names the
entries that attached and deleted it). What else lives apart from the row
(stars, mentions, comment text) is read as it is when the event is sent,
as every event's query is (but never for an issue the caller may no longer
view: see :func:`changes_that_left`): a change that only adds, edits or
redacts a comment is no leave of a ``comment:``, bare-word or ``mention:``
term. Rebuilding those per state is not cheap (every comment up to the
state parsed again, by ``to_tsvector`` or the Python mention rule, for each
of a change's two states), and a redacted text is gone by design (the
postgres README, "Watch", says so in full). ``closed_at`` of a state is the row's
while the issue stayed closed since, else (it was reopened) the time of the
entry that closed it, read from the history's status changes for a
query with a ``closed:`` term (only those below the states, through an
index of them, migration 0030: not every entry of a long history). Since
both states come from the history, not from the moment the event is sent,
a replay judges a change the way the live stream did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from bugless_core import custom_fields as cf
from bugless_core.issue_fields import ENUM_FIELDS, OPEN_STATUSES, SCALAR_FIELDS
from bugless_model_postgres import _search
from bugless_model_postgres._convert import Conn, Row, principals_of
from bugless_model_postgres._custom_search import CustomCatalog, search_terms
from bugless_model_postgres._custom_values import load_values, search_rows
from bugless_proto import v1

#: The list fields of a state, with how their history values read
#: (``hotlist_ids``: no column of the row, its hotlist_items).
_ROW_LISTS: Mapping[str, Callable[[str], Any]] = {
    "cc": str,
    "blocking_ids": int,
    "blocked_by_ids": int,
    "hotlist_ids": int,
}
#: Scalar fields holding an issue or component id: "" in a FieldChange is 0.
_ID_FIELDS = frozenset({"component_id", "parent_id", "duplicate_of_id"})
_OPEN = frozenset(int(s) for s in OPEN_STATUSES)
#: Search fields reading what every change sets (the row's time, its version).
_VERSION_FIELDS = frozenset(
    {v1.SearchField.MODIFIED, v1.SearchField.LAST_MODIFIER, v1.SearchField.MODIFIER}
)
#: Search fields reading the comments each state had (its comment count, or
#: the history up to its version: ``compile_search``'s ``row_state``).
_COMMENT_FIELDS = frozenset({v1.SearchField.COMMENTER, v1.SearchField.LAST_COMMENTER})
F = v1.SearchField

#: Search fields reading what is kept apart from the row, as it is when the
#: event is sent: for an issue the caller may no longer view, that includes
#: what was written where they cannot see (see :func:`changes_that_left`).
_APART_FIELDS = frozenset(
    {
        v1.SearchField.TEXT,
        v1.SearchField.COMMENT,
        v1.SearchField.MENTION,
        v1.SearchField.STARRED_BY,
        v1.SearchField.STAR_COUNT,
    }
)

#: The column of a state (its FieldChange name) each search field reads,
#: beyond what :func:`changes_that_left` weighs apart (the version and time,
#: the comments, the attachments, the custom values): a change whose entry
#: sets none of the columns the query reads, nor ``component_id`` (the
#: caller's view of each state is judged by it), leaves both states alike
#: for the query. A field in neither this nor :data:`_NO_COLUMN_READ` (one
#: added later) reads every column: judged as before.
_COLUMN_READ: Mapping[v1.SearchField, str] = {
    F.TEXT: "title",
    F.TITLE: "title",
    F.STATUS: "status",
    F.STATUS_CLASS: "status",
    F.CLOSED: "status",
    F.ASSIGNEE: "assignee",
    F.CC: "cc",
    F.VERIFIER: "verifier",
    F.PRIORITY: "priority",
    F.SEVERITY: "severity",
    F.TYPE: "type",
    F.COMPONENT: "component_id",
    F.HOTLIST: "hotlist_ids",
    F.BLOCKING: "blocking_ids",
    F.BLOCKED_BY: "blocked_by_ids",
    F.PARENT: "parent_id",
    F.CANONICAL: "duplicate_of_id",
}
#: Fields reading no column a change sets back: what lives apart from the
#: row (comment words, mentions, stars), what no change sets (id, creation,
#: reporter, external id), and what is weighed apart (comments, custom
#: values, attachments).
_NO_COLUMN_READ = frozenset(
    {F.COMMENT, F.MENTION, F.STARRED_BY, F.STAR_COUNT, F.ID, F.CREATED, F.REPORTER}
    | {F.EXTERNAL_ID, F.COMMENTER, F.LAST_COMMENTER, F.CUSTOM, F.ATTACHMENT}
)
#: Every column :func:`state_fields` sets back (for a field neither knows).
_ALL_COLUMNS = frozenset(SCALAR_FIELDS) | frozenset(_ROW_LISTS)

#: Every history entry of each issue $1 from version $2 on, newest first,
#: and when $4 (the query has a ``closed:`` term) the older entries that
#: changed the status: all a state's ``closed_at`` reads below the states
#: (:func:`state_fields`), so a bulk edit of issues with long histories does
#: not return (and parse) every entry of each. Per issue (``LATERAL``: a
#: nested loop of index ranges, never a scan of the table, which the
#: planner took for a hundred issues when it guessed a third of each
#: issue's entries at or above ``low``) two ranges: the primary key's from
#: ``low`` up, and below it ``issue_history_status_changes`` (migration
#: 0030, a partial index of the entries whose changes hold a status
#: change: the ``@>`` here is its predicate, written alike so that
#: PostgreSQL and CockroachDB both prove the index serves it). The single
#: join on ``version >= low OR (…)`` this replaces read every entry of
#: each issue to keep those. ``@>`` is containment of jsonb, on PostgreSQL
#: and CockroachDB alike.
#: ``commented``: it added a comment, which the row's comment_count counts;
#: ``attached``: it attached or deleted a file (looked up when $3, the query
#: reads attachments: a ``CASE`` so that it is not otherwise).
_ENTRIES_FROM = """
SELECT h.issue_id, h.version, h.created_at, h.changes,
       h.edits_version = 0 AND (h.comment <> '' OR h.comment_redacted) AS commented,
       CASE WHEN $3::boolean
            THEN h.deleted_attachment_id <> 0
                 OR EXISTS (SELECT 1 FROM attachments a
                             WHERE a.issue_id = h.issue_id AND a.entry_version = h.version)
            ELSE false END AS attached
  FROM unnest($1::bigint[], $2::bigint[]) AS w(issue_id, low)
 CROSS JOIN LATERAL (
        SELECT h.* FROM issue_history h WHERE h.issue_id = w.issue_id AND h.version >= w.low
        UNION ALL
        SELECT h.* FROM issue_history h
         WHERE $4::boolean AND h.issue_id = w.issue_id AND h.version < w.low
           AND h.changes @> '[{"field": "status"}]'::jsonb) h
 ORDER BY h.issue_id, h.version DESC
"""
#: The current values the states are computed back from (the hotlists as
#: their items list them: every membership change is a history entry too).
_CURRENT = """
SELECT i.id, i.status, i.closed_at, i.cc, i.blocking_ids, i.blocked_by_ids, i.custom_fields,
       i.comment_count,
       ARRAY(SELECT hi.hotlist_id FROM hotlist_items hi WHERE hi.issue_id = i.id) AS hotlist_ids
  FROM issues i WHERE i.id = ANY ($1::bigint[])
"""
#: A state's title vectors when its title is not the row's: ``title_tsv`` is
#: generated from the title and ``text_tsv`` is the title's vector then the
#: comments' (as every writer sets it), so ``title:`` and bare words read the
#: state's title, the comments as they are now.
_TITLE_VECTORS = (
    "CASE WHEN st.fields ? 'title' THEN jsonb_build_object("
    "'title_tsv', to_tsvector('english', st.fields->>'title')::text, "
    "'text_tsv', (to_tsvector('english', st.fields->>'title') || cur.comments_tsv)::text) "
    "ELSE '{{}}'::jsonb END"
)
#: The issues as they were: each state's columns over its current row, and
#: the hotlists it was on and its custom values' search rows (columns no
#: issue row has).
_STATES_TABLE = (
    f"(SELECT (jsonb_populate_record(cur, st.fields || {_TITLE_VECTORS})).*, "
    "ARRAY(SELECT jsonb_array_elements_text(st.fields -> 'hotlist_ids')::bigint) AS hotlist_ids, "
    "st.fields -> 'custom_rows' AS custom_rows "
    "FROM jsonb_to_recordset({states}) AS st(id bigint, fields jsonb) "
    "JOIN issues cur ON cur.id = st.id)"
)


async def changes_that_left(
    conn: Conn,
    query: v1.StructuredQuery,
    caller: v1.Caller,
    catalog: CustomCatalog,
    changes: Sequence[tuple[int, int]],
    *,
    viewable: Collection[int],
) -> set[tuple[int, int]]:
    """The ``(issue id, version)`` of ``changes`` that made their issue stop matching ``query``.

    A creation (version 1) has no state before it and never left. Nor did
    a change that set none of the columns the query reads (:func:`columns_read`:
    ``component_id`` always, for the caller's view; a priority change
    for ``component:C status:open``), unless the query reads what it did set
    otherwise (custom values: a custom term; a comment: a
    ``commenter:`` or ``lastcommenter:`` term; a file attached or deleted:
    an ``attachment:`` term) or the state's version or time (``modified``,
    ``lastmodifier``, ``modifier:``): its two states are the same row for
    everything the query reads, so they are not sent to the database
    (a replay of comments costs one statement, and so do the changes of
    other fields of issues the query never matched, most of what a query
    watch sees). Four statements at most
    for the lot: the entries from the oldest change on (for a query with a
    ``closed:`` term, also the older entries that changed the status: a
    reopened state's ``closed_at`` is the time of the one that closed it,
    :func:`state_fields`), the current rows,
    and the query over both states of every change left (two, when some
    are blind, below).

    An issue the caller may not view now (not in ``viewable``) is judged
    blind when the query reads what is kept apart from the row (words,
    comments, mentions, stars): that is read as it is now,
    and may have been written where the caller cannot see, so that whether
    a leave came would tell them of it (a replay of ``-word`` would say
    whether a comment made since holds the word). Its change left the
    query when the caller could view the issue before it and cannot after
    it, whatever the query says; the watcher drops the row if it had one,
    and learns of an issue it could view before, nothing written since.
    """
    judged = sorted({(i, v) for i, v in changes if v > 1})
    if not judged:
        return set()
    lowest: dict[int, int] = {}
    for issue_id, version in judged:
        lowest[issue_id] = min(lowest.get(issue_id, version), version - 1)
    reads = {t.field for t in search_terms(query.filter)}
    closed = v1.SearchField.CLOSED in reads  # when each state was closed: older status changes
    ids = sorted(lowest)
    attachments = v1.SearchField.ATTACHMENT in reads
    custom = v1.SearchField.CUSTOM in reads
    entries = await conn.fetch(_ENTRIES_FROM, ids, [lowest[i] for i in ids], attachments, closed)
    if not reads & _VERSION_FIELDS:
        counts = bool(reads & _COMMENT_FIELDS)
        columns = columns_read(reads)
        changed_row = {
            (row["issue_id"], row["version"])
            for row in entries
            if _sets_columns(row, columns, custom)
            or (counts and row["commented"])
            or (attachments and row["attached"])
        }
        judged = [(i, v) for i, v in judged if (i, v) in changed_row]
        if not judged:
            return set()
    current = {row["id"]: row for row in await conn.fetch(_CURRENT, ids)}
    newest_first: dict[int, list[asyncpg.Record]] = {}
    for row in entries:
        newest_first.setdefault(row["issue_id"], []).append(row)
    blind = {i for i in ids if i not in viewable} if reads & _APART_FIELDS else set()
    matched: set[tuple[int, int]] = set()
    for judged_by, issues in (
        (query.filter, [(i, v) for i, v in judged if i not in blind]),
        (None, [(i, v) for i, v in judged if i in blind]),  # the caller's view alone
    ):
        states = [
            {
                "id": issue_id,
                "fields": state_fields(
                    current[issue_id],
                    newest_first[issue_id],
                    at,
                    catalog.by_id,
                    custom_values=custom and judged_by is not None,
                ),
            }
            for issue_id, version in issues
            if issue_id in current
            for at in (version - 1, version)
        ]
        if states:
            matched |= await _states_matching(conn, judged_by, caller, catalog, states)
    return {(i, v) for i, v in judged if (i, v - 1) in matched and (i, v) not in matched}


async def _states_matching(
    conn: Conn,
    node: v1.SearchNode | None,
    caller: v1.Caller,
    catalog: CustomCatalog,
    states: list[dict[str, Any]],
) -> set[tuple[int, int]]:
    """The ``(issue id, version)`` of ``states`` matching ``node`` for ``caller`` (None: any)."""
    payload = json.dumps(states, default=_json_value)

    def states_table(bind: Callable[[Any, str], str]) -> str:
        return _STATES_TABLE.format(states=bind(payload, "jsonb"))

    compiled = _search.compile_search(
        v1.StructuredQuery(filter=node),
        caller,
        principals_of(caller),
        None,
        catalog,
        issues_from=states_table,
        row_state=True,
    )
    with_ = f"WITH {compiled.ctes} " if compiled.ctes else ""
    statement = f"{with_}SELECT i.id, i.version {compiled.base}"
    return {
        (row["id"], row["version"]) for row in await conn.fetch(statement, *compiled.count_params)
    }


def columns_read(fields: Iterable[v1.SearchField]) -> frozenset[str]:
    """The state columns a query of ``fields`` reads, ``component_id`` always (the view)."""
    read = {"component_id"}
    for field in fields:
        if field in _COLUMN_READ:
            read.add(_COLUMN_READ[field])
        elif field not in _NO_COLUMN_READ:
            read |= _ALL_COLUMNS
    return frozenset(read)


def _sets_columns(entry: Row, columns: frozenset[str], custom: bool) -> bool:
    """Whether history ``entry`` changed one of ``columns`` (:func:`columns_read`).

    Custom values count when ``custom`` (the query has a custom term): a
    change of values alone cannot change how a query without one judges
    the issue.
    """
    raw = entry["changes"]
    return any(
        change["field"] in columns or (custom and bool(_custom_key(change["field"])))
        for change in (json.loads(raw) if isinstance(raw, str) else raw)
    )


def state_fields(
    current: Row,
    newest_first: Iterable[Row],
    version: int,
    definitions: Mapping[int, v1.CustomField] | None = None,
    *,
    custom_values: bool = True,
) -> dict[str, Any]:
    """The row columns of the issue at ``version`` that differ from ``current``'s, and its version.

    ``newest_first`` are the issue's history entries from ``version`` on at
    least, newest first: every entry above ``version`` is undone (a scalar
    takes the old value of the oldest such entry that changed it, a list
    loses what they added and regains what they removed, a custom value
    too), and the entry at ``version`` gives the state's time
    (``modified_at``). ``closed_at`` of a closed state that a later entry
    reopened is the time of the newest entry at or below ``version`` that
    closed it, read from ``newest_first`` (every entry that changed the
    status, for an exact time: a watch reads those below the states for a
    query with a ``closed:`` term; else the state's time); of one closed
    ever since, the row's.
    ``custom_rows`` are the state's custom values as
    search rows (:func:`~bugless_model_postgres._custom_values.search_rows`);
    an option of a field among ``definitions`` (the query's, by id) is
    spelled as the field spells it now (an UpdateCustomField renaming an
    option in letter case respells the values issues hold, but not their
    history, and a search compares values exactly). Without
    ``custom_values`` (the query has no custom term: nothing reads them)
    the custom values are left as the row holds them and there are no
    ``custom_rows``: parsing the row's values and making their search rows
    was most of the work of a state.
    """
    fields: dict[str, Any] = {"version": version}
    lists = {name: set(current[name]) for name in _ROW_LISTS}
    custom = load_values(current["custom_fields"]) if custom_values else {}
    undone: set[str] = set()
    comments = 0
    reopened = False
    closing: datetime | None = None
    for entry in newest_first:
        if entry["version"] == version:
            fields["modified_at"] = entry["created_at"]
        if entry["version"] <= version:
            # fields["status"] is set when reopened is: only an entry above
            # version sets reopened, in the same step that sets the status
            # back, and every such entry comes before this one (newest first).
            if reopened and closing is None and fields["status"] not in _OPEN:
                closing = _closed_by(entry)
            continue
        comments += bool(entry["commented"])
        raw = entry["changes"]
        for change in json.loads(raw) if isinstance(raw, str) else raw:
            name = change["field"]
            if name in SCALAR_FIELDS:
                fields[name] = _column_value(name, change["old"])
                reopened |= name == "status" and _column_value(name, change["new"]) in _OPEN
            elif name in _ROW_LISTS:
                read = _ROW_LISTS[name]
                lists[name] -= {read(x) for x in change["added"]}
                lists[name] |= {read(x) for x in change["removed"]}
                undone.add(name)
            elif custom_values and (key := _custom_key(name)):
                _undo_custom(custom, key, change, (definitions or {}).get(int(key)))
                undone.add("custom_fields")
    for name in undone & set(_ROW_LISTS) | {"hotlist_ids"}:  # no row has hotlists of its own
        fields[name] = sorted(lists[name])
    if "custom_fields" in undone:
        fields["custom_fields"] = custom
    if custom_values:
        fields["custom_rows"] = [
            {"field_id": field_id, "value": value, "number": number, "folded": folded}
            for field_id, value, number, folded in search_rows(custom)
        ]
    if comments:
        fields["comment_count"] = max(current["comment_count"] - comments, 0)
    if "status" in fields:
        if fields["status"] in _OPEN:
            fields["closed_at"] = None
        elif not reopened:  # closed ever since: the row's time is the state's
            fields["closed_at"] = current["closed_at"]
        else:
            fields["closed_at"] = closing or fields.get("modified_at")
    return fields


def _closed_by(entry: Row) -> datetime | None:
    """The time of ``entry`` if it closed the issue (its status from open, or none, to closed).

    What the writers set ``closed_at`` to (``_issue_plan``, imports): a
    change from one closed status to another keeps it.
    """
    raw = entry["changes"]
    for change in json.loads(raw) if isinstance(raw, str) else raw:
        if change["field"] == "status":
            old, new = (_column_value("status", change[k]) for k in ("old", "new"))
            if (old in _OPEN or not old) and new not in _OPEN:
                return entry["created_at"]  # type: ignore[no-any-return]
    return None


def _custom_key(name: str) -> str:
    """The ``custom_fields`` key of a FieldChange's ``customfield<ID>``; "" for other fields."""
    key = name.removeprefix(cf.FIELD_PREFIX)
    return key if key != name and key.isdigit() else ""


def _undo_custom(
    values: dict[str, Any],
    key: str,
    change: Mapping[str, Any],
    definition: v1.CustomField | None,
) -> None:
    """Set ``values[key]`` back to what it held before ``change`` (a ``customfield<ID>`` one).

    A multi-valued field's change lists the options added and removed, a
    single value's the old value as text (``cf.render`` of one value); the
    entry's ``type`` says which and how the value is stored (an integer as
    a number). An entry without one (written before types were recorded)
    is read by its shape and the value held now. Options compare by case
    folding, as the field's do, and take ``definition``'s spelling.
    """
    held = values.get(key)
    kind = change.get("type", 0)
    if (
        kind in cf.MULTI_TYPES
        or isinstance(held, list)
        or (not kind and (change["added"] or change["removed"]))
    ):
        added = {v.casefold() for v in change["added"]}
        restored: Any = [v for v in cf.from_stored(held) if v.casefold() not in added]
        kept = {v.casefold() for v in restored}
        restored += [v for v in change["removed"] if v.casefold() not in kept]
        restored = [_spelled(definition, v) for v in restored]
    else:
        restored = change["old"]
        if restored and (kind == cf.T.INTEGER or isinstance(held, int)):
            number = cf.read_integer(restored)
            restored = restored if number is None else number
        elif restored and kind == cf.T.ENUM:
            restored = _spelled(definition, restored)
    if restored in ("", []):
        values.pop(key, None)
    else:
        values[key] = restored


def _spelled(definition: v1.CustomField | None, option: str) -> str:
    """``option`` as ``definition`` spells it now (as it is when it is no option of it)."""
    if definition is None or definition.type not in (cf.T.ENUM, cf.T.ENUM_MULTI):
        return option
    return cf.match_option(definition, option) or option


def _column_value(name: str, text: str) -> Any:
    """A FieldChange value (:func:`~bugless_model_postgres._convert.scalar_text`) as its column."""
    if name in ENUM_FIELDS:
        return int(ENUM_FIELDS[name][text]) if text else 0
    if name in _ID_FIELDS:
        return int(text) if text else 0
    return text


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    msg = f"no JSON form for {value!r}"
    raise TypeError(msg)
