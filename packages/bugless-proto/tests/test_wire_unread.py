"""A received message's field left as its bytes until read (:mod:`bugless_proto.wire_unread`).

The Model keys a search page, and its query check, on the bytes of a query
left unread: these tests hold them to ``wire.encode``'s bytes of the query
they decode to (random requests, input an encoder would not write, unknown
fields), the message to ``wire.decode``'s once read, and a changed query to
an ordinary message (whose bytes are no longer offered).
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor
from hypothesis import HealthCheck, given, settings
from wire_support import assert_same, messages

from bugless_proto import v1, wire, wire_unread

# As the Model's search page names it (bugless_model_postgres._search_calls).
wire_unread.leave_unread(v1.SearchIssuesRequest, "query")

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encoded_query(request: v1.SearchIssuesRequest) -> bytes:
    """What the Model keys a page on for a query it has read: ``wire.encode`` of it."""
    return wire.encode(request.query if request.query is not None else v1.StructuredQuery())


def _read(request: v1.SearchIssuesRequest) -> tuple[bytes, v1.SearchIssuesRequest]:
    """The unread query's bytes (b'' without a query), then ``request`` with it read."""
    if request.query is None:
        return b"", request
    unread = wire_unread.unread_bytes(request.query)
    assert unread is not None
    request.query.order_by  # noqa: B018 - the read decodes it in place
    assert type(request.query) is v1.StructuredQuery
    assert wire_unread.unread_bytes(request.query) is None
    return unread, request


@_SETTINGS
@given(request=messages(v1.SearchIssuesRequest, unknown=False))
def test_an_unread_query_is_the_bytes_of_the_query_it_reads_as(
    request: v1.SearchIssuesRequest,
) -> None:
    data = wire.encode(request)
    unread, decoded = _read(wire_unread.decode(v1.SearchIssuesRequest, data))
    assert_same(decoded, wire.decode(v1.SearchIssuesRequest, data))
    assert unread == _encoded_query(decoded)


@_SETTINGS
@given(
    first=messages(v1.SearchIssuesRequest, unknown=False),
    second=messages(v1.SearchIssuesRequest, unknown=False),
)
def test_merged_input_reads_and_keys_as_upb_reads_it(
    first: v1.SearchIssuesRequest, second: v1.SearchIssuesRequest
) -> None:
    """Two requests joined (merged by protobuf's rule): input no encoder writes for one."""
    data = wire.encode(first) + wire.encode(second)
    unread, decoded = _read(wire_unread.decode(v1.SearchIssuesRequest, data))
    assert_same(decoded, wire.decode(v1.SearchIssuesRequest, data))
    assert unread == _encoded_query(decoded)


@_SETTINGS
@given(request=messages(v1.SearchIssuesRequest, unknown=True))
def test_unknown_fields_anywhere_read_and_key_as_betterproto2_would(
    request: v1.SearchIssuesRequest,
) -> None:
    data = bytes(request)
    unread, decoded = _read(wire_unread.decode(v1.SearchIssuesRequest, data))
    assert_same(decoded, v1.SearchIssuesRequest.parse(data))
    assert unread == _encoded_query(decoded)


def test_a_changed_query_is_an_ordinary_message_with_the_change() -> None:
    query = v1.StructuredQuery(order_by=[v1.SortKey(descending=True)])
    decoded = wire_unread.decode(v1.SearchIssuesRequest, bytes(v1.SearchIssuesRequest(query=query)))
    assert wire_unread.unread_bytes(decoded.query) == bytes(query)
    assert decoded.query is not None
    decoded.query.order_by = []
    assert wire_unread.unread_bytes(decoded.query) is None
    assert type(decoded.query) is v1.StructuredQuery
    assert wire.encode(decoded.query) == b""
    assert wire_unread.unread_bytes(v1.StructuredQuery()) is None


def test_a_request_without_a_query_has_none_and_only_a_message_field_is_left_unread() -> None:
    decoded = wire_unread.decode(v1.SearchIssuesRequest, bytes(v1.SearchIssuesRequest()))
    assert decoded.query is None
    for name in ("caller.user_id", "summary", "nothing"):
        with pytest.raises(ValueError, match="not a singular message field"):
            wire_unread.leave_unread(v1.SearchIssuesRequest, name)
    with pytest.raises(ValueError, match="not a singular message field"):
        wire_unread.leave_unread(v1.Issue, "created_at")  # a datetime, not a message


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
