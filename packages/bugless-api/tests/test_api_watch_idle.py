"""A watch whose bot stopped reading releases its Model call; the bot resumes without a loss.

The API passes a watch's events on only as fast as its bot reads, on a
channel to the Model the replica's watches share (32 stream windows). Before,
nothing bounded how long a bot that stopped reading kept its Model stream
and its share of that window, so 32 such watches (one script may open them)
held up every watch of the replica. ``--watch-idle-seconds`` bounds that
wait, and only that wait: the Model call is released, the bot's next read
fails, and the Python client resumes from its position, missing nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from api_support import Bots, ConnectAs, extra_api

from bugless_api.client import BuglessClient
from bugless_core.errors import Unavailable

IDLE = 1.0
#: Each change's comment: events carry it, so the changes below are far more
#: than the bot's stream window (4 MiB) and loopback's socket buffers.
COMMENT_LENGTH = 60_000
CHANGES = 150
#: Generous for a stream that has everything it needs.
WITHIN = 60.0


async def _pile_up(robot: BuglessClient, issue_id: int) -> None:
    """CHANGES large comments on the issue, numbered in their first word."""
    for number in range(CHANGES):
        await robot.comment(issue_id, f"{number} " + secrets.token_hex(COMMENT_LENGTH // 2))


def _number(comment: str) -> int:
    return int(comment.split(" ", 1)[0])


async def test_a_watch_unread_for_the_idle_limit_fails_at_the_bots_next_read(
    bots: Bots, connect_as: ConnectAs
) -> None:
    async with extra_api(bots, watch_idle_seconds=IDLE) as running:
        robot = connect_as("robot", port=running.port)
        stalled = connect_as("robot", port=running.port)
        component = await robot.create_component(f"Idle-{secrets.token_hex(3)}")
        issue = await robot.create_issue("a busy issue its bot stops reading", component.id)
        events = stalled.watch(query=f"c:{component.id}", reconnect=False)
        seen: list[int] = []

        async def read_the_rest() -> None:
            async with asyncio.timeout(WITHIN):
                async for event in events:
                    assert event.entry is not None
                    seen.append(_number(event.entry.comment))
                    if len(seen) == CHANGES:
                        return

        try:
            marker = await anext(events)
            assert marker.subscribed
            await _pile_up(robot, issue.id)
            await asyncio.sleep(IDLE * 3)  # and read nothing meanwhile
            with pytest.raises(Unavailable, match="the bot read nothing for 1 s") as failed:
                await read_the_rest()
        finally:
            await events.aclose()
        assert failed.value.reason == "WATCH_STALLED"
        assert len(seen) < CHANGES
        assert seen == list(range(len(seen)))


async def test_a_bot_that_stalled_resumes_and_misses_no_change(
    bots: Bots, connect_as: ConnectAs, caplog: pytest.LogCaptureFixture
) -> None:
    async with extra_api(bots, watch_idle_seconds=IDLE) as running:
        robot = connect_as("robot", port=running.port)
        stalled = connect_as("robot", port=running.port)
        component = await robot.create_component(f"Idle-{secrets.token_hex(3)}")
        issue = await robot.create_issue("a busy issue its bot comes back to", component.id)
        events = stalled.watch(query=f"c:{component.id}")
        seen: list[int] = []
        try:
            marker = await anext(events)
            assert marker.subscribed
            with caplog.at_level(logging.WARNING):
                await _pile_up(robot, issue.id)
                await asyncio.sleep(IDLE * 3)  # and read nothing meanwhile
                async with asyncio.timeout(WITHIN):
                    async for event in events:
                        assert event.entry is not None
                        seen.append(_number(event.entry.comment))
                        if len(seen) == CHANGES:
                            break
        finally:
            await events.aclose()
        assert seen == list(range(CHANGES))
        released = [r for r in caplog.records if "its model call is released" in r.getMessage()]
        assert len(released) == 1
        assert "read nothing for 1 s while events waited" in released[0].getMessage()
