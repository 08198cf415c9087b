"""Shape checks of Model requests, done once for every backend.

These checks need no data: required fields, lengths, ranges, enum values,
field-mask paths and the stated batch limits. Each failure is an
InvalidArgument whose message names the field (as a path into the request) and
what would be accepted, so a bot author can fix the call from the message
alone. Checks that need data (existence, ACLs, versions, cycles) belong to the
backend.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import betterproto2

from bugless_core import ids, limits
from bugless_core.errors import InvalidArgument
from bugless_core.issue_fields import ENUM_FIELDS, SCALAR_FIELDS
from bugless_core.search.enum_values import ENUM_SEARCH_FIELDS, search_value_member
from bugless_proto import v1

#: IssueFields names a delta's update_mask may contain.
ISSUE_MASK_PATHS = frozenset(SCALAR_FIELDS)
COMPONENT_MASK_PATHS = frozenset(
    {"name", "parent_id", "description", "archived", "acl", "template"}
)
HOTLIST_MASK_PATHS = frozenset({"name", "description", "editors", "private", "owner"})
SAVED_SEARCH_MASK_PATHS = frozenset({"name", "query", "readers", "columns"})

MAX_QUERY_NODES = 256
MAX_QUERY_DEPTH = 32


def _fail(path: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {problem}", metadata={"field": path})


def require_caller(caller: v1.Caller | None, path: str = "caller") -> None:
    """Every data call names who is calling; the ACLs depend on it."""
    if caller is None or not caller.user_id:
        raise _fail(f"{path}.user_id", "required: the Model needs to know who is calling")
    check_user_ref(caller.user_id, f"{path}.user_id", required=True)
    for i, group in enumerate(caller.groups):
        check_text(group, f"{path}.groups[{i}]", limits.MAX_USER_REFERENCE_LENGTH, required=True)


def check_text(value: str, path: str, max_length: int, *, required: bool = False) -> None:
    """A string field within its length; required ones not blank."""
    if required and not value.strip():
        raise _fail(path, "required and must not be blank")
    if len(value) > max_length:
        raise _fail(path, f"is {len(value)} characters long; at most {max_length} are accepted")
    if "\x00" in value:
        raise _fail(path, "must not contain NUL characters")


def check_user_ref(value: str, path: str, *, required: bool = False) -> None:
    """A user reference: an opaque id (Model) or username (API), no spaces."""
    check_text(value, path, limits.MAX_USER_REFERENCE_LENGTH, required=required)
    if value and value.split() != [value]:
        # split() drops every character str.isspace() accepts, in C: a
        # reference without one comes back whole and alone (a generator over
        # the characters cost ~1 us per reference, several per batch item).
        raise _fail(path, f"{value!r} is not a user reference (it contains whitespace)")


def check_id(value: int, path: str, *, allow_zero: bool = False) -> None:
    """Ids are in :data:`bugless_core.ids.ID_RANGE`; 0 only where it means "none"."""
    ids.check_id(value, path, allow_zero=allow_zero)


def check_ids(values: Sequence[int], path: str, max_count: int, *, required: bool = False) -> None:
    """A list of ids: bounded, positive, without repeats."""
    if required and not values:
        raise _fail(path, "at least one id is required")
    if len(values) > max_count:
        raise _fail(path, f"has {len(values)} ids; at most {max_count} are accepted per call")
    seen: set[int] = set()
    for i, value in enumerate(values):
        check_id(value, f"{path}[{i}]")
        if value in seen:
            raise _fail(f"{path}[{i}]", f"id {value} is listed twice")
        seen.add(value)


@functools.cache
def _known_values(members: type[enum.Enum]) -> frozenset[Any]:
    """The values of an enum's members, once per enum (every request checks a few)."""
    return frozenset(m.value for m in members)


def check_enum(value: enum.Enum, path: str, *, allow_unspecified: bool = True) -> None:
    """Known enum values only; UNSPECIFIED only where it means "default"."""
    members = type(value)
    known = _known_values(members)
    raw = value.value
    if raw not in known:
        names = ", ".join(m.name for m in members if m.value != 0)
        raise _fail(path, f"{raw} is not a known value; use one of {names}")
    if raw == 0 and not allow_unspecified:
        names = ", ".join(m.name for m in members if m.value != 0)
        raise _fail(path, f"required; use one of {names}")


