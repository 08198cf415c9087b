"""A search page's reply encoded straight from its rows, without betterproto2 issues.

Served, a page's rows became ``v1.Issue`` messages (:func:`._convert.issue_from_row`),
which the gRPC codec then copied, field by field, into upb messages to encode
(:mod:`bugless_proto.wire`): two conversions of every field of 50 issues, a
quarter of the Model process's CPU on a list page (bench/JOURNAL.md, "Search
at 1M: the Model as deployed"). Here each row becomes the upb constructor's
keywords directly (one positional read of the record, no enum members, no
message objects) and the whole reply is one upb message, serialised once.

The bytes are those the betterproto2 path writes for the same rows
(``tests/test_search_wire.py`` compares the two on real rows): upb writes
fields in number order and leaves a field at its default out whether it was
passed or not, so passing zeros, empty strings and empty lists is the same
as leaving them out, as the codec does. Anything upb refuses makes
:func:`reply_bytes` return None, and the caller takes the betterproto2 path
for the whole page (as the codec falls back to betterproto2 for a message).
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from bugless_core import custom_fields as cf
from bugless_model_postgres._convert import caller_role
from bugless_model_postgres._custom_values import load_values
from bugless_proto import v1, wire

#: The upb class of the reply.
_REPLY = wire.upb_class(v1.SearchIssuesResponse)

#: Issue fields read as they are from the row's column of the same name, in
#: this order; then the columns of :data:`_OTHER`.
_PLAIN = (
    "id",
    "title",
    "status",
    "priority",
    "severity",
    "type",
    "component_id",
    "reporter",
    "assignee",
    "verifier",
    "parent_id",
    "duplicate_of_id",
    "description",
    "version",
    "comment_count",
    "external_id",
    "star_count",
    "starred",
    "muted",
    "has_children",
    "has_duplicates",
)
_OTHER = (
    "cc",
    "visible_hotlist_ids",
    "blocking_ids",
    "blocked_by_ids",
    "created_at",
    "modified_at",
    "closed_at",
    "effective_acl",
    "custom_fields",
    "custom_field_names",
)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _timestamp(value: datetime.datetime) -> dict[str, int]:
    """:func:`bugless_proto.wire.timestamp_fields`, from the difference's own parts.

    A ``timedelta`` keeps its days, seconds (0 to 86,399) and microseconds
    (0 to 999,999) normalised, so ``days * 86400 + seconds`` is already the
    floored count of whole seconds: no division of a microsecond count, no
    ``divmod`` (0.46 against 0.75 µs, twice a row). A naive ``value`` raises
    ``TypeError`` (the subtraction), which sends the page down the
    betterproto2 path, as upb's refusals do.
    """
    since = value - _EPOCH
    return {"seconds": since.days * 86400 + since.seconds, "nanos": since.microseconds * 1000}


@functools.lru_cache(maxsize=64)
def _reader(columns: tuple[str, ...]) -> Callable[[asyncpg.Record], tuple[Any, ...]]:
    """One C call reading a row's columns by position (a page statement's layout, once)."""
    where = {name: index for index, name in enumerate(columns)}
    return operator.itemgetter(*(where[name] for name in _PLAIN + _OTHER))


def _custom_values(raw: Any, names: Any) -> list[dict[str, Any]]:
    """A row's custom field values as upb keywords (its stored JSON and the names' JSON).

    :func:`._custom_values.value_messages`' values, field by field: by field
    id, the name and type of a field that no longer exists left empty.
    """
    stored = load_values(raw)
    if not stored:
        return []
    known_raw = json.loads(names) if isinstance(names, str) else names
    known = {int(k): (v[0], v[1]) for k, v in known_raw.items()}
    values = []
    for key in sorted(stored, key=int):
        field_id = int(key)
        name, kind = known.get(field_id, ("", 0))
        values.append(
            {
                "field_id": field_id,
                "values": cf.from_stored(stored[key]),
                "name": name,
                "type": kind,
            }
        )
    return values


@functools.lru_cache(maxsize=4096)
def _remembered_values(raw: str, names: str) -> tuple[dict[str, Any], ...]:
    """:func:`_custom_values` of two JSON texts, remembered (only read, never changed).

    Issues hold few distinct custom values: the 1,000,000-issue benchmark
    database's 200,000 issues with values hold 71 distinct texts (an enum
    field's options), and a field's name and type come with the same text
    for every issue. The key is both texts, so a renamed field, a changed
    type or a deleted one is a new key, never a stale answer. Parsing
    both texts per row was a third of a 50-issue page's conversion.
    """
    return tuple(_custom_values(raw, names))


def reply_bytes(
    caller: v1.Caller,
    rows: Sequence[asyncpg.Record],
    size: int,
    *,
    next_page_token: str,
    total_count: int,
    total_is_lower_bound: bool,
) -> bytes | None:
    """The encoded ``SearchIssuesResponse`` of a page's rows, or None if upb refuses a value.

    The rows are :func:`._search_page.page_statement`'s; the issues are those
    :func:`._search_page.page_issues` keeps (the caller may view them), in
    page order, as :func:`._convert.issue_from_row` fills them.
    """
    try:
        issues = _issues(caller, rows, size) if rows[0]["id"] is not None else []
        reply = _REPLY(
            issues=issues,
            next_page_token=next_page_token,
            total_count=total_count,
            total_is_lower_bound=total_is_lower_bound,
        )
        data: bytes = reply.SerializeToString()
    except (ValueError, TypeError, OverflowError):
        return None
    return data


def _issues(caller: v1.Caller, rows: Sequence[asyncpg.Record], size: int) -> list[dict[str, Any]]:
    """The upb keywords of each issue on the page the caller may view.

    Only fields that differ from their defaults are passed: upb writes the
    same bytes either way, but parses every keyword it is given (passing
    all 28 cost twice as much as the message they make).
    """
    read = _reader(tuple(rows[0].keys()))
    plain, names_of_plain = len(_PLAIN), _PLAIN
    compress, stamp = itertools.compress, _timestamp
    roles: dict[Any, v1.Role | None] = {}
    issues: list[dict[str, Any]] = []
    for row in rows[:size]:
        values = read(row)
        (cc, hotlists, blocking, blocked_by, created, modified, closed, acl, custom, names) = (
            values[plain:]
        )
        key = acl if isinstance(acl, str) else json.dumps(acl, sort_keys=True)
        if key not in roles:
            roles[key] = caller_role(caller, acl)
        if roles[key] is None:
            continue
        # The plain columns whose values are not their defaults (in C: no
        # comprehension frame per row).
        fields = dict(compress(zip(names_of_plain, values, strict=False), values))
        if cc:
            fields["cc"] = sorted(cc)
        if hotlists:
            fields["hotlist_ids"] = sorted(hotlists)
        if blocking:
            fields["blocking_ids"] = sorted(blocking)
        if blocked_by:
            fields["blocked_by_ids"] = sorted(blocked_by)
        if created is not None:
            fields["created_at"] = stamp(created)
        if modified is not None:
            fields["modified_at"] = stamp(modified)
        if closed is not None:
            fields["closed_at"] = stamp(closed)
        if names is not None:
            if isinstance(custom, str) and isinstance(names, str):
                fields["custom_fields"] = _remembered_values(custom, names)
            else:
                fields["custom_fields"] = _custom_values(custom, names)
        issues.append(fields)
    return issues
