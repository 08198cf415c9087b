"""BatchCreateIssues on PostgreSQL: the items in one transaction, each on its own terms.

The API frontend sends concurrent CreateIssue calls of one caller as one
BatchCreateIssues (``bugless_api._coalesce_create``), so each item must come
out as its own CreateIssue would. Items without relations or hotlists share
one transaction whose statements do not grow with the items: one statement
checks every item (:data:`BATCH_CHECKS`: its component, whether its
idempotency key was used, and the custom fields that apply in each
component), each item is then planned in Python (its component's ACL, validation,
custom field values; a failing item is left out, having written nothing),
and one statement writes every planned item at once
(:func:`insert_statement`: issues, history entries, mentions, custom value
rows and, on PostgreSQL, the change-feed row with its NOTIFY).
Items touching other rows (relations, hotlists, parent, duplicate) may fail
after a first write, which a shared transaction could not undo for them
alone: each is created in its own transaction after.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import asyncpg

from bugless_core.errors import BuglessError
from bugless_core.mentions import mentioned_usernames
from bugless_core.model.backend import batch_create_failure
from bugless_model_postgres import _custom_fields, _custom_values, _issue_plan, _issues
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext, fetch_issues, issue_not_found
from bugless_model_postgres._convert import changes_to_json
from bugless_model_postgres._database import translated_errors
from bugless_proto import v1

T = TypeVar("T")


class Write(Protocol[T]):
    """The backend's write transaction (``PostgresBackend._write``)."""

    def __call__(
        self,
        caller: v1.Caller | None,
        work: Callable[[WriteContext], Awaitable[T]],
        *,
        one_statement: bool = ...,
    ) -> Awaitable[tuple[T, WriteContext]]:
        """Run ``work`` as one write (see ``run_write``)."""
        ...


_Outcomes = dict[int, _issues.Created | BuglessError]

_BATCH_CHECKS = (
    """
WITH d AS MATERIALIZED (
    SELECT c.*, """
    + _custom_fields.APPLICABLE_JSON.strip().replace("{", "{{").replace("}", "}}")
    + """ AS applicable_fields
      FROM components c WHERE c.id = ANY ({components})
)
SELECT d.*,
       (SELECT i.id FROM issues i WHERE i.reporter = $3 AND i.idempotency_key = t.key)
           AS idempotent_id
  FROM unnest({components}, {keys}) WITH ORDINALITY AS t(component_id, key, n)
  LEFT JOIN d ON d.id = t.component_id
 ORDER BY t.n
"""
)
#: :data:`_issues.CREATE_CHECKS` for every item at once, a row per item in order:
#: component ids $1, idempotency keys $2 (NULL: none), the caller $3. Each row
#: also holds the custom fields that apply in its component as json
#: (``_custom_fields.APPLICABLE_JSON``; NULL: none), so a batch whose
#: component has fields needs no statement of its own to read them: the
#: checks, then the write, two round trips a batch in series. One statement
#: per batch. Each distinct component is read, and its fields aggregated,
#: once (``d``; materialized, else PostgreSQL evaluates the aggregate once
#: per item again), not once per item: the API's coalesced batches are one
#: caller's creates, mostly in one component (8 items in one component with
#: a field: 149 -> 105 µs of PostgreSQL a statement; in one without, or in
#: three components, lower too: bench/JOURNAL.md, session 14). Unlike
#: :data:`_issues.CREATE_CHECKS` the aggregate has no ``EXISTS`` guard: for 8
#: items it saved a batch without fields ~10 µs of PostgreSQL and cost one
#: with fields ~11 µs (bench/JOURNAL.md, session 13, "later tasks").
BATCH_CHECKS = _BATCH_CHECKS.format(components="$1::bigint[]", keys="$2::text[]")
#: Batch sizes :func:`batch_checks_in_slots` covers; larger ones use :data:`BATCH_CHECKS`.
CHECK_SLOTS = (4, 8, 16, 32, 64, 128)


@functools.cache
def batch_checks_in_slots(slots: int) -> str:
    """:data:`BATCH_CHECKS` for ``slots`` items given as parameters, planned once.

    With arrays PostgreSQL 15 re-plans the statement on every call (its custom
    plan knows how many items there are, the generic plan assumes 10, so the
    custom one always looks cheaper: 0 generic plans of 30); with a fixed
    number of parameters both plans count the same rows and the connection
    keeps the generic plan (as ``q.fetch_issues_in_slots``). Parameters:
    component ids ``$1``, ``$4`` … then keys, the caller ``$3``, ``$2`` the
    first key; unused slots are component 0 without a key, rows past the
    items' are dropped by the caller.
    """
    rest = range(4, 2 * slots + 2)
    components = ["$1::bigint", *(f"${n}::bigint" for n in rest[: slots - 1])]
    keys = ["$2::text", *(f"${n}::text" for n in rest[slots - 1 :])]
    return _BATCH_CHECKS.format(
        components=f"ARRAY[{', '.join(components)}]", keys=f"ARRAY[{', '.join(keys)}]"
    )


