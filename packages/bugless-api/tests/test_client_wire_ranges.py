"""The client refuses an integer its field cannot carry, whichever field, before sending.

betterproto2 encodes an out-of-range integer as its low bits, so the API
and the Model receive another, valid value and cannot tell: ``page_size``
``2**32`` arrived as 0 (the default page), an ``expected_version`` of
``2**64 + v`` as ``v`` (the change was applied). The client looks at every
integer of every request first and refuses with the field named, origin
client (the CLI's usage error, exit 2). Real API, real Model.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from api_support import ConnectAs

from bugless_core.cli import EXIT_USAGE, exit_status_of
from bugless_core.errors import InvalidArgument, RangeNotSatisfiable
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

INT32 = "int32 (-2147483648 to 2147483647)"
INT64 = "int64 (-9223372036854775808 to 9223372036854775807)"


async def test_out_of_range_integers_are_refused_naming_the_field(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    component = await robot.create_component(f"Ranges-{secrets.token_hex(3)}")
    issue = await robot.create_issue("an issue whose version must not wrap", component.id)

    with pytest.raises(InvalidArgument) as refused:
        await robot.search_issues("is:open", page_size=2**32)
    assert refused.value.message == f"page.page_size: 4294967296 is outside {INT32}"
    assert refused.value.metadata["origin"] == "client"
    assert exit_status_of(refused.value, answered_by_service=True) == EXIT_USAGE

    delta = v1.IssueDelta(
        fields=v1.IssueFields(title="wrapped"), update_mask=FieldMask(paths=["title"])
    )
    with pytest.raises(InvalidArgument) as refused:
        await robot.change_issue(issue.id, 2**64 + issue.version, delta)
    assert refused.value.message == (
        f"expected_version: {2**64 + issue.version} is outside {INT64}"
    )
    after = await robot.get_issue(issue.id)
    assert (after.version, after.title) == (issue.version, issue.title)

    with pytest.raises(InvalidArgument) as refused:
        await robot.list_history(issue.id, page_size=-(2**31) - 1)
    assert refused.value.message == f"page.page_size: {-(2**31) - 1} is outside {INT32}"

    with pytest.raises(InvalidArgument) as refused:
        async for _part in robot.iter_attachment(1, offset=2**63):
            pass
    assert refused.value.message == f"offset: {2**63} is outside {INT64}"


async def test_a_download_offset_past_the_end_is_out_of_range_with_the_size(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    """Through the API as from the Model: the end itself reads nothing, past it is refused.

    Before, the Model's refusal was INVALID_ARGUMENT about "the 10-byte blob":
    neither the attachment nor a status a client could act on.
    """
    robot = connect_as("robot")
    component = await robot.create_component(f"Ends-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a file resumed at and past its end", component.id)
    source = tmp_path / "ten.bin"
    source.write_bytes(b"0123456789")
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    attachment_id = done.attachment.id
    at_end = [part async for part in robot.iter_attachment(attachment_id, offset=10)]
    assert [p.attachment for p in at_end] == [done.attachment]
    with pytest.raises(RangeNotSatisfiable) as refused:
        async for _part in robot.iter_attachment(attachment_id, offset=11):
            pass
    assert refused.value.size == 10
    assert refused.value.message == (
        f"offset: 11 is past the end of attachment {attachment_id} (10 bytes); "
        "a download starts at 0 to 10"
    )
