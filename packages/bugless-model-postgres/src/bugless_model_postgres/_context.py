"""The state one write transaction carries, and access checks on rows.

A :class:`WriteContext` lives for one transaction attempt: it knows the
connection, the caller, the transaction's clock reading and the entries
written so far; the change-feed row is appended from them as the
transaction's last statement, and listeners hear of them only after the
final commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from bugless_core.errors import NotFound, PermissionDenied
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _queries as q
from bugless_model_postgres import _visibility
from bugless_model_postgres._convert import Conn, Row, caller_role, issue_from_row, principals_of
from bugless_model_postgres._custom_values import attach_values, value_messages
from bugless_model_postgres._dialect import POSTGRES, Dialect
from bugless_model_postgres._issue_projection import fetch_statement
from bugless_proto import v1

#: Hands out the id of a new issue, inside the creating transaction. Where
#: none is given (``None``, PostgreSQL), the INSERT takes the id column's
#: default, the identity sequence, without a round trip of its own.
IssueIdSource = Callable[[Conn], Awaitable[int]]


ROLE_NAMES = {v1.Role.VIEWER: "viewer", v1.Role.EDITOR: "editor", v1.Role.ADMIN: "admin"}


class AdminView(NamedTuple):
    """An issue as a write left it, what an admin's read after the commit returns.

    Attributes:
        row: Its columns as the write returned them, with ``has_children``
            and ``has_duplicates`` as read under its lock.
        hotlist_ids: Every hotlist holding it, private ones too.
        custom: Its stored custom field values.
        names: Names and types of the fields in ``custom``.
    """

    row: dict[str, Any]
    hotlist_ids: set[int]
    custom: dict[str, Any]
    names: dict[int, tuple[str, int]]

    def issue(self) -> v1.Issue:
        """A new Issue message of the view (the admin has starred and muted nothing)."""
        issue = issue_from_row({**self.row, "starred": False, "muted": False}, self.hotlist_ids)
        if self.custom:
            issue.custom_fields = value_messages(self.custom, self.names)
        return issue


@dataclass
class WriteContext:
    """One transaction attempt of a write call.

    Attributes:
        conn: The connection, inside a transaction.
        caller: Who is calling.
        now: One clock reading for every row the transaction writes.
        channel: NOTIFY channel of this deployment's schema.
        dialect: The statements that differ on this database.
        new_issue_id: Where a created issue's id comes from; ``None``: the
            id column's default (the identity sequence).
        written: ``(issue_id, version)`` of every history entry written.
        components_changed: Ids of components created or changed.
        feed_position: The change-feed position the transaction took; -1
            where positions are handed out after commit
            (``Dialect.feed_append``) once it appended its change; 0: it
            changed nothing the feed reports.
        one_statement: No BEGIN/COMMIT around this attempt (``run_write``'s
            ``one_statement`` on READ COMMITTED): the work must write
            everything in one statement, and refuses before writing if it
            cannot.
        entry_rows: Of the entries in ``written``, those whose final row the
            write holds (an ``INSERT``/``UPDATE ... RETURNING *``), with the
            rows of the files each attached: the change listeners hear of
            them without a read after the commit (:meth:`know_entry`).
        issue_views: Issues whose row the write returned, as an admin would
            read them (:meth:`know_issue`): the change listeners' issue is
            built from one whose version is the issue's last entry's, not read.
        deleted_names: The file name of each attachment the write deleted, by
            id: an entry of ``entry_rows`` that deleted one is heard with its
            name, as a history read gives it (``deleted_attachment_name``).
    """

    conn: Conn
    caller: v1.Caller
    now: datetime
    channel: str
    dialect: Dialect = POSTGRES
    new_issue_id: IssueIdSource | None = None
    written: list[tuple[int, int]] = field(default_factory=list)
    components_changed: list[int] = field(default_factory=list)
    feed_position: int = 0
    one_statement: bool = False
    entry_rows: dict[tuple[int, int], tuple[Row, tuple[Row, ...]]] = field(default_factory=dict)
    issue_views: dict[int, AdminView] = field(default_factory=dict)
    deleted_names: dict[int, str] = field(default_factory=dict)

    def know_entry(self, row: Row, attachments: tuple[Row, ...] = ()) -> None:
        """Keep an entry's row as the write returned it, final (see ``entry_rows``)."""
        self.entry_rows[(int(row["issue_id"]), int(row["version"]))] = (row, attachments)

    def know_issue(self, view: AdminView) -> None:
        """Keep an issue as the write left it (see ``issue_views``)."""
        self.issue_views[int(view.row["id"])] = view

    @property
    def principals(self) -> list[str]:
        """The caller's principals as stored strings."""
        return principals_of(self.caller)


