"""``wire.encoded``: a message that is its bytes until read, then an ordinary message.

The codec here is grpclib's own ``ProtoCodec`` (what bugless' ``UpbCodec``
does for such a class is the same call, through :func:`wire.plan`).
"""

from __future__ import annotations

import copy
import datetime
import pickle

import pytest
from grpclib.encoding.proto import ProtoCodec
from hypothesis import given
from hypothesis import strategies as st

from bugless_proto import v1, wire

_WHEN = datetime.datetime(2026, 12, 4, 21, 0, 0, 250_001, tzinfo=datetime.UTC)


def _issue() -> v1.Issue:
    return v1.Issue(
        id=7,
        title="ünïcode",
        status=v1.Status.FIXED,
        cc=["u_a", "u_b"],
        created_at=_WHEN,
        custom_fields=[
            v1.CustomFieldValue(field_id=3, values=["u_c"], type=v1.CustomFieldType.USER)
        ],
    )


def test_the_codec_sends_the_bytes_without_decoding_them() -> None:
    # A title that is not UTF-8: no parser accepts it, so sending it proves
    # that nothing was decoded.
    garbage = b"\x12\x02\xff\xfe"
    message = wire.encoded(v1.Issue, garbage)
    assert isinstance(message, v1.Issue)
    assert isinstance(message, wire.Encoded)
    assert ProtoCodec().encode(message, v1.Issue) == garbage
    assert wire.encode(message) == garbage
    assert bytes(message) == garbage
    assert not wire.plan(type(message)).fast  # its own wire form, see wire's docstring
    assert isinstance(message, wire.Encoded)  # still not decoded
    with pytest.raises(UnicodeDecodeError):  # betterproto2's own error, as wire.decode's
        _ = message.title


def test_a_read_decodes_it_into_an_ordinary_message() -> None:
    plain = _issue()
    message = wire.encoded(v1.Issue, bytes(plain))
    assert message.title == "ünïcode"
    assert type(message) is v1.Issue
    assert not isinstance(message, wire.Encoded)
    assert message.created_at == _WHEN
    assert message.custom_fields[0].type is v1.CustomFieldType.USER
    assert message == plain
    assert bytes(message) == bytes(plain)


def test_a_change_before_or_after_a_read_is_sent() -> None:
    plain = _issue()
    changed = wire.encoded(v1.Issue, bytes(plain))
    changed.title = "changed"  # a write decodes first: the bytes would not show it
    assert type(changed) is v1.Issue
    assert wire.decode(v1.Issue, wire.encode(changed)).title == "changed"
    read = wire.encoded(v1.Issue, bytes(plain))
    read.cc.append("u_d")
    assert wire.decode(v1.Issue, wire.encode(read)).cc == ["u_a", "u_b", "u_d"]


def test_it_equals_a_message_of_its_class_with_the_same_fields() -> None:
    plain = _issue()
    data = bytes(plain)
    assert wire.encoded(v1.Issue, data) == plain
    assert plain == wire.encoded(v1.Issue, data)
    assert wire.encoded(v1.Issue, data) == wire.encoded(v1.Issue, data)
    assert wire.encoded(v1.Issue, data) != v1.Issue(id=7)
    assert v1.Issue(id=7) != wire.encoded(v1.Issue, data)
    assert not wire.encoded(v1.Issue, data) == v1.Attachment()  # noqa: SIM201 - __eq__ itself
    assert wire.encoded(v1.Issue, b"") == v1.Issue()


def test_repr_copy_and_pickle_read_the_fields() -> None:
    plain = _issue()
    assert repr(wire.encoded(v1.Issue, bytes(plain))) == repr(plain)
    assert copy.deepcopy(wire.encoded(v1.Issue, bytes(plain))) == plain
    assert copy.copy(wire.encoded(v1.Issue, bytes(plain))) == plain
    restored = pickle.loads(pickle.dumps(wire.encoded(v1.Issue, bytes(plain))))
    assert restored == plain
    assert type(restored) is v1.Issue


def test_one_class_per_message_class_and_a_lazy_from_string() -> None:
    first = wire.encoded(v1.SearchIssuesResponse, b"")
    second = wire.encoded(v1.SearchIssuesResponse, b"")
    assert type(first) is type(second)
    assert type(first).__name__ == "EncodedSearchIssuesResponse"
    reply = v1.SearchIssuesResponse(issues=[_issue()], next_page_token="t", total_count=1)
    lazy = type(first).FromString(bytes(reply))
    assert isinstance(lazy, wire.Encoded)
    assert lazy == reply


@given(
    when=st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [datetime.UTC, datetime.timezone(datetime.timedelta(hours=13, minutes=45))]
        ),
    )
)
def test_timestamp_fields_are_betterproto2s(when: datetime.datetime) -> None:
    upb_issue = wire.upb_class(v1.Issue)
    ours = upb_issue(modified_at=wire.timestamp_fields(when)).SerializeToString()
    assert ours == bytes(v1.Issue(modified_at=when))


def test_timestamp_fields_refuse_a_naive_datetime_as_betterproto2_does() -> None:
    with pytest.raises(ValueError, match="timezone aware"):
        wire.timestamp_fields(datetime.datetime(2026, 1, 1))
