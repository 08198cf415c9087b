"""Small builders and checks the Model contracts share.

The backend fixture is session-scoped, so every contract shares one database
with every other. Contracts therefore create their own components (with
unique names), their own users where a listing is per user, and search only
inside their own component tree (:func:`within`). Nothing here knows which
backend runs: everything goes through the gRPC ``ModelStub``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.deltas import issue_delta
from bugless_core.errors import VersionConflict, from_grpc_error
from bugless_core.issue_fields import LIST_FIELDS, SCALAR_FIELDS
from bugless_core.search.build import SearchScalar, all_of, term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

T = TypeVar("T")

#: A caller whose only power is being authenticated.
ALICE = v1.Caller(user_id="alice")
BOB = v1.Caller(user_id="bob")
CAROL = v1.Caller(user_id="carol")
#: A global admin (``caller.admin``): admin everywhere, regardless of ACLs.
ADMIN = v1.Caller(user_id="root", admin=True)

_counter = itertools.count(1)

#: An id no backend hands out in a test run (far above any sequence value).
UNKNOWN_ID = 8_999_999_999_999


def unique(prefix: str) -> str:
    """A name no other test (in this run or an earlier one) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}{next(_counter)}"


def fresh_caller(prefix: str = "user", *, groups: Sequence[str] = ()) -> v1.Caller:
    """A caller with a user id nobody else has, for per-user listings."""
    return v1.Caller(user_id=unique(prefix), groups=list(groups))


def user_entry(user_id: str, role: v1.Role) -> v1.AclEntry:
    """An ACL entry for one user."""
    return v1.AclEntry(principal=v1.Principal(user=user_id), role=role)


def group_entry(group: str, role: v1.Role) -> v1.AclEntry:
    """An ACL entry for a group."""
    return v1.AclEntry(principal=v1.Principal(group=group), role=role)


async def expect_error(call: Awaitable[object], status: Status, *mentions: str) -> GRPCError:
    """Await ``call``; it must fail with ``status`` and a message naming ``mentions``."""
    with pytest.raises(GRPCError) as info:
        await call
    error = info.value
    message = error.message or ""
    assert error.status is status, f"expected {status.name}, got {error.status.name}: {message}"
    for text in mentions:
        assert text in message, f"the {status.name} message should mention {text!r}: {message!r}"
    assert "Traceback" not in message
    return error


async def expect_stale_version(call: Awaitable[object], current_version: int) -> None:
    """Await ``call``; it must be refused as a stale version, naming ``current_version``.

    model.proto promises one answer for every versioned thing: ABORTED with
    the ErrorInfo reason ``VERSION_CONFLICT`` and ``current_version`` in its
    metadata, which clients read to reload and apply again.
    """
    error = await expect_error(call, Status.ABORTED, "version")
    conflict = from_grpc_error(error)
    assert isinstance(conflict, VersionConflict), f"not a version conflict: {conflict!r}"
    assert conflict.reason == "VERSION_CONFLICT"
    assert conflict.metadata["current_version"] == str(current_version)


# ---- components ----


async def make_component(
    model: v1.ModelStub,
    *,
    parent_id: int = 0,
    name: str | None = None,
    acl: Sequence[v1.AclEntry] = (),
    caller: v1.Caller = ADMIN,
    description: str = "",
) -> v1.Component:
    """A component with a unique name (created by a global admin by default)."""
    return await model.create_component(
        v1.CreateComponentRequest(
            caller=caller,
            parent_id=parent_id,
            name=name or unique("comp"),
            description=description,
            acl=list(acl),
        )
    )


async def get_component(
    model: v1.ModelStub, component_id: int, caller: v1.Caller = ADMIN
) -> v1.Component:
    """Read a component by id."""
    return await model.get_component(
        v1.GetComponentRequest(caller=caller, component_id=component_id)
    )


async def component_children(
    model: v1.ModelStub, parent_id: int, *, caller: v1.Caller = ADMIN, archived: bool = False
) -> list[v1.Component]:
    """The components below ``parent_id`` (0: the whole tree) as ``caller`` lists them."""
    response = await model.list_components(
        v1.ListComponentsRequest(
            caller=caller,
            parent_id=parent_id,
            include_archived=archived,
            page=v1.PageRequest(page_size=1000),
        )
    )
    return response.components


async def component_by_path(
    model: v1.ModelStub, path: str, caller: v1.Caller = ADMIN
) -> v1.Component:
    """Read a component by path as ``caller``."""
    return await model.get_component(v1.GetComponentRequest(caller=caller, path=path))


async def update_component(
    model: v1.ModelStub,
    component: v1.Component,
    *paths: str,
    caller: v1.Caller = ADMIN,
    expected_version: int = 0,
) -> v1.Component:
    """Update the named fields of a component from ``component``."""
    return await model.update_component(
        v1.UpdateComponentRequest(
            caller=caller,
            component=component,
            update_mask=FieldMask(paths=list(paths)),
            expected_version=expected_version,
        )
    )


