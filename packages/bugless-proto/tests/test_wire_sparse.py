"""Both decoders of the upb converter give betterproto2's objects, full or sparse.

A class with many fields is decoded by reading only the fields the upb
message lists (``ListFields``), a small one by reading every field
(``wire._SparseDecoder``, ``_Registry(sparse_from=)``). Here every class
goes through each decoder (a registry of its own forcing one), on random
messages and on the same messages with a random subset of their fields
left at the default, as a read mask leaves them (the web's list rows carry
9 of an Issue's 28 fields). The objects must equal betterproto2's own
parse, field for field, with the same ``__dict__`` order either way.
"""

from __future__ import annotations

import dataclasses
import datetime

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_sample import wiresample
from wire_support import SAMPLE_MESSAGES, V1_MESSAGES, assert_same, messages

from bugless_proto import v1, wire

#: One registry per decoder, each forcing it on every class.
DECODERS = {
    "every-field": wire._Registry(sparse_from=10**9),
    "fields-present": wire._Registry(sparse_from=0),
}


def _masked(message: betterproto2.Message, keep: set[str]) -> betterproto2.Message:
    """``message`` with only the fields in ``keep`` (the others at their defaults)."""
    return type(message)(**{name: getattr(message, name) for name in keep})


def _check(message: betterproto2.Message) -> None:
    cls = type(message)
    data = bytes(message)
    reference = cls.parse(data)
    orders = []
    for registry in DECODERS.values():
        plan = registry.plan(cls)
        assert plan.fast, plan.reason
        fallbacks = plan.fallbacks
        decoded = plan.decode(data)
        assert_same(decoded, reference)
        assert plan.fallbacks == fallbacks
        orders.append(list(decoded.__dict__))
    assert orders[0] == orders[1]


@pytest.mark.parametrize("cls", V1_MESSAGES + SAMPLE_MESSAGES, ids=lambda cls: cls.__name__)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_decoders_give_betterproto2s_objects_for_full_and_masked_messages(
    cls: type[betterproto2.Message], data: st.DataObject
) -> None:
    message = data.draw(messages(cls, unknown=False))
    _check(message)
    names = [field.name for field in dataclasses.fields(message)]
    keep = data.draw(st.sets(st.sampled_from(names))) if names else set()
    _check(_masked(message, keep))


def test_a_list_row_and_a_full_issue_decode_alike_both_ways() -> None:
    when = datetime.datetime(2026, 12, 3, 17, 0, 1, 250_000, tzinfo=datetime.UTC)
    row = v1.Issue(
        id=301,
        title="Rows carry what the columns show",
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P1,
        type=v1.IssueType.BUG,
        assignee="u-1",
        component_id=7,
        modified_at=when,
        version=4,
    )
    full = v1.Issue(
        id=302,
        title="Everything",
        severity=v1.Severity.S1,
        cc=["u-2", "u-3"],
        hotlist_ids=[1, 2],
        blocked_by_ids=[301],
        created_at=when,
        closed_at=when,
        custom_fields=[
            v1.CustomFieldValue(
                field_id=9, name="Team", values=["a", "b"], type=v1.CustomFieldType.ENUM_MULTI
            ),
            v1.CustomFieldValue(field_id=10),
        ],
        has_children=True,
    )
    empty = v1.Issue()
    page = v1.SearchIssuesResponse(issues=[row, full, empty], total_count=3)
    _check(page)
    for issue in (row, full, empty):
        _check(issue)
    decoded = DECODERS["fields-present"].plan(v1.SearchIssuesResponse).decode(bytes(page))
    assert isinstance(decoded, v1.SearchIssuesResponse)
    assert decoded.issues[0].cc == []
    assert decoded.issues[2].custom_fields == []
    # Each message has containers of its own, never a shared default.
    decoded.issues[0].cc.append("x")
    assert decoded.issues[2].cc == []
    # Nor one kept between decodes (the defaults are copied from one dict).
    decoded.issues[2].hotlist_ids.append(1)
    decoded.issues[2].custom_fields.append(v1.CustomFieldValue(field_id=1))
    again = DECODERS["fields-present"].plan(v1.SearchIssuesResponse).decode(bytes(page))
    assert isinstance(again, v1.SearchIssuesResponse)
    assert again.issues[2].hotlist_ids == []
    assert again.issues[2].custom_fields == []
    assert again.issues[0].cc == []


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_unknown_fields_still_go_through_betterproto2_with_the_fields_present_decoder(
    data: st.DataObject,
) -> None:
    message = data.draw(messages(wiresample.Node, unknown=True))
    data_bytes = bytes(message)
    decoded = DECODERS["fields-present"].plan(wiresample.Node).decode(data_bytes)
    assert_same(decoded, wiresample.Node.parse(data_bytes))
