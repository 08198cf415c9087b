"""The generated code is usable and the descriptors serve reflection."""

from __future__ import annotations

import datetime

import pytest
from google.protobuf.descriptor import FieldDescriptor

from bugless_proto import DESCRIPTOR_POOL, v1
from bugless_proto.google.protobuf import FieldMask

SERVICES = {
    "bugless.v1.Model",
    "bugless.v1.Authenticator",
    "bugless.v1.Account",
    "bugless.v1.Issues",
    "bugless.v1.Components",
    "bugless.v1.Hotlists",
    "bugless.v1.SavedSearches",
}
FILES = ["api", "auth", "common", "issue", "model", "search", "tracker"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_is_in_the_descriptor_pool_for_reflection(service: str) -> None:
    descriptor = DESCRIPTOR_POOL.FindServiceByName(service)
    assert descriptor.methods


@pytest.mark.parametrize("name", FILES)
def test_every_enum_starts_with_unspecified_zero(name: str) -> None:
    file = DESCRIPTOR_POOL.FindFileByName(f"bugless/v1/{name}.proto")
    for enum in file.enum_types_by_name.values():
        assert enum.values[0].number == 0
        assert enum.values[0].name.endswith("_UNSPECIFIED"), enum.name


def test_issue_round_trips_through_the_wire_format() -> None:
    now = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
    issue = v1.Issue(
        id=42,
        title="disk full",
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P1,
        cc=["u2", "u3"],
        blocking_ids=[7],
        created_at=now,
        version=3,
    )
    parsed = v1.Issue.parse(bytes(issue))
    assert parsed == issue
    assert parsed.created_at == now


def test_delta_carries_a_field_mask() -> None:
    delta = v1.IssueDelta(
        fields=v1.IssueFields(priority=v1.Priority.P0),
        update_mask=FieldMask(paths=["priority"]),
        cc_add=["u9"],
    )
    assert v1.IssueDelta.parse(bytes(delta)).update_mask == FieldMask(paths=["priority"])


def test_model_requests_carry_the_caller_first() -> None:
    # Field 1 of every Model request is the caller: the API frontend relies on
    # it to reject requests that try to set the caller themselves. A
    # client-streaming call's first message is a header (field 1) whose
    # field 1 is the caller.
    service = DESCRIPTOR_POOL.FindServiceByName("bugless.v1.Model")
    for method in service.methods:
        if method.input_type.name == "GetServerInfoRequest":
            continue
        field = method.input_type.fields_by_number[1]
        if method.client_streaming:
            assert field.name == "header", method.name
            field = field.message_type.fields_by_number[1]
        assert field.name == "caller", method.name
        assert field.type == FieldDescriptor.TYPE_MESSAGE
        assert field.message_type.full_name == "bugless.v1.Caller"


def test_stub_and_base_exist_for_every_service() -> None:
    for service in SERVICES:
        short = service.rsplit(".", 1)[1]
        assert hasattr(v1, f"{short}Stub")
        assert hasattr(v1, f"{short}Base")
