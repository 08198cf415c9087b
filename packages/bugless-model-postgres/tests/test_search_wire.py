"""A served search page's bytes, encoded from its rows, are those of its messages.

``search_issues_reply`` (what the servicer sends) must encode exactly what
``search_issues`` returns, as the gRPC codec encodes it: real rows of a real
PostgreSQL, every summary field, read masks, custom field values, relation
flags, hotlists, stars and mutes, restricted components and page tokens.
"""

from __future__ import annotations

import datetime
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from write_support import open_and_restricted

from bugless_core.search.build import term
from bugless_model_postgres import PostgresBackend, _search_wire
from bugless_proto import v1, wire
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="root", admin=True)
_VIEWER = v1.Caller(user_id="viewer")
F = v1.SearchField


@pytest.fixture(scope="module")
async def world(bugless_model_backend: PostgresBackend) -> str:
    """Issues in an open and a restricted component, with every field the rows carry."""
    b = bugless_model_backend
    tag, open_one, secret = await open_and_restricted(b, "w", v1.Principal(user="viewer"))
    fields: list[int] = []
    for kind, options in (
        (v1.CustomFieldType.ENUM_MULTI, ["a", "b", "c"]),
        (v1.CustomFieldType.TEXT, []),
        (v1.CustomFieldType.INTEGER, []),
    ):
        field = await b.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN,
                component_id=open_one.id,
                name=f"{kind.name} {tag}",
                type=kind,
                options=options,
            )
        )
        fields.append(field.id)
    public = await b.create_hotlist(v1.CreateHotlistRequest(caller=ADMIN, name=f"pub-{tag}"))
    private = await b.create_hotlist(
        v1.CreateHotlistRequest(caller=ADMIN, name=f"priv-{tag}", private=True)
    )
    made: list[int] = []
    for n in range(23):
        component = secret.id if n % 5 == 4 else open_one.id
        custom = []
        if component == open_one.id and n % 3:
            custom = [
                v1.CustomFieldValue(field_id=fields[0], values=["c", "a"][: n % 3]),
                v1.CustomFieldValue(field_id=fields[1], values=[f"text é {n % 2}"]),
            ]
            if n % 4 == 1:
                custom.append(v1.CustomFieldValue(field_id=fields[2], values=[str(-n)]))
        issue = await b.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(
                    title=f"wire {tag} issue {n}" + " ü" * (n % 2),
                    component_id=component,
                    status=v1.Status(1 + n % 5),
                    priority=v1.Priority(n % 5),
                    severity=v1.Severity(n % 5),
                    type=v1.IssueType(n % 4),
                    assignee="viewer" if n % 2 else "",
                    verifier="root" if n % 3 == 0 else "",
                    parent_id=made[0] if n % 6 == 5 else 0,
                    duplicate_of_id=made[1] if n % 7 == 6 else 0,
                ),
                description=f"described {n}" if n % 2 else "",
                cc=["zed", "amy", f"u{n}"][: n % 4],
                blocking_ids=sorted(made[-2:], reverse=True) if n % 4 == 3 else [],
                custom_fields=custom,
            )
        )
        made.append(issue.id)
        if n == 2:  # closed by a change, not at creation
            await b.change_issue(
                v1.ChangeIssueRequest(
                    caller=ADMIN,
                    issue_id=issue.id,
                    expected_version=issue.version,
                    delta=v1.IssueDelta(
                        fields=v1.IssueFields(status=v1.Status.FIXED),
                        update_mask=FieldMask(paths=["status"]),
                    ),
                )
            )
    for hotlist in (public, private):
        await b.add_hotlist_items(
            v1.AddHotlistItemsRequest(caller=ADMIN, hotlist_id=hotlist.id, issue_ids=made[::3])
        )
    for issue_id in made[::4]:
        await b.star_issue(v1.StarIssueRequest(caller=ADMIN, issue_id=issue_id, starred=True))
    for issue_id in made[::3]:
        await b.set_issue_mute(v1.SetIssueMuteRequest(caller=ADMIN, issue_id=issue_id, muted=True))
    await b.set_issue_mute(v1.SetIssueMuteRequest(caller=_VIEWER, issue_id=made[1], muted=True))
    return tag


_MASKS = [
    [],
    ["title", "status", "assignee", "modified_at"],
    ["custom_fields", "hotlist_ids", "starred", "has_children", "has_duplicates"],
    ["muted", "title"],
    ["cc", "blocking_ids", "blocked_by_ids", "closed_at", "star_count", "external_id"],
    ["id"],
]
_CALLERS = [ADMIN, _VIEWER, v1.Caller(user_id="stranger"), v1.Caller()]
_ORDERS = [[], [v1.SortKey(field=v1.SortField.TITLE, descending=True)]]


