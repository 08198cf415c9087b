"""A received message's upb form (:mod:`bugless_proto.wire_received`).

The Model keys a search page on its query's bytes, written by upb from the
request it read rather than from the decoded query converted back: these
tests hold the two to the same bytes (random requests, input an encoder
would not write, unknown fields), and the kept form to the message it was
decoded with, in the context that decoded it.
"""

from __future__ import annotations

import asyncio

from google.protobuf.descriptor import Descriptor
from hypothesis import HealthCheck, given, settings
from test_wire import assert_same, messages

from bugless_proto import v1, wire, wire_received

wire_received.keep_received(v1.SearchIssuesRequest)

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _query_bytes(request: v1.SearchIssuesRequest) -> bytes:
    """What the Model keys a page on (``_search_calls._query_bytes``) when it has the form."""
    upb = wire_received.received_form(request)
    assert upb is not None
    data: bytes = upb.query.SerializeToString()
    return data


@_SETTINGS
@given(request=messages(v1.SearchIssuesRequest, unknown=False))
def test_a_received_query_is_written_as_the_decoded_query_is_encoded(
    request: v1.SearchIssuesRequest,
) -> None:
    data = wire.encode(request)
    decoded = wire_received.decode(v1.SearchIssuesRequest, data)
    assert_same(decoded, wire.decode(v1.SearchIssuesRequest, data))
    assert _query_bytes(decoded) == wire.encode(decoded.query or v1.StructuredQuery())


@_SETTINGS
@given(
    first=messages(v1.SearchIssuesRequest, unknown=False),
    second=messages(v1.SearchIssuesRequest, unknown=False),
)
def test_merged_input_is_written_as_its_decoded_query_is_encoded(
    first: v1.SearchIssuesRequest, second: v1.SearchIssuesRequest
) -> None:
    """Two requests joined (merged by protobuf's rule): input no encoder writes for one."""
    data = wire.encode(first) + wire.encode(second)
    decoded = wire_received.decode(v1.SearchIssuesRequest, data)
    assert _query_bytes(decoded) == wire.encode(decoded.query or v1.StructuredQuery())


@_SETTINGS
@given(request=messages(v1.SearchIssuesRequest, unknown=True))
def test_a_request_read_by_betterproto2_has_no_received_form(
    request: v1.SearchIssuesRequest,
) -> None:
    data = bytes(request)
    decoded = wire_received.decode(v1.SearchIssuesRequest, data)
    assert_same(decoded, v1.SearchIssuesRequest.parse(data))
    if wire_received.received_form(decoded) is None:
        return
    # upb read it: it carried no unknown fields after all.
    assert _query_bytes(decoded) == wire.encode(decoded.query or v1.StructuredQuery())


def test_only_the_last_decoded_message_of_this_context_has_its_form() -> None:
    one = v1.SearchIssuesRequest(query=v1.StructuredQuery(order_by=[v1.SortKey(descending=True)]))
    first = wire_received.decode(v1.SearchIssuesRequest, bytes(one))
    assert wire_received.received_form(first) is not None
    second = wire_received.decode(v1.SearchIssuesRequest, bytes(one))
    assert wire_received.received_form(first) is None
    assert wire_received.received_form(second) is not None
    assert wire_received.received_form(one) is None  # made in process
    assert wire_received.received_form(wire.decode(v1.SearchIssuesRequest, bytes(one))) is None

    async def elsewhere() -> object:
        return wire_received.received_form(second)

    async def decoding() -> object:
        mine = wire_received.decode(v1.SearchIssuesRequest, bytes(one))
        return wire_received.received_form(mine)

    async def both() -> tuple[object, object]:
        return await asyncio.create_task(elsewhere()), await asyncio.create_task(decoding())

    # Another task sees what its context held when it started; what it decodes stays its own.
    seen, own = asyncio.run(both())
    assert seen is not None
    assert own is not None
    assert wire_received.received_form(second) is not None


def _has_map(descriptor: Descriptor, seen: set[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry or _has_map(field.message_type, seen):
            return True
    return False


def test_a_query_holds_no_map_whose_entries_upb_could_write_in_either_order() -> None:
    """The Model's page key relies on it: a map's entries may be written in any order."""
    assert not _has_map(wire.upb_class(v1.StructuredQuery).DESCRIPTOR, set())


def test_a_class_not_read_by_upb_decodes_as_before_without_a_form() -> None:
    """A class with its own wire form (an encoded reply's) decodes as its plan says, keeps none."""
    page = v1.SearchIssuesResponse(issues=[v1.Issue(id=3, title="kept")], total_count=1)
    own = type(wire.encoded(v1.SearchIssuesResponse, bytes(page)))
    plan = wire.plan(own)
    assert not plan.fast
    message, upb = plan.decode_kept(bytes(page))
    assert upb is None
    assert message == page
    decoded = wire_received.decode(own, bytes(page))
    assert decoded == page
    assert wire_received.received_form(decoded) is None
