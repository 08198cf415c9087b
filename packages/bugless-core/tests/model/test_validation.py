"""Shape checks reject bad requests with a message naming the field."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from typing import Any

import pytest

from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_core.model import _validation as check
from bugless_core.search.build import all_of, negate, term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ALICE = v1.Caller(user_id="u-alice", groups=["eng"])


def _create(**fields: object) -> v1.CreateIssueRequest:
    base: dict[str, Any] = {"title": "disk full", "component_id": 1}
    base.update(fields)
    return v1.CreateIssueRequest(caller=ALICE, fields=v1.IssueFields(**base))


def _change(delta: v1.IssueDelta | None = None, **kwargs: object) -> v1.ChangeIssueRequest:
    args: dict[str, Any] = {"caller": ALICE, "issue_id": 1, "expected_version": 1}
    args.update(kwargs)
    return v1.ChangeIssueRequest(delta=delta, **args)


def _term(
    field: v1.SearchField, op: v1.SearchOperator, *values: v1.SearchValue
) -> v1.StructuredQuery:
    return v1.StructuredQuery(
        filter=v1.SearchNode(term=v1.SearchTerm(field=field, op=op, values=list(values)))
    )


def test_a_valid_create_passes() -> None:
    check.check_create_issue(_create(priority=v1.Priority.P1, assignee="u-bob"))


@pytest.mark.parametrize(
    ("request_", "field", "fragment"),
    [
        (
            v1.CreateIssueRequest(fields=v1.IssueFields(title="t", component_id=1)),
            "caller.user_id",
            "required",
        ),
        (_create(title="   "), "fields.title", "must not be blank"),
        (_create(title="x" * 501), "fields.title", "at most 500"),
        (_create(component_id=0), "fields.component_id", "not a positive id"),
        (_create(component_id=-4), "fields.component_id", "not a positive id"),
        (_create(assignee="bob smith"), "fields.assignee", "whitespace"),
        (_create(parent_id=-1), "fields.parent_id", "0 for none"),
        (_create(title="nul\x00"), "fields.title", "NUL"),
    ],
)
def test_create_rejections_name_the_field(
    request_: v1.CreateIssueRequest, field: str, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        check.check_create_issue(request_)
    assert info.value.message.startswith(f"{field}: ")
    assert fragment in info.value.message
    assert info.value.metadata["field"] == field


def test_a_create_with_several_bad_fields_names_the_first_in_message_order() -> None:
    request_ = _create(title="", component_id=-1, assignee="two words", parent_id=-1)
    with pytest.raises(InvalidArgument) as info:
        check.check_create_issue(request_)
    assert info.value.metadata["field"] == "fields.title"


@pytest.mark.parametrize("seed", ["0", "1", "2", "3", "4", "5"])
def test_the_first_bad_field_named_does_not_follow_the_hash_seed(seed: str) -> None:
    # The fields were once checked in a frozenset's order, which follows the
    # process's string hash seed: replicas named different fields first.
    script = (
        "from bugless_core.model import _validation as check\n"
        "from bugless_proto import v1\n"
        "fields = v1.IssueFields(title='', component_id=-1, assignee='two words', parent_id=-1)\n"
        "try:\n"
        "    check.check_create_fields(v1.CreateIssueRequest(fields=fields))\n"
        "except Exception as exc:\n"
        "    print(exc.metadata['field'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "fields.title"


def test_unknown_enum_value_lists_the_known_ones() -> None:
    issue = v1.IssueFields.parse(bytes([0x18, 0x63]))  # priority = 99 on the wire
    request = v1.CreateIssueRequest(
        caller=ALICE, fields=v1.IssueFields(title="t", component_id=1, priority=issue.priority)
    )
    with pytest.raises(
        InvalidArgument, match=r"fields\.priority: 99 is not a known value; use one of P0"
    ):
        check.check_create_issue(request)


def test_duplicate_and_oversize_id_lists_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"blocking_ids\[1\]: id 5 is listed twice"):
        check.check_create_issue(
            v1.CreateIssueRequest(
                caller=ALICE,
                fields=v1.IssueFields(title="t", component_id=1),
                blocking_ids=[5, 5],
            )
        )
    with pytest.raises(InvalidArgument, match="has 501 ids; at most 500"):
        check.check_ids(list(range(1, 502)), "issue_ids", 500)


def test_change_needs_the_version_it_was_made_against() -> None:
    delta = v1.IssueDelta(
        fields=v1.IssueFields(priority=v1.Priority.P0), update_mask=FieldMask(paths=["priority"])
    )
    check.check_change_issue(_change(delta))
    with pytest.raises(InvalidArgument, match="expected_version: required"):
        check.check_change_issue(_change(delta, expected_version=0))


def test_empty_change_is_rejected_but_a_comment_alone_is_a_change() -> None:
    with pytest.raises(InvalidArgument, match="the change is empty"):
        check.check_change_issue(_change(v1.IssueDelta()))
    check.check_change_issue(_change(None, comment="still happening"))


@pytest.mark.parametrize(
    ("paths", "fragment"),
    [
        (["reporter"], "'reporter' cannot be changed here"),
        (["title", "title"], "a field is named twice"),
    ],
)
def test_delta_mask_paths_are_checked(paths: list[str], fragment: str) -> None:
    delta = v1.IssueDelta(fields=v1.IssueFields(title="t"), update_mask=FieldMask(paths=paths))
    with pytest.raises(InvalidArgument, match=fragment):
        check.check_change_issue(_change(delta))


def test_masked_title_must_not_be_blank() -> None:
    delta = v1.IssueDelta(fields=v1.IssueFields(), update_mask=FieldMask(paths=["title"]))
    with pytest.raises(InvalidArgument, match=r"delta\.fields\.title: required"):
        check.check_change_issue(_change(delta))


def test_adding_and_removing_the_same_member_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="u-bob is both added and removed"):
        check.check_change_issue(_change(v1.IssueDelta(cc_add=["u-bob"], cc_remove=["u-bob"])))


def test_batch_change_limit_is_stated() -> None:
    request = v1.BatchChangeIssuesRequest(
        caller=ALICE,
        issues=[v1.IssueVersion(issue_id=i, expected_version=1) for i in range(1, 102)],
        comment="bulk",
    )
    with pytest.raises(InvalidArgument, match="at most 100 are accepted"):
        check.check_batch_change(request)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (
            _term(v1.SearchField.PRIORITY, v1.SearchOperator.EQ, v1.SearchValue(text="p1")),
            "takes an integer",
        ),
        (_term(v1.SearchField.PRIORITY, v1.SearchOperator.EQ, v1.SearchValue(integer=7)), "0..4"),
        (
            _term(v1.SearchField.ASSIGNEE, v1.SearchOperator.LT, v1.SearchValue(text="u")),
            "cannot be compared",
        ),
        (
            _term(v1.SearchField.ASSIGNEE, v1.SearchOperator.NONE, v1.SearchValue(text="u")),
            "takes no values",
        ),
        (
            _term(v1.SearchField.STATUS, v1.SearchOperator.EQ, v1.SearchValue(text="DONE")),
            "is not a status",
        ),
        (
            _term(v1.SearchField.CREATED, v1.SearchOperator.GT, v1.SearchValue(integer=3)),
            "takes a time",
        ),
        (_term(v1.SearchField.ID, v1.SearchOperator.EQ), "at least one value"),
        (
            _term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, v1.SearchValue(text="Rocket>")),
            "a component id, or a name or path of names",
        ),
        (
            _term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, v1.SearchValue(time=None)),
            "takes an integer",
        ),
        (
            _term(v1.SearchField.UNSPECIFIED, v1.SearchOperator.EQ, v1.SearchValue(integer=1)),
            "required",
        ),
    ],
)
def test_bad_query_terms_are_rejected_with_their_path(
    query: v1.StructuredQuery, fragment: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        check.check_query(query, "query")
    assert info.value.message.startswith("query.filter.term")
    assert fragment in info.value.message


def test_good_query_passes() -> None:
    now = datetime.datetime.now(datetime.UTC)
    query = v1.StructuredQuery(
        filter=all_of(
            term(v1.SearchField.STATUS_CLASS, v1.SearchOperator.EQ, "open"),
            negate(term(v1.SearchField.ASSIGNEE, v1.SearchOperator.NONE)),
            term(v1.SearchField.CREATED, v1.SearchOperator.GT, now),
            term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, 3, include_subtree=True),
            # A component by name, or by path (the Model looks them up).
            term(v1.SearchField.COMPONENT, v1.SearchOperator.EQ, "Rocket", "Rocket > Engine"),
        ),
        order_by=[v1.SortKey(field=v1.SortField.PRIORITY)],
    )
    check.check_query(query, "query")


def test_sort_keys_are_bounded_by_the_stated_limit() -> None:
    def keys(count: int) -> v1.StructuredQuery:
        return v1.StructuredQuery(
            order_by=[
                v1.SortKey(field=v1.SortField.CUSTOM, custom_field_id=n)
                for n in range(1, count + 1)
            ]
        )

    check.check_query(keys(limits.MAX_SORT_KEYS), "query")
    with pytest.raises(InvalidArgument) as info:
        check.check_query(keys(limits.MAX_SORT_KEYS + 1), "query")
    assert info.value.message == f"query.order_by: at most {limits.MAX_SORT_KEYS} sort keys"


def test_query_depth_is_bounded() -> None:
    node = term(v1.SearchField.ID, v1.SearchOperator.EQ, 1)
    for _ in range(40):
        node = v1.SearchNode(negate=node)
    with pytest.raises(InvalidArgument, match="nests deeper than 32"):
        check.check_query(v1.StructuredQuery(filter=node), "query")


def test_component_names_cannot_contain_the_path_separator() -> None:
    with pytest.raises(InvalidArgument, match="contains '>'"):
        check.check_component_name("Storage>Disk", "name")


def test_acl_entry_needs_a_principal_and_a_role() -> None:
    with pytest.raises(InvalidArgument, match=r"acl\[0\]\.principal: set either user or group"):
        check.check_acl([v1.AclEntry(role=v1.Role.VIEWER)], "acl")
    with pytest.raises(InvalidArgument, match=r"acl\[0\]\.role: required"):
        check.check_acl([v1.AclEntry(principal=v1.Principal(group="eng"))], "acl")


def test_an_acl_names_each_principal_once() -> None:
    admin = v1.AclEntry(principal=v1.Principal(user="u-1"), role=v1.Role.ADMIN)
    viewer = v1.AclEntry(principal=v1.Principal(user="u-1"), role=v1.Role.VIEWER)
    group = v1.AclEntry(principal=v1.Principal(group="u-1"), role=v1.Role.VIEWER)
    check.check_acl([admin, group], "acl")  # a group may bear a user's id as its name
    with pytest.raises(
        InvalidArgument, match=r"acl\[2\]\.principal: user 'u-1' is already acl\[0\]"
    ):
        check.check_acl([admin, group, viewer], "acl")


def test_a_read_mask_names_issue_fields_only() -> None:
    check.check_read_mask(None, "read_mask")
    check.check_read_mask(FieldMask(paths=["title", "modified_at", "custom_fields"]), "read_mask")
    with pytest.raises(InvalidArgument) as caught:
        check.check_read_mask(FieldMask(paths=["title", "modified"]), "read_mask")
    assert caught.value.metadata == {"field": "read_mask.paths[1]"}
    assert "'modified' is no Issue field" in str(caught.value)
    assert "modified_at" in str(caught.value)