async def _pages(b: PostgresBackend, request: v1.SearchIssuesRequest) -> int:
    """Walk every page of ``request`` through both paths; the number of issues seen."""
    seen = 0
    while True:
        plain = await b.search_issues(request)
        reply = await b.search_issues_reply(request)
        assert isinstance(reply, wire.Encoded)
        assert reply.SerializeToString() == wire.encode(plain)
        assert bytes(reply) == wire.encode(plain)
        seen += len(plain.issues)
        if not plain.next_page_token:
            return seen
        size = request.page.page_size if request.page else 0
        request.page = v1.PageRequest(page_size=size, page_token=plain.next_page_token)


async def test_reply_bytes_are_those_of_the_messages(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    b = bugless_model_backend
    seen = 0
    for mask, caller, order, summary, size in itertools.product(
        _MASKS, _CALLERS, _ORDERS, (False, True), (7, 50)
    ):
        query = v1.StructuredQuery(filter=term(F.TEXT, v1.SearchOperator.EQ, world), order_by=order)
        request = v1.SearchIssuesRequest(
            caller=caller,
            query=query,
            page=v1.PageRequest(page_size=size),
            summary=summary,
            read_mask=FieldMask(paths=mask) if mask else None,
        )
        seen += await _pages(b, request)
    assert seen > 0


async def test_an_empty_page_and_a_read_field(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    b = bugless_model_backend
    request = v1.SearchIssuesRequest(
        caller=ADMIN,
        query=v1.StructuredQuery(filter=term(F.TEXT, v1.SearchOperator.EQ, "zzq" + world)),
    )
    await _pages(b, request)
    request.query = None
    request.page = v1.PageRequest(page_size=5)
    plain = await b.search_issues(request)
    reply = await b.search_issues_reply(request)
    # Read in process, the reply is the messages a client decodes.
    assert reply.issues == plain.issues
    assert reply.next_page_token == plain.next_page_token
    assert reply.total_count == plain.total_count
    reply.total_count += 1
    assert wire.decode(v1.SearchIssuesResponse, bytes(reply)).total_count == plain.total_count + 1


async def test_a_renamed_field_is_sent_with_its_new_name(
    bugless_model_backend: PostgresBackend, world: str
) -> None:
    """Converted values are remembered by their texts: a rename is a new text, not a stale hit."""
    b = bugless_model_backend
    request = v1.SearchIssuesRequest(
        caller=ADMIN, query=v1.StructuredQuery(filter=term(F.TEXT, v1.SearchOperator.EQ, world))
    )
    before = await b.search_issues_reply(request)
    value = next(v for issue in before.issues for v in issue.custom_fields)
    renamed = f"renamed {world}"
    await b.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=value.field_id, name=renamed),
            update_mask=FieldMask(paths=["name"]),
        )
    )
    await _pages(b, request)
    after = await b.search_issues_reply(request)
    names = {
        v.name
        for issue in after.issues
        for v in issue.custom_fields
        if v.field_id == value.field_id
    }
    assert names == {renamed}


_INSTANTS = st.datetimes(
    min_value=datetime.datetime(1, 1, 2),
    max_value=datetime.datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [datetime.UTC, datetime.timezone(datetime.timedelta(hours=-7, minutes=-30))]
    ),
)


@given(created=_INSTANTS, closed=st.none() | _INSTANTS)
def test_timestamps_encode_as_betterproto2_encodes_them(
    created: datetime.datetime, closed: datetime.datetime | None
) -> None:
    upb_issue = wire.upb_class(v1.Issue)
    stamp = wire.timestamp_fields
    ours = upb_issue(id=1, created_at=stamp(created), closed_at=closed and stamp(closed))
    theirs = bytes(v1.Issue(id=1, created_at=created, closed_at=closed))  # betterproto2's own
    assert ours.SerializeToString() == theirs


@given(instant=_INSTANTS | st.datetimes(timezones=st.just(datetime.UTC)))
def test_a_row_timestamp_is_the_wire_modules_timestamp(instant: datetime.datetime) -> None:
    """The rows' own conversion floors to whole seconds as ``timestamp_fields`` does.

    Before the epoch too, where ``days`` is negative and the seconds and
    microseconds are not.
    """
    assert _search_wire._timestamp(instant) == wire.timestamp_fields(instant)