async def _batch_checks(
    ctx: WriteContext, components: list[int], keys: list[str | None]
) -> list[asyncpg.Record]:
    """:data:`BATCH_CHECKS`' rows for the items, in item order (one statement)."""
    caller = ctx.caller.user_id
    if len(components) > CHECK_SLOTS[-1]:
        return list(await ctx.conn.fetch(BATCH_CHECKS, components, keys, caller))
    slots = next(n for n in CHECK_SLOTS if n >= len(components))
    padding = slots - len(components)
    ids = [*components, *([0] * padding)]
    given = [*keys, *([None] * padding)]
    rows = await ctx.conn.fetch(
        batch_checks_in_slots(slots), ids[0], given[0], caller, *ids[1:], *given[1:]
    )
    return list(rows[: len(components)])


#: The issues and their entries 1. Items as parallel arrays $1-$16 (text[]
#: ``cc`` literals, jsonb text ``custom_fields`` and ``changes``, ``given_id``
#: NULL unless the backend mints ids), the caller $17 and the time $18.
_INSERT = """
WITH input AS {materialized}(
    SELECT t.*, {new_id} AS new_id
      FROM unnest($1::text[], $2::smallint[], $3::smallint[], $4::smallint[], $5::smallint[],
                  $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                  $11::timestamptz[], $12::int[], $13::text[], $14::text[], $15::text[],
                  $16::bigint[])
           WITH ORDINALITY AS t(title, status, priority, severity, type, component_id,
                                assignee, verifier, cc, description, closed_at, comment_count,
                                key, custom_fields, changes, given_id, n)
), created AS (
    INSERT INTO issues (id, title, status, priority, severity, type, component_id, reporter,
                        assignee, verifier, cc, blocking_ids, blocked_by_ids, parent_id,
                        duplicate_of_id, description, created_at, modified_at, closed_at,
                        version, comment_count, idempotency_key, comments_tsv, text_tsv,
                        custom_fields)
    SELECT new_id, title, status, priority, severity, type, component_id, $17, assignee,
           verifier, cc::text[], '{{}}', '{{}}', 0, 0, description, $18, $18, closed_at, 1,
           comment_count, key, to_tsvector('english', description),
           to_tsvector('english', title) || to_tsvector('english', description),
           custom_fields::jsonb
      FROM input ORDER BY n
    ON CONFLICT (reporter, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                               caused_by_issue_id)
    SELECT new_id, 1, $17, $18, description, changes::jsonb, 0
      FROM input WHERE new_id IN (SELECT id FROM created)
    RETURNING issue_id
){mentioned}{valued}{feed}
SELECT input.n, created.id, {position} AS position
  FROM input LEFT JOIN created ON created.id = input.new_id
 ORDER BY input.n
"""

#: Mentions as (item number, username) pairs.
_MENTIONED = """, mentioned AS (
    INSERT INTO issue_mentions (issue_id, username)
    SELECT input.new_id, m.username
      FROM unnest(${0}::bigint[], ${1}::text[]) AS m(n, username), input
     WHERE input.n = m.n AND input.new_id IN (SELECT id FROM created)
    ON CONFLICT DO NOTHING
)"""

#: Custom value search rows as (item number, field, value, number, folded) rows.
_VALUED = """, valued AS (
    INSERT INTO issue_custom_values
           (issue_id, field_id, value, number, component_id, status, folded)
    SELECT input.new_id, v.field_id, v.value, v.number, input.component_id, input.status,
           v.folded
      FROM unnest(${0}::bigint[], ${1}::bigint[], ${2}::text[], ${3}::bigint[], ${4}::text[])
           AS v(n, field_id, value, number, folded), input
     WHERE input.n = v.n AND input.new_id IN (SELECT id FROM created)
)"""

#: The change-feed row naming every issue written, in item order, with its
#: NOTIFY on channel ``${0}``: as in :data:`q.CREATE_ISSUE_IN_ONE`, ``head``
#: is updated only once the entries are written (its condition reads them),
#: the last write of the transaction.
_FEED = (
    q.feed_after_entry(
        committed_at="$18",
        author="$17",
        issue_ids="ARRAY(SELECT input.new_id FROM input"
        " WHERE input.new_id IN (SELECT issue_id FROM entry) ORDER BY input.n)",
        versions="ARRAY(SELECT 1::bigint FROM entry)",
    )
    .replace("{", "{{")
    .replace("}", "}}")
    + """, notified AS MATERIALIZED (
    SELECT position, pg_notify(${0}, position::text) AS sent FROM appended
)"""
)