async def fetch_issue_rows(
    conn: Conn, caller: v1.Caller, ids: list[int], fields: frozenset[str] = frozenset()
) -> dict[int, asyncpg.Record]:
    """Rows of the issues among ``ids`` the caller may view, by id (one statement).

    ``fields`` (a read mask's Issue fields; empty: every field) leaves the
    columns and subqueries of the others unread
    (:mod:`._issue_projection`). Search pages do not come through here: their
    one statement selects the same way itself (``_search_page``).
    """
    if not ids:
        return {}
    if len(ids) == 1:
        statement = fetch_statement(fields, 1) if fields else q.FETCH_ISSUE
        rows = await conn.fetch(statement, ids[0], caller.admin, caller.user_id)
    elif len(ids) <= q.ID_SLOTS[-1]:
        # A fixed number of id parameters keeps one plan (see q.ids_condition).
        slots = next(n for n in q.ID_SLOTS if n >= len(ids))
        padded = [*ids, *([ids[0]] * (slots - len(ids)))]
        statement = fetch_statement(fields, slots) if fields else q.fetch_issues_in_slots(slots)
        rows = await conn.fetch(statement, padded[0], caller.admin, caller.user_id, *padded[1:])
    else:
        statement = fetch_statement(fields, 0) if fields else q.FETCH_ISSUES
        rows = await conn.fetch(statement, ids, caller.admin, caller.user_id)
    return {row["id"]: row for row in rows if caller_role(caller, row["effective_acl"]) is not None}


def issue_message(row: Row) -> v1.Issue:
    """The Issue message of a :data:`q.FETCH_ISSUES` row."""
    return issue_from_row(row, row["visible_hotlist_ids"])


async def fetch_issues(
    conn: Conn, caller: v1.Caller, ids: list[int], fields: frozenset[str] = frozenset()
) -> dict[int, v1.Issue]:
    """Visible issues among ``ids`` as messages (custom field values included), by id.

    ``fields``: as :func:`fetch_issue_rows`; the other fields are at their defaults.
    """
    rows = await fetch_issue_rows(conn, caller, ids, fields)
    issues = {i: issue_message(r) for i, r in rows.items()}
    if any(r["custom_field_names"] is not None for r in rows.values()):
        attach_values(issues, rows)
    return issues


def issue_not_found(issue_id: int, field_name: str = "") -> NotFound:
    """The one message shape for a missing or invisible issue."""
    prefix = f"{field_name}: " if field_name else ""
    return NotFound(f"{prefix}issue {issue_id} not found", metadata={"issue_id": str(issue_id)})


async def seen_component_path(conn: Conn, caller: v1.Caller, component_id: int, path: str) -> str:
    """The path of component ``component_id`` (whole: ``path``) as ``caller`` sees it.

    For a refusal, which names the component by the path every answer gives
    the caller (``_visibility.SEEN_PATH``), not by one naming components
    above that they may not view. One statement, read only when refusing;
    none for an admin, who may view every component, nor for a component at
    the top, whose path names no other.
    """
    if caller.admin or ">" not in path:
        return path
    found = await conn.fetchval(cq.SEEN_PATH_OF, component_id, False, principals_of(caller))
    return str(found if found is not None else path)


async def editable_row(ctx: WriteContext, issue_id: int, row: Row | None, doing: str) -> Row:
    """``row`` if the caller may edit the issue: NotFound, then PermissionDenied.

    ``row`` is the issue as read for the caller (None: missing or invisible),
    with its ``component_id`` and ``component_path``; ``doing`` finishes the
    refusal: "editor role on component P needed to {doing} issue N", P as
    the caller sees it (:func:`seen_component_path`).
    """
    role = caller_role(ctx.caller, row["effective_acl"]) if row is not None else None
    if row is None or role is None:
        raise issue_not_found(issue_id)
    if role < v1.Role.EDITOR:
        path = await seen_component_path(
            ctx.conn, ctx.caller, int(row["component_id"]), str(row["component_path"])
        )
        raise PermissionDenied(
            f"{ROLE_NAMES[v1.Role.EDITOR]} role on component {path} needed "
            f"to {doing} issue {issue_id}",
            metadata={"issue_id": str(issue_id)},
        )
    return row


def component_not_found(component_id: int, field_name: str = "") -> NotFound:
    """The one message shape for a missing or invisible component."""
    prefix = f"{field_name}: " if field_name else ""
    return NotFound(
        f"{prefix}component {component_id} not found",
        metadata={"component_id": str(component_id)},
    )


def hotlist_not_found(hotlist_id: int, field_name: str = "") -> NotFound:
    """The one message shape for a missing or invisible hotlist."""
    prefix = f"{field_name}: " if field_name else ""
    return NotFound(
        f"{prefix}hotlist {hotlist_id} not found", metadata={"hotlist_id": str(hotlist_id)}
    )


def hotlist_visible(caller: v1.Caller, row: Row) -> bool:
    """Whether ``caller`` may see hotlist ``row``: :func:`._visibility.hotlist_visible`.

    Private hotlists are visible to owner, editors and admins only, as the
    statements' rule (``HOTLIST_VISIBLE``) has it.
    """
    return _visibility.hotlist_visible(
        caller.admin,
        caller.user_id,
        private=bool(row["private"]),
        owner=str(row["owner"]),
        editors=row["editors"],
    )


def hotlist_editable(caller: v1.Caller, row: Row) -> bool:
    """Owner, editors and admins may change a hotlist's items."""
    return caller.admin or row["owner"] == caller.user_id or caller.user_id in row["editors"]


def as_dict(row: Row) -> dict[str, Any]:
    """A mutable copy of a row."""
    return dict(row.items())