def check_page(page: v1.PageRequest | None, path: str, max_size: int) -> None:
    """Page sizes within the call's maximum, tokens of sane length."""
    if page is None:
        return
    if page.page_size < 0 or page.page_size > max_size:
        raise _fail(f"{path}.page_size", f"{page.page_size} is outside 0..{max_size}")
    if len(page.page_token) > 4096:
        raise _fail(f"{path}.page_token", "is not a page token issued by this service")


def check_mask(
    mask: object, path: str, allowed: frozenset[str], *, required: bool = True
) -> list[str]:
    """Field-mask paths, each known, none repeated; returns them."""
    paths: list[str] = list(getattr(mask, "paths", None) or [])
    if required and not paths:
        raise _fail(path, f"name at least one field to change: {', '.join(sorted(allowed))}")
    for i, name in enumerate(paths):
        if name not in allowed:
            raise _fail(
                f"{path}.paths[{i}]",
                f"{name!r} cannot be changed here; use one of {', '.join(sorted(allowed))}",
            )
    if len(set(paths)) != len(paths):
        raise _fail(path, "a field is named twice")
    return paths


#: Issue field names a read_mask (SearchIssues, BatchGetIssues) may contain.
ISSUE_READ_PATHS = frozenset(v1.Issue.DESCRIPTOR.fields_by_name)


def check_read_mask(mask: object, path: str) -> None:
    """A read mask names Issue fields only (any number of them, none at all included)."""
    for i, name in enumerate(getattr(mask, "paths", None) or []):
        if name not in ISSUE_READ_PATHS:
            raise _fail(
                f"{path}.paths[{i}]",
                f"{name!r} is no Issue field; use {', '.join(sorted(ISSUE_READ_PATHS))}",
            )


def _check_user_list(values: Iterable[str], path: str) -> None:
    values = list(values)
    if len(values) > limits.MAX_LIST_DELTA:
        raise _fail(path, f"has {len(values)} entries; at most {limits.MAX_LIST_DELTA}")
    for i, value in enumerate(values):
        check_user_ref(value, f"{path}[{i}]", required=True)
    if len(set(values)) != len(values):
        raise _fail(path, "a user is listed twice")


def check_issue_fields(fields: v1.IssueFields, path: str, names: Iterable[str]) -> None:
    """The named scalar fields hold acceptable values.

    Each value is first tested by :data:`_FIELD_ACCEPTED` (a test that only
    accepts what :func:`_check_issue_field` accepts, and builds no path); a
    value it does not accept goes through the full check, which words the error.
    """
    for name in names:
        value = getattr(fields, name)
        if not _FIELD_ACCEPTED[name](value):
            _check_issue_field(value, f"{path}.{name}", name)


def _check_issue_field(value: Any, where: str, name: str) -> None:
    """One scalar field of an IssueFields, checked and, if it must be, refused."""
    if name == "title":
        check_text(value, where, limits.MAX_TITLE_LENGTH, required=True)
    elif name in ENUM_FIELDS:
        check_enum(value, where, allow_unspecified=name != "status")
    elif name == "component_id":
        check_id(value, where)
    elif name in {"assignee", "verifier"}:
        check_user_ref(value, where)
    else:  # parent_id, duplicate_of_id
        check_id(value, where, allow_zero=True)


def _title_accepted(value: object) -> bool:
    return (
        type(value) is str
        and len(value) <= limits.MAX_TITLE_LENGTH
        and "\x00" not in value
        and bool(value.strip())
    )


def _user_ref_accepted(value: object) -> bool:
    return (
        type(value) is str
        and len(value) <= limits.MAX_USER_REFERENCE_LENGTH
        and "\x00" not in value
        and (not value or value.split() == [value])
    )


def _id_accepted(value: object) -> bool:
    return type(value) is int and ids.MIN_ID <= value <= ids.MAX_ID


def _id_or_zero_accepted(value: object) -> bool:
    return type(value) is int and (value == 0 or ids.MIN_ID <= value <= ids.MAX_ID)


def _enum_accepted(members: type[enum.Enum], *, allow_unspecified: bool) -> Callable[[Any], bool]:
    """Accepts the members of ``members`` (an IntEnum: compared as ints, no ``.value``)."""
    known = _known_values(members) if allow_unspecified else _known_values(members) - {0}

    def accepted(value: object) -> bool:
        return type(value) is members and value in known

    return accepted