@functools.cache
def insert_statement(*, given_ids: bool, mentions: bool, values: bool, feed: bool) -> str:
    """Every planned item of a batch in one statement, with only the parts it needs.

    A part writing nothing still costs PostgreSQL (the table and its indexes
    opened, a bigger plan), so mentions and custom value rows are left out
    when no item has any. Their parameters follow ``$18`` in this order:
    mentions (2), custom value rows (5), the NOTIFY channel.

    Args:
        given_ids: Ids come from ``$16`` (backends minting their own);
            otherwise from the issues' identity sequence, drawn in item order.
        mentions: Write ``issue_mentions`` rows.
        values: Write ``issue_custom_values`` rows.
        feed: Also append the transaction's feed row and NOTIFY (PostgreSQL).
    """
    numbers = itertools.count(19)
    sequence = "(SELECT pg_get_serial_sequence('issues', 'id'))"
    return _INSERT.format(
        materialized="" if given_ids else "MATERIALIZED ",
        new_id="t.given_id" if given_ids else f"nextval({sequence})",
        mentioned=_MENTIONED.format(*itertools.islice(numbers, 2)) if mentions else "",
        valued=_VALUED.format(*itertools.islice(numbers, 5)) if values else "",
        feed=_FEED.format(next(numbers)) if feed else "",
        position="(SELECT position FROM notified)" if feed else "0::bigint",
    )


class _Item(NamedTuple):
    at: int  # the item's index in the request
    request: v1.CreateIssueRequest
    planned: _issue_plan.PlannedCreate


