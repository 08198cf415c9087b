"""A download whose client stopped reading releases its Model call.

The API reads the Model's download stream only as fast as its client reads,
and no deadline bounds a download, so before a client that stopped reading
held a Model stream (and its share of the transfer connection's window) for
as long as it kept the call open. ``--download-idle-seconds`` bounds that
wait, and only that wait: a client that keeps reading is never cut off.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, extra_api, signed_in

from bugless_core.errors import Unavailable

#: Far more than the stream windows and socket buffers between the API and
#: the client, so a stalled client leaves the API waiting on it.
SIZE = 32 * 1024 * 1024
IDLE = 1.0


async def _attached(connect_as: ConnectAs, tmp_path: Path) -> int:
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Idle-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a large file read slowly", component.id)
    source = tmp_path / "big.bin"
    source.write_bytes(secrets.token_bytes(SIZE))
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    return done.attachment.id


async def test_a_download_unread_for_the_idle_limit_fails_at_the_clients_next_read(
    bots: Bots, connect_as: ConnectAs, tmp_path: Path
) -> None:
    attachment_id = await _attached(connect_as, tmp_path)
    async with extra_api(bots, download_idle_seconds=IDLE) as running:
        stalled = connect_as("robot", port=running.port)
        parts = stalled.iter_attachment(attachment_id)
        received = 0

        async def read_the_rest() -> None:
            nonlocal received
            async for part in parts:
                received += len(part.chunk or b"")

        try:
            first = await anext(parts)
            assert first.attachment is not None
            await asyncio.sleep(IDLE * 3)  # and read nothing meanwhile
            with pytest.raises(Unavailable, match="the client read nothing for 1 s") as failed:
                await read_the_rest()
        finally:
            await parts.aclose()  # type: ignore[attr-defined]
        assert failed.value.reason == "DOWNLOAD_STALLED"
        assert received < SIZE


async def test_a_download_read_steadily_is_never_cut_by_the_idle_limit(
    bots: Bots, connect_as: ConnectAs, tmp_path: Path
) -> None:
    attachment_id = await _attached(connect_as, tmp_path)
    async with extra_api(bots, download_idle_seconds=IDLE) as running:
        reader = connect_as("robot", port=running.port)
        received = 0
        started = asyncio.get_running_loop().time()
        async for part in reader.iter_attachment(attachment_id):
            received += len(part.chunk or b"")
            await asyncio.sleep(0.02)  # slow, but never idle for IDLE
        assert received == SIZE
        # Longer in all than the idle limit: only waits count, not the whole.
        assert asyncio.get_running_loop().time() - started > IDLE