#: Per IssueFields field, a test that accepts a common good value without
#: building its path; what it does not accept, :func:`_check_issue_field` decides.
_FIELD_ACCEPTED: dict[str, Callable[[Any], bool]] = {
    name: (
        _title_accepted
        if name == "title"
        else _enum_accepted(ENUM_FIELDS[name], allow_unspecified=name != "status")
        if name in ENUM_FIELDS
        else _id_accepted
        if name == "component_id"
        else _user_ref_accepted
        if name in {"assignee", "verifier"}
        else _id_or_zero_accepted
    )
    for name in SCALAR_FIELDS
}


#: A create's status: any known one, UNSPECIFIED (the default) included.
_status_accepted = _enum_accepted(v1.Status, allow_unspecified=True)

#: The fields check_create_issue checks by name (status: UNSPECIFIED means the
#: default), in the message's order: a create with several bad fields is told
#: of the same one first on every replica (a set's order follows the hash seed).
_CREATE_CHECKED_PATHS = tuple(name for name in SCALAR_FIELDS if name != "status")


def check_create_issue(request: v1.CreateIssueRequest) -> None:
    """CreateIssue: a title and a component at least, defaults for the rest."""
    require_caller(request.caller)
    check_create_fields(request)


def check_create_fields(request: v1.CreateIssueRequest) -> None:
    """What :func:`check_create_issue` checks beyond the caller.

    BatchCreateIssues checks its caller once and each item with this.
    """
    # ``is None``, not ``or``: betterproto2's Message.__bool__ compares every
    # field with its default; an all-default IssueFields reads the same as a new one.
    fields = request.fields if request.fields is not None else v1.IssueFields()
    check_issue_fields(fields, "fields", _CREATE_CHECKED_PATHS)
    if not _status_accepted(fields.status):
        check_enum(fields.status, "fields.status")
    check_text(request.description, "description", limits.MAX_DESCRIPTION_LENGTH)
    # Empty lists pass these checks: most creates name no cc, hotlists or relations.
    if request.cc:
        _check_user_list(request.cc, "cc")
    if request.hotlist_ids:
        check_ids(request.hotlist_ids, "hotlist_ids", limits.MAX_LIST_DELTA)
    if request.blocking_ids:
        check_ids(request.blocking_ids, "blocking_ids", limits.MAX_LIST_DELTA)
    if request.blocked_by_ids:
        check_ids(request.blocked_by_ids, "blocked_by_ids", limits.MAX_LIST_DELTA)
    check_text(request.idempotency_key, "idempotency_key", limits.MAX_IDEMPOTENCY_KEY_LENGTH)
    if request.custom_fields:
        _check_custom_values(request.custom_fields, "custom_fields")


def check_delta(delta: v1.IssueDelta | None, path: str) -> bool:
    """A delta's shape; returns whether it changes anything."""
    if delta is None:
        return False
    paths = check_mask(delta.update_mask, f"{path}.update_mask", ISSUE_MASK_PATHS, required=False)
    if paths:
        check_issue_fields(delta.fields or v1.IssueFields(), f"{path}.fields", paths)
    lists: list[tuple[str, list[str] | list[int], list[str] | list[int]]] = [
        ("cc", delta.cc_add, delta.cc_remove),
        ("hotlist", delta.hotlist_add, delta.hotlist_remove),
        ("blocking", delta.blocking_add, delta.blocking_remove),
        ("blocked_by", delta.blocked_by_add, delta.blocked_by_remove),
    ]
    for name, added, removed in lists:
        for suffix, values in (("add", added), ("remove", removed)):
            where = f"{path}.{name}_{suffix}"
            if name == "cc":
                _check_user_list([str(v) for v in values], where)
            else:
                check_ids([int(v) for v in values], where, limits.MAX_LIST_DELTA)
        both = set(added) & set(removed)
        if both:
            raise _fail(
                f"{path}.{name}_add",
                f"{sorted(both, key=str)[0]} is both added and removed in one change",
            )
    _check_custom_values(delta.custom_fields_set, f"{path}.custom_fields_set")
    return bool(paths) or any(a or r for _, a, r in lists) or bool(delta.custom_fields_set)


