"""Peers of two releases during a rolling upgrade: what crosses the wire between them.

docs/upgrades.md promises that a field a Model does not know yet (one a newer
frontend sends) is ignored: the call is answered as if the field were unset,
and nothing about it is checked. An older Model cannot run here, so the
stack's Model is sent a field under a number its schema lacks, which is what
an older Model sees of any field added after it.
"""

from __future__ import annotations

import secrets

import pytest
from api_support import Bots, ConnectAs

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_proto import v1, wire
from bugless_proto.google.protobuf import FieldMask

#: A field number BatchGetIssuesRequest does not have (length-delimited: tag 15 << 3 | 2).
_UNKNOWN_FIELD_TAG = b"\x7a"


async def test_a_request_field_the_model_does_not_know_is_answered_as_if_unset(
    bots: Bots, connect_as: ConnectAs
) -> None:
    """A read mask sent to a Model that predates it brings whole issues, and no check."""
    robot = connect_as("robot")
    me = await robot.whoami()
    assert me.user is not None
    component = await robot.create_component(f"Peers-{secrets.token_hex(3)}")
    issue = await robot.create_issue("whole", component.id, description="kept", cc=["boss"])
    caller = v1.Caller(user_id=me.user.user_id, groups=list(me.groups))
    mask = bytes(FieldMask(paths=["title", "colour"]))
    channel = bots.stack.model.channel()
    try:
        model = bots.stack.acting_model(v1.ModelStub(channel))
        known = v1.BatchGetIssuesRequest(
            caller=caller, issue_ids=[issue.id], read_mask=FieldMask(paths=["title", "colour"])
        )
        with pytest.raises(InvalidArgument) as refused:
            await call(model.batch_get_issues, known, timeout=30)
        # Decoded from bytes that carry it: the field rides along, unknown, and is sent.
        later_field = _UNKNOWN_FIELD_TAG + bytes([len(mask)]) + mask
        plain = bytes(v1.BatchGetIssuesRequest(caller=caller, issue_ids=[issue.id]))
        unknown = wire.decode(v1.BatchGetIssuesRequest, plain + later_field)
        assert wire.encode(unknown) == plain + later_field
        answered = await call(model.batch_get_issues, unknown, timeout=30)
    finally:
        channel.close()

    assert refused.value.metadata == {"field": "read_mask.paths[1]"}
    [got] = answered.issues
    assert (got.id, got.title, got.description, len(got.cc)) == (issue.id, "whole", "kept", 1)
    assert got.version == issue.version
