"""A bot that stops reading its watch holds up no other client's calls.

The API passes the Model's Watch stream through at the pace its client
reads, and HTTP/2 gives the Model more credit only for what the API read.
Before, the watches shared the API's one connection to the Model, whose
window (4 MiB) one stream's unread events filled: a bot that stopped reading
a busy query watch held every other call of that replica to the Model
(everyone's) for as long as it kept the watch open. The bound below only
keeps a hang (the bug) from holding the suite; it asserts no speed.
"""

from __future__ import annotations

import asyncio
import secrets

from api_support import ConnectAs, signed_in

#: Each change's comment: events carry it, so a few hundred of them are far
#: more than the bot's and the Model's stream windows (4 MiB each) and
#: loopback's socket buffers together.
COMMENT_LENGTH = 60_000
CHANGES = 400
#: Generous for a call that needs no stream to move.
ANSWER_WITHIN = 20.0


async def test_a_stalled_watch_holds_up_no_other_call(connect_as: ConnectAs) -> None:
    robot, stalled = await signed_in(connect_as, "robot", "robot")
    component = await robot.create_component(f"Watched-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a busy issue nobody watches closely", component.id)
    events = stalled.watch(query=f"c:{component.id}", reconnect=False)
    try:
        marker = await anext(events)
        assert marker.subscribed
        # The bot reads nothing more while the changes pile up.
        for number in range(CHANGES):
            text = f"{number} " + secrets.token_hex(COMMENT_LENGTH // 2)
            async with asyncio.timeout(ANSWER_WITHIN):
                await robot.comment(issue.id, text)
        async with asyncio.timeout(ANSWER_WITHIN):
            seen = await robot.get_issue(issue.id)
        assert seen.version == issue.version + CHANGES
    finally:
        await events.aclose()