# ---- issues ----


async def make_issue(
    model: v1.ModelStub,
    component_id: int,
    *,
    caller: v1.Caller = ALICE,
    title: str | None = None,
    description: str = "",
    status: v1.Status = v1.Status.UNSPECIFIED,
    priority: v1.Priority = v1.Priority.UNSPECIFIED,
    severity: v1.Severity = v1.Severity.UNSPECIFIED,
    issue_type: v1.IssueType = v1.IssueType.UNSPECIFIED,
    assignee: str = "",
    verifier: str = "",
    parent_id: int = 0,
    duplicate_of_id: int = 0,
    cc: Sequence[str] = (),
    hotlist_ids: Sequence[int] = (),
    blocking_ids: Sequence[int] = (),
    blocked_by_ids: Sequence[int] = (),
    idempotency_key: str = "",
) -> v1.Issue:
    """Create an issue; only ``component_id`` is needed, the title is unique."""
    return await model.create_issue(
        v1.CreateIssueRequest(
            caller=caller,
            fields=v1.IssueFields(
                title=title if title is not None else unique("Issue"),
                status=status,
                priority=priority,
                severity=severity,
                type=issue_type,
                component_id=component_id,
                assignee=assignee,
                verifier=verifier,
                parent_id=parent_id,
                duplicate_of_id=duplicate_of_id,
            ),
            description=description,
            cc=list(cc),
            hotlist_ids=list(hotlist_ids),
            blocking_ids=list(blocking_ids),
            blocked_by_ids=list(blocked_by_ids),
            idempotency_key=idempotency_key,
        )
    )


async def get_issue(model: v1.ModelStub, issue_id: int, caller: v1.Caller = ADMIN) -> v1.Issue:
    """Read an issue (as a global admin unless told otherwise)."""
    return await model.get_issue(v1.GetIssueRequest(caller=caller, issue_id=issue_id))


#: An IssueDelta whose update_mask names exactly the scalar fields given; the
#: contracts build every delta (bad ones included) with the public helper.
delta = issue_delta


class Changed(NamedTuple):
    """What a successful ChangeIssue returned: the issue after it, and its entry."""

    issue: v1.Issue
    entry: v1.HistoryEntry


async def change(
    model: v1.ModelStub,
    issue: v1.Issue,
    the_delta: v1.IssueDelta | None = None,
    *,
    comment: str = "",
    caller: v1.Caller = ALICE,
    expected_version: int | None = None,
) -> Changed:
    """Change ``issue`` against the version it was read at."""
    response = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=caller,
            issue_id=issue.id,
            expected_version=issue.version if expected_version is None else expected_version,
            delta=the_delta or v1.IssueDelta(),
            comment=comment,
        )
    )
    assert response.issue is not None, "ChangeIssue returned no issue"
    assert response.entry is not None, "ChangeIssue returned no entry"
    return Changed(response.issue, response.entry)


async def history(
    model: v1.ModelStub, issue_id: int, caller: v1.Caller = ADMIN, page_size: int = 500
) -> list[v1.HistoryEntry]:
    """Every history entry of an issue, oldest first, across all pages."""
    entries: list[v1.HistoryEntry] = []
    token = ""
    for _ in range(10_000):
        page = await model.list_history(
            v1.ListHistoryRequest(
                caller=caller,
                issue_id=issue_id,
                page=v1.PageRequest(page_size=page_size, page_token=token),
            )
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries
    raise AssertionError("history paging never ended")


def changes_by_field(entry: v1.HistoryEntry) -> dict[str, v1.FieldChange]:
    """An entry's field changes keyed by field name (each field at most once)."""
    fields = [c.field for c in entry.changes]
    assert len(fields) == len(set(fields)), f"a field changes twice in one entry: {fields}"
    return {c.field: c for c in entry.changes}


# ---- state as the history renders it ----

State = dict[str, "str | frozenset[str]"]


def render_issue(issue: v1.Issue) -> State:
    """An issue's fields rendered as FieldChange values (the contract's format)."""

    def ref(value: int) -> str:
        return str(value) if value else ""

    return {
        "title": issue.title,
        "status": issue.status.name or "",
        "priority": issue.priority.name or "",
        "severity": issue.severity.name or "",
        "type": issue.type.name or "",
        "component_id": str(issue.component_id),
        "assignee": issue.assignee,
        "verifier": issue.verifier,
        "parent_id": ref(issue.parent_id),
        "duplicate_of_id": ref(issue.duplicate_of_id),
        "cc": frozenset(issue.cc),
        "hotlist_ids": frozenset(str(i) for i in issue.hotlist_ids),
        "blocking_ids": frozenset(str(i) for i in issue.blocking_ids),
        "blocked_by_ids": frozenset(str(i) for i in issue.blocked_by_ids),
    }


def replay(entries: Iterable[v1.HistoryEntry]) -> State:
    """Apply every entry from an empty issue, checking each old value on the way.

    A scalar change must name the value the field had before it; a list change
    may add only absent members and remove only present ones.
    """
    state: State = {name: "" for name in SCALAR_FIELDS}
    state.update({name: frozenset() for name in LIST_FIELDS})
    for entry in entries:
        for fc in entry.changes:
            where = f"entry {entry.version}, field {fc.field}"
            if fc.field in LIST_FIELDS:
                current = state[fc.field]
                assert isinstance(current, frozenset)
                added, removed = set(fc.added), set(fc.removed)
                assert not added & current, f"{where}: adds present members {added & current}"
                assert removed <= current, f"{where}: removes absent members {removed - current}"
                state[fc.field] = (current | added) - removed
            else:
                assert fc.field in SCALAR_FIELDS, f"{where}: not a field of an issue"
                assert state[fc.field] == fc.old_value, (
                    f"{where}: old_value {fc.old_value!r} but the field was {state[fc.field]!r}"
                )
                assert fc.old_value != fc.new_value, f"{where}: a change to the same value"
                state[fc.field] = fc.new_value
    return state


# ---- search ----


def eq(field: v1.SearchField, *values: SearchScalar) -> v1.SearchNode:
    """``field:value[,value...]``."""
    return term(field, v1.SearchOperator.EQ, *values)


def in_subtree(component_id: int) -> v1.SearchNode:
    """``componentid:<id>+``."""
    return term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, component_id, include_subtree=True)


