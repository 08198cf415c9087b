"""A client that stops reading a download holds up no other client's calls.

The API passes the Model's download stream through at the pace its client
reads, and HTTP/2 gives the Model more credit only for what the API read.
Before, the API reached the Model over one connection whose window (4 MiB)
one stream's unread data filled, so every other call of that replica to the
Model (everyone's) waited while one client held a download open unread. The
bounds below only keep a hang (the bug) from holding the suite; they assert
no speed.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from api_support import ConnectAs, signed_in

#: Far more than a stream's window (4 MiB) and loopback's socket buffers.
SIZE = 32 * 1024 * 1024
#: Generous for a call that needs no transfer to finish.
ANSWER_WITHIN = 20.0
#: How long the stalled client waits before the others ask: the Model's
#: stream fills the windows on the way within it (asked earlier, the calls
#: could pass on the old code too, but never fail on the new).
FILL = 2.0


async def test_a_stalled_download_holds_up_no_other_call_and_no_other_download(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    robot, stalled = await signed_in(connect_as, "robot", "robot")
    component = await robot.create_component(f"Stall-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a large file nobody reads", component.id)
    source = tmp_path / "big.bin"
    content = secrets.token_bytes(SIZE)
    source.write_bytes(content)
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    attachment_id = done.attachment.id

    parts = stalled.iter_attachment(attachment_id)
    try:
        first = await anext(parts)
        assert first.attachment is not None
        assert first.attachment.size == SIZE
        await asyncio.sleep(FILL)  # and read nothing more
        async with asyncio.timeout(ANSWER_WITHIN):
            seen = await robot.get_issue(issue.id)
        assert seen.title == "a large file nobody reads"
        target = tmp_path / "copy.bin"
        async with asyncio.timeout(ANSWER_WITHIN):
            await robot.download_attachment(attachment_id, target)
        assert target.read_bytes() == content
    finally:
        await parts.aclose()  # type: ignore[attr-defined]