def check_change_issue(request: v1.ChangeIssueRequest) -> None:
    """ChangeIssue: an id, the version it was made against, and some change."""
    require_caller(request.caller)
    check_id(request.issue_id, "issue_id")
    if request.expected_version <= 0:
        raise _fail(
            "expected_version",
            "required: pass the version of the issue you read (Issue.version)",
        )
    changes = check_delta(request.delta, "delta")
    check_text(request.comment, "comment", limits.MAX_COMMENT_LENGTH)
    if not changes and not request.comment.strip():
        raise _fail("delta", "the change is empty: change a field or add a comment")


def check_batch_change(request: v1.BatchChangeIssuesRequest) -> None:
    """BatchChangeIssues: up to MAX_BATCH_CHANGE distinct issues, one delta."""
    require_caller(request.caller)
    if not request.issues:
        raise _fail("issues", "at least one issue is required")
    check_ids([i.issue_id for i in request.issues], "issues.issue_id", limits.MAX_BATCH_CHANGE)
    for i, item in enumerate(request.issues):
        if item.expected_version <= 0:
            raise _fail(f"issues[{i}].expected_version", "required: the version you read")
    changes = check_delta(request.delta, "delta")
    check_text(request.comment, "comment", limits.MAX_COMMENT_LENGTH)
    if not changes and not request.comment.strip():
        raise _fail("delta", "the change is empty: change a field or add a comment")


