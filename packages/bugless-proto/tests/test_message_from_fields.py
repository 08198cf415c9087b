"""``wire.message_from_fields``: the message its constructor makes, without the constructor."""

from __future__ import annotations

from bugless_proto import v1
from bugless_proto.wire import decode, encode, message_from_fields


def test_a_message_from_its_fields_equals_and_encodes_as_the_constructed_one() -> None:
    made = message_from_fields(
        v1.CustomFieldValue,
        {"field_id": 3, "values": ["a", "b"], "name": "Found In", "type": v1.CustomFieldType.TEXT},
    )
    constructed = v1.CustomFieldValue(
        field_id=3, values=["a", "b"], name="Found In", type=v1.CustomFieldType.TEXT
    )
    assert made == constructed
    assert vars(made) == vars(constructed)  # the unknown-field bytes too
    assert encode(made) == bytes(constructed)
    assert decode(v1.CustomFieldValue, encode(made)) == constructed
