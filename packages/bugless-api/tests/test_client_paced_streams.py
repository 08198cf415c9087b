"""A caller that pauses a download or a watch can still make calls on the same client.

A :class:`~bugless_api.client.BuglessClient` reads a download (and a watch)
only as fast as its caller iterates, and HTTP/2 gives the API more credit
only for what was read: unread data holds its stream's window and the
connection's. On grpclib's defaults the connection's window is one stream's
(4 MiB), so a script that paused a large download to make another call
(``async for part in client.iter_attachment(...): await client.comment(...)``)
waited on itself: the call's answer could not come until the call's
deadline. The bounds below only keep a hang (the bug) from holding the
suite; they assert no speed.
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
#: How long the download is left unread before the call: the API's stream
#: fills the client's windows within it.
FILL = 2.0


async def test_a_download_paused_by_its_caller_holds_up_no_call_of_the_same_client(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Paced-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a large file read between calls", component.id)
    source = tmp_path / "big.bin"
    content = secrets.token_bytes(SIZE)
    source.write_bytes(content)
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None

    received = bytearray()
    parts = robot.iter_attachment(done.attachment.id)
    try:
        first = await anext(parts)
        assert first.attachment is not None
        await asyncio.sleep(FILL)  # the caller is busy elsewhere
        async with asyncio.timeout(ANSWER_WITHIN):
            seen = await robot.get_issue(issue.id)
        assert seen.title == "a large file read between calls"
        async with asyncio.timeout(ANSWER_WITHIN):
            async for part in parts:
                received += part.chunk or b""
    finally:
        await parts.aclose()  # type: ignore[attr-defined]
    assert bytes(received) == content