def _array_literal(values: Sequence[str]) -> str:
    """``values`` as a text[] literal, every element quoted (cast back in the statement)."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


async def _insert_all(ctx: WriteContext, items: list[_Item]) -> dict[int, int | None]:
    """Write every planned item in one statement; its id by index (``None``: key taken)."""
    columns: list[list[Any]] = [[] for _ in range(16)]
    mentions: tuple[list[int], list[str]] = ([], [])
    values: tuple[list[Any], ...] = ([], [], [], [], [])
    given = ctx.new_issue_id is not None
    for n, item in enumerate(items, start=1):
        new, request = item.planned.plan.new, item.request
        row = (
            new["title"], new["status"], new["priority"], new["severity"], new["type"],
            new["component_id"], new["assignee"], new["verifier"], _array_literal(new["cc"]),
            request.description, new["closed_at"], item.planned.comment_count,
            request.idempotency_key or None, _custom_values.dump_values(item.planned.custom),
            changes_to_json(item.planned.plan.changes),
            await ctx.new_issue_id(ctx.conn) if ctx.new_issue_id is not None else None,
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        for name in mentioned_usernames(new["title"], request.description):
            mentions[0].append(n)
            mentions[1].append(name)
        for search_row in _custom_values.search_rows(item.planned.custom):
            for column, value in zip(values, (n, *search_row), strict=True):
                column.append(value)
    feed = ctx.dialect.change_feed and ctx.dialect.notify is not None
    args: list[Any] = [*columns, ctx.caller.user_id, ctx.now]
    if mentions[0]:
        args.extend(mentions)
    if values[0]:
        args.extend(values)
    if feed:
        args.append(ctx.channel)
    statement = insert_statement(
        given_ids=given, mentions=bool(mentions[0]), values=bool(values[0]), feed=feed
    )
    rows = await ctx.conn.fetch(statement, *args)
    ids: dict[int, int | None] = {}
    for item, record in zip(items, rows, strict=True):
        issue_id = record["id"]
        ids[item.at] = None if issue_id is None else int(issue_id)
        if issue_id is not None:
            ctx.written.append((int(issue_id), 1))
    if rows and rows[0]["position"]:
        ctx.feed_position = int(rows[0]["position"])
    return ids


async def _create_together(
    ctx: WriteContext, requests: list[tuple[int, v1.CreateIssueRequest]]
) -> _Outcomes:
    """The items sharing the transaction: checked at once, planned each, written at once."""
    caller = ctx.caller
    checks = await _batch_checks(
        ctx,
        [r.fields.component_id if r.fields is not None else 0 for _, r in requests],
        [r.idempotency_key or None for _, r in requests],
    )
    outcomes: _Outcomes = {}
    planned: list[_Item] = []
    # An item repeating the key of an earlier item of the batch: that item's
    # issue, as its own CreateIssue, made after the earlier one, would find.
    first_with_key: dict[str, int] = {}
    repeats: dict[int, int] = {}
    # The custom fields that apply, decoded once per component of the batch.
    applicable: dict[int, dict[int, v1.CustomField]] = {}
    for (index, request), row in zip(requests, checks, strict=True):
        key = request.idempotency_key
        if key and key in first_with_key:
            repeats[index] = first_with_key[key]
            continue
        if row["idempotent_id"] is not None:
            outcomes[index] = _issues.Created(int(row["idempotent_id"]), None)
            continue
        component_id = request.fields.component_id if request.fields is not None else 0
        try:
            await _issue_plan.check_target_row(
                ctx, component_id, row if row["id"] is not None else None, "fields.component_id"
            )
            custom_fields = None
            fields_json = row["applicable_fields"]
            if fields_json is not None or request.custom_fields:
                custom_fields = applicable.get(component_id)
                if custom_fields is None:
                    custom_fields = applicable[component_id] = (
                        _custom_fields.fields_from_json(fields_json) if fields_json else {}
                    )
            plan = await _issue_plan.plan_create(
                ctx,
                request,
                has_custom_fields=fields_json is not None,
                rows={},
                custom_fields=custom_fields,
            )
        except BuglessError as exc:  # raised before the item wrote anything
            outcomes[index] = exc
            continue
        planned.append(_Item(index, request, plan))
        if key:
            first_with_key[key] = index
    ids = await _insert_all(ctx, planned) if planned else {}
    made: dict[int, int] = {}
    for item in planned:
        issue_id = ids[item.at]
        if issue_id is None:
            # A concurrent create with the same key committed first.
            key = item.request.idempotency_key
            existing = await ctx.conn.fetchval(q.FIND_IDEMPOTENT, caller.user_id, key)
            made[item.at] = int(existing)
            outcomes[item.at] = _issues.Created(int(existing), None)
        else:
            made[item.at] = issue_id
            issue = _issues.created_issue(ctx, item.request, item.planned, issue_id)
            outcomes[item.at] = _issues.Created(issue_id, issue)
    for index, first in repeats.items():
        outcomes[index] = _issues.Created(made[first], None)
    return outcomes


async def batch_create_issues(
    request: v1.BatchCreateIssuesRequest,
    *,
    write: Write[_Outcomes],
    create_alone: Callable[[v1.CreateIssueRequest], Awaitable[v1.Issue]],
    pool: asyncpg.Pool,
) -> v1.BatchCreateIssuesResponse:
    """A result per item, in request order (see the module docstring).

    Args:
        request: Validated items, each with the request's caller.
        write: Runs one write transaction (retried on serialization failures).
        create_alone: The backend's CreateIssue, for items created on their own.
        pool: For reading back issues an idempotency key made earlier.
    """
    caller = request.caller if request.caller is not None else v1.Caller()
    items = list(request.items)
    shared = [(i, item) for i, item in enumerate(items) if _issues.shares_a_transaction(item)]
    if len(shared) == 1:
        # One item is created as CreateIssue creates it: for one row, its
        # statements cost PostgreSQL less than the batch's (bench/JOURNAL.md).
        shared = []

    results: dict[int, v1.BatchCreateResult] = {}
    if shared:
        # Reads, then one statement writes every item with its feed row: on
        # READ COMMITTED that needs no BEGIN/COMMIT (run_write's one_statement).
        outcomes, _ = await write(
            caller, lambda ctx: _create_together(ctx, shared), one_statement=True
        )
        # An idempotency key used before: the issue as it is now, as CreateIssue answers.
        reread = sorted(
            {
                o.issue_id
                for o in outcomes.values()
                if isinstance(o, _issues.Created) and o.issue is None
            }
        )
        found: dict[int, v1.Issue] = {}
        if reread:
            async with translated_errors(), pool.acquire() as conn:
                found = await fetch_issues(conn, caller, reread)
        for index, outcome in outcomes.items():
            if isinstance(outcome, BuglessError):
                results[index] = batch_create_failure(outcome)
                continue
            # Not ``or``: betterproto2's Message.__bool__ reads every field of the issue.
            issue = outcome.issue if outcome.issue is not None else found.get(outcome.issue_id)
            results[index] = (
                v1.BatchCreateResult(code=0, issue=issue)
                if issue is not None
                else batch_create_failure(issue_not_found(outcome.issue_id))
            )
    for index, item in enumerate(items):
        if index in results:
            continue
        try:
            results[index] = v1.BatchCreateResult(code=0, issue=await create_alone(item))
        except BuglessError as exc:
            results[index] = batch_create_failure(exc)
    return v1.BatchCreateIssuesResponse(results=[results[i] for i in range(len(items))])