def within(root_id: int, node: v1.SearchNode | None = None) -> v1.SearchNode:
    """Restrict a filter to one test's own component tree."""
    if node is None:
        return in_subtree(root_id)
    return all_of(in_subtree(root_id), node)


def sort(field: v1.SortField, *, descending: bool = False) -> v1.SortKey:
    """One sort key."""
    return v1.SortKey(field=field, descending=descending)


async def search_page(
    model: v1.ModelStub,
    node: v1.SearchNode,
    *,
    caller: v1.Caller = ADMIN,
    order: Sequence[v1.SortKey] = (),
    page_size: int = 0,
    page_token: str = "",
) -> v1.SearchIssuesResponse:
    """One page of a search."""
    return await model.search_issues(
        v1.SearchIssuesRequest(
            caller=caller,
            query=v1.StructuredQuery(filter=node, order_by=list(order)),
            page=v1.PageRequest(page_size=page_size, page_token=page_token),
        )
    )


async def search_all(
    model: v1.ModelStub,
    node: v1.SearchNode,
    *,
    caller: v1.Caller = ADMIN,
    order: Sequence[v1.SortKey] = (),
    page_size: int = 500,
) -> list[v1.Issue]:
    """Every result of a search, across pages, in result order."""
    issues: list[v1.Issue] = []
    token = ""
    for _ in range(10_000):
        page = await search_page(
            model, node, caller=caller, order=order, page_size=page_size, page_token=token
        )
        issues.extend(page.issues)
        token = page.next_page_token
        if not token:
            return issues
    raise AssertionError("search paging never ended")


async def search_ids(
    model: v1.ModelStub,
    node: v1.SearchNode,
    *,
    caller: v1.Caller = ADMIN,
    order: Sequence[v1.SortKey] = (),
) -> list[int]:
    """Ids of every result of a search, in result order."""
    return [i.id for i in await search_all(model, node, caller=caller, order=order)]


# ---- hotlists ----


async def make_hotlist(
    model: v1.ModelStub,
    *,
    caller: v1.Caller = ALICE,
    name: str | None = None,
    editors: Sequence[str] = (),
    private: bool = False,
) -> v1.Hotlist:
    """A hotlist owned by ``caller``."""
    return await model.create_hotlist(
        v1.CreateHotlistRequest(
            caller=caller, name=name or unique("hot"), editors=list(editors), private=private
        )
    )


async def hotlist_items(
    model: v1.ModelStub, hotlist_id: int, caller: v1.Caller = ALICE
) -> v1.ListHotlistItemsResponse:
    """The first (500-item) page of a hotlist."""
    return await model.list_hotlist_items(
        v1.ListHotlistItemsRequest(
            caller=caller, hotlist_id=hotlist_id, page=v1.PageRequest(page_size=500)
        )
    )


def kw(name: str, value: object) -> dict[str, Any]:
    """Keyword arguments naming a field chosen at run time (for parametrized tests)."""
    return {name: value}


def only(items: Sequence[T]) -> T:
    """The single element of ``items``."""
    assert len(items) == 1, f"expected exactly one, got {len(items)}: {items!r}"
    return items[0]