def check_query(query: v1.StructuredQuery | None, path: str) -> None:
    """A structured query: bounded size and depth, every term well formed."""
    if query is None:
        return
    count = 0

    def visit(node: v1.SearchNode, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_QUERY_NODES:
            raise _fail(path, f"the query has more than {MAX_QUERY_NODES} nodes")
        if depth > MAX_QUERY_DEPTH:
            raise _fail(where, f"the query nests deeper than {MAX_QUERY_DEPTH} levels")
        kind, value = betterproto2.which_one_of(node, "kind")
        if kind in {"all_of", "any_of"}:
            assert isinstance(value, v1.SearchNodeList)
            for i, child in enumerate(value.nodes):
                visit(child, f"{where}.{kind}.nodes[{i}]", depth + 1)
        elif kind == "negate":
            assert isinstance(value, v1.SearchNode)
            visit(value, f"{where}.negate", depth + 1)
        elif kind == "term":
            assert isinstance(value, v1.SearchTerm)
            _check_term(value, f"{where}.term")

    if query.filter is not None:
        visit(query.filter, f"{path}.filter", 1)
    if len(query.order_by) > limits.MAX_SORT_KEYS:
        raise _fail(f"{path}.order_by", f"at most {limits.MAX_SORT_KEYS} sort keys")
    for i, key in enumerate(query.order_by):
        check_enum(key.field, f"{path}.order_by[{i}].field", allow_unspecified=False)
        if (key.field is v1.SortField.CUSTOM) != (key.custom_field_id != 0):
            raise _fail(
                f"{path}.order_by[{i}].custom_field_id",
                "a CUSTOM sort key names its field (a positive id); other keys name none",
            )
        check_id(key.custom_field_id, f"{path}.order_by[{i}].custom_field_id", allow_zero=True)


_INTEGER_FIELDS = frozenset(
    {
        v1.SearchField.PRIORITY,
        v1.SearchField.SEVERITY,
        v1.SearchField.COMPONENT,
        v1.SearchField.HOTLIST,
        v1.SearchField.ID,
        v1.SearchField.BLOCKING,
        v1.SearchField.BLOCKED_BY,
        v1.SearchField.PARENT,
        v1.SearchField.CANONICAL,
    }
)
_TIME_FIELDS = frozenset({v1.SearchField.CREATED, v1.SearchField.MODIFIED, v1.SearchField.CLOSED})
#: Counts: integers from 0 (``votecount:0``), not ids.
_COUNT_FIELDS = frozenset({v1.SearchField.STAR_COUNT})
_ORDERED_FIELDS = (
    _INTEGER_FIELDS - {v1.SearchField.COMPONENT, v1.SearchField.HOTLIST}
    | _TIME_FIELDS
    | _COUNT_FIELDS
)
_TEXT_FIELDS = frozenset(
    {
        v1.SearchField.TEXT,
        v1.SearchField.TITLE,
        v1.SearchField.COMMENT,
        v1.SearchField.EXTERNAL_ID,
        v1.SearchField.ATTACHMENT,
    }
)
_COMPARISONS = frozenset(
    {v1.SearchOperator.LT, v1.SearchOperator.LE, v1.SearchOperator.GT, v1.SearchOperator.GE}
)


def _check_term(term: v1.SearchTerm, where: str) -> None:
    check_enum(term.field, f"{where}.field", allow_unspecified=False)
    check_enum(term.op, f"{where}.op", allow_unspecified=False)
    field, op = term.field, term.op
    if field is v1.SearchField.CUSTOM:
        _check_custom_term(term, where)
        return
    if term.custom_field_id or term.custom_field_name or term.resolved_users:
        raise _fail(f"{where}.custom_field_id", "only CUSTOM terms name a custom field")
    if op in {v1.SearchOperator.ANY, v1.SearchOperator.NONE}:
        if term.values:
            raise _fail(f"{where}.values", f"{op.name} takes no values")
        return
    if not term.values:
        raise _fail(f"{where}.values", "at least one value is required")
    if len(term.values) > limits.MAX_LIST_DELTA:
        raise _fail(f"{where}.values", f"at most {limits.MAX_LIST_DELTA} values")
    if op in _COMPARISONS:
        if field not in _ORDERED_FIELDS:
            raise _fail(f"{where}.op", f"{field.name} cannot be compared with {op.name}")
        if len(term.values) != 1:
            raise _fail(f"{where}.values", "a comparison takes exactly one value")
    if term.include_subtree and field not in _SUBTREE_FIELDS:
        raise _fail(f"{where}.include_subtree", "only COMPONENT and PARENT terms have a subtree")
    if term.include_subtree and op is not v1.SearchOperator.EQ:
        raise _fail(f"{where}.include_subtree", "a subtree goes with EQ only")
    for i, value in enumerate(term.values):
        _check_value(field, value, f"{where}.values[{i}]")


_SUBTREE_FIELDS = frozenset({v1.SearchField.COMPONENT, v1.SearchField.PARENT})


def _check_custom_term(term: v1.SearchTerm, where: str) -> None:
    if (term.custom_field_id != 0) == bool(term.custom_field_name):
        raise _fail(f"{where}.custom_field_id", "name the custom field by id or by name (one)")
    check_id(term.custom_field_id, f"{where}.custom_field_id", allow_zero=True)
    check_text(term.custom_field_name, f"{where}.custom_field_name", limits.MAX_NAME_LENGTH)
    if term.include_subtree or term.phrase:
        raise _fail(f"{where}.include_subtree", "CUSTOM terms have no subtree and no phrase")
    if term.op in {v1.SearchOperator.ANY, v1.SearchOperator.NONE}:
        if term.values or term.resolved_users:
            raise _fail(f"{where}.values", f"{term.op.name} takes no values")
        return
    if not term.values or len(term.values) > limits.MAX_LIST_DELTA:
        raise _fail(f"{where}.values", f"1..{limits.MAX_LIST_DELTA} values")
    if term.op in _COMPARISONS and len(term.values) != 1:
        raise _fail(f"{where}.values", "a comparison takes exactly one value")
    if term.resolved_users and len(term.resolved_users) != len(term.values):
        raise _fail(f"{where}.resolved_users", "one entry per value, or none")
    for i, value in enumerate(term.values):
        kind, raw = betterproto2.which_one_of(value, "kind")
        if kind != "text" or not isinstance(raw, str) or not raw.strip():
            raise _fail(f"{where}.values[{i}]", "CUSTOM takes non-empty text values")
        check_text(raw, f"{where}.values[{i}]", limits.MAX_CUSTOM_FIELD_VALUE_LENGTH)
    for i, user in enumerate(term.resolved_users):
        check_user_ref(user, f"{where}.resolved_users[{i}]")


def _check_value(field: v1.SearchField, value: v1.SearchValue, where: str) -> None:
    if field in ENUM_SEARCH_FIELDS:
        try:
            search_value_member(field, value)
        except ValueError as exc:
            raise _fail(where, str(exc)) from None
        return
    kind, raw = betterproto2.which_one_of(value, "kind")
    if field in _COUNT_FIELDS:
        if kind != "integer" or not isinstance(raw, int) or not 0 <= raw <= ids.MAX_ID:
            raise _fail(where, f"{field.name} takes a whole number from 0 to {ids.MAX_ID}")
    elif field is v1.SearchField.COMPONENT and kind == "text":
        # A name, or a path from the top ("Rocket>Engine"): the backend looks it up.
        if not isinstance(raw, str) or not all(n.strip() for n in raw.split(">")):
            raise _fail(where, "COMPONENT takes a component id, or a name or path of names")
        check_text(raw, where, limits.MAX_QUERY_LENGTH)
    elif field in _INTEGER_FIELDS:
        if kind != "integer" or not isinstance(raw, int):
            raise _fail(where, f"{field.name} takes an integer value")
        ids.check_id(raw, where)
    elif field in _TIME_FIELDS:
        if kind != "time":
            raise _fail(where, f"{field.name} takes a time value")
    else:
        if kind != "text" or not isinstance(raw, str) or not raw:
            raise _fail(where, f"{field.name} takes a non-empty text value")
        if field in _TEXT_FIELDS:
            check_text(raw, where, limits.MAX_QUERY_LENGTH)
        elif field is v1.SearchField.STATUS_CLASS and raw not in {"open", "closed"}:
            raise _fail(where, f"{raw!r} is neither 'open' nor 'closed'")
        else:
            check_user_ref(raw, where, required=True)


def _check_custom_values(values: Sequence[v1.CustomFieldValue], path: str) -> None:
    """Custom field values of a create or delta: known ids, each once, bounded."""
    if len(values) > limits.MAX_CUSTOM_FIELDS_PER_CHANGE:
        raise _fail(path, f"at most {limits.MAX_CUSTOM_FIELDS_PER_CHANGE} custom fields a change")
    seen: set[int] = set()
    for i, item in enumerate(values):
        where = f"{path}[{i}]"
        check_id(item.field_id, f"{where}.field_id")
        if item.field_id in seen:
            raise _fail(where, f"custom field {item.field_id} is set twice")
        seen.add(item.field_id)
        if len(item.values) > limits.MAX_CUSTOM_FIELD_OPTIONS:
            raise _fail(f"{where}.values", f"at most {limits.MAX_CUSTOM_FIELD_OPTIONS} values")
        for j, value in enumerate(item.values):
            check_text(value, f"{where}.values[{j}]", limits.MAX_CUSTOM_FIELD_VALUE_LENGTH)


def check_acl(entries: Sequence[v1.AclEntry], path: str) -> None:
    """ACL entries: a principal and a role each, each principal once, bounded count.

    A principal listed twice would hold two roles, and which one counts is
    not what its editor meant: a "demotion" written as a second entry next
    to an ADMIN one leaves the person an admin. So the second is refused,
    naming the first.
    """
    if len(entries) > limits.MAX_ACL_ENTRIES:
        raise _fail(path, f"at most {limits.MAX_ACL_ENTRIES} entries")
    seen: dict[tuple[str, object], int] = {}
    for i, entry in enumerate(entries):
        check_principal(entry.principal, f"{path}[{i}].principal")
        check_enum(entry.role, f"{path}[{i}].role", allow_unspecified=False)
        assert entry.principal is not None  # check_principal refused an unset one
        principal = betterproto2.which_one_of(entry.principal, "kind")
        first = seen.setdefault(principal, i)
        if first != i:
            kind, value = principal
            raise _fail(
                f"{path}[{i}].principal",
                f"{kind} {value!r} is already {path}[{first}]; give each user or group one entry",
            )


def check_principal(principal: v1.Principal | None, path: str) -> None:
    """A principal names exactly one user or group."""
    kind, value = (
        betterproto2.which_one_of(principal, "kind") if principal is not None else ("", None)
    )
    if kind == "user" and isinstance(value, str):
        check_user_ref(value, f"{path}.user", required=True)
    elif kind == "group" and isinstance(value, str):
        check_text(value, f"{path}.group", limits.MAX_USER_REFERENCE_LENGTH, required=True)
    else:
        raise _fail(path, "set either user or group")


def check_component_name(name: str, path: str) -> None:
    """Component names are path segments: no '>' and not blank."""
    check_text(name, path, limits.MAX_NAME_LENGTH, required=True)
    if ">" in name:
        raise _fail(path, f"{name!r} contains '>', which separates path segments")
    if name != name.strip():
        raise _fail(path, "must not start or end with whitespace")
