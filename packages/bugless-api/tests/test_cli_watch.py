"""``bugless issue watch`` against real services: the lines and ``--json`` events it prints.

As in test_cli_commands, data is made through the Python client and the
command runs as a ``bugless`` subprocess configured by ``BUGLESS_*`` variables.
"""

from __future__ import annotations

import asyncio
import json

from api_support import ConnectAs, bugless_cli, new_component, new_issues, signed_in

from bugless_api.client import BuglessClient
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_proto import v1


async def test_watch_prints_each_change_as_a_line(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Watch")
    (issue,) = await new_issues(cli_bot, component, 1)
    watcher = await asyncio.create_subprocess_exec(
        *BUGLESS_COMMAND,
        "issue",
        "watch",
        str(issue.id),
        "--json",
        "--count",
        "2",
        env=served_api,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert watcher.stderr is not None
        ready = await asyncio.wait_for(watcher.stderr.readline(), 60)
        assert b"watching" in ready
        await cli_bot.update_issue(issue.id, priority="P0")
        await cli_bot.comment(issue.id, "seen live")
        out, _ = await asyncio.wait_for(watcher.communicate(), 60)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert watcher.returncode == 0
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [e["entry"]["version"] for e in events] == [2, 3]
    assert events[1]["entry"]["comment"] == "seen live"
    assert events[0]["issue"]["id"] == str(issue.id)


async def test_watch_after_a_position_prints_what_was_missed_with_positions(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """``--after`` first prints the changes made since that position, each with its own."""
    component = await new_component(cli_bot, "WatchAfter")
    (issue,) = await new_issues(cli_bot, component, 1)
    watch = cli_bot.watch(issue_id=issue.id, reconnect=False)
    start = (await anext(watch)).position  # the marker: the head now
    await watch.aclose()
    await cli_bot.comment(issue.id, "missed one")
    await cli_bot.comment(issue.id, "missed two")
    done = await asyncio.to_thread(
        bugless_cli,
        served_api,
        *("issue", "watch", str(issue.id), "--after", str(start), "--json", "--count", "2"),
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["entry"]["comment"] for e in events] == ["missed one", "missed two"]
    assert start < events[0]["position"] < events[1]["position"]
    assert f"watching from position {events[1]['position']}" in done.stderr
    too_far = bugless_cli(
        served_api, "issue", "watch", str(issue.id), "--after", str(10**12), check=False
    )
    assert too_far.returncode != 0
    assert "beyond the change feed's head" in too_far.stderr
    # Past int64 it wrapped when encoded (2**64 + 1 arrived as 1: a replay from the start).
    wrapped = bugless_cli(
        served_api, "issue", "watch", str(issue.id), "--after", str(2**64 + 1), "--count", "1",
        check=False,
    )  # fmt: skip
    assert wrapped.returncode == 2
    assert "after_position: must be 0 or a position an event carried" in wrapped.stderr


async def test_a_watch_line_of_a_replayed_change_says_the_issue_moved_on(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """A line shows the issue as it is now with the change as it was: the first
    of two changes printed by ``--after`` is marked "(now at #3)" and its
    priority change reads P2 -> P0 although the title shown is the later one."""
    component = await new_component(cli_bot, "WatchLines")
    (issue,) = await new_issues(cli_bot, component, 1)
    watch = cli_bot.watch(issue_id=issue.id, reconnect=False)
    start = (await anext(watch)).position
    await watch.aclose()
    await cli_bot.update_issue(issue.id, priority="P0")
    await cli_bot.update_issue(issue.id, title="renamed since")
    done = await asyncio.to_thread(
        bugless_cli,
        served_api,
        *("issue", "watch", str(issue.id), "--after", str(start), "--count", "2"),
    )
    first, second = done.stdout.splitlines()
    assert first.startswith(f"{issue.id} 'renamed since' (now at #3): #2 ")
    assert "priority: P2 -> P0" in first
    assert second.startswith(f"{issue.id} 'renamed since': #3 ")


async def test_a_watch_line_says_when_a_change_made_the_issue_leave_the_query(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """``--query``: a closed issue's line says "left the query" before the change, and
    the --json line carries "left_query"; a change keeping it matching says neither."""
    component = await new_component(cli_bot, "WatchLeave")
    staying, issue = await new_issues(cli_bot, component, 2)
    query = f"c:{component.id} is:open"
    watch = cli_bot.watch(query=query, reconnect=False)
    start = (await anext(watch)).position
    await watch.aclose()
    await cli_bot.comment(staying.id, "still open")
    await cli_bot.update_issue(issue.id, status="FIXED")
    command = ("issue", "watch", "--query", query, "--after", str(start), "--count", "2")
    done = await asyncio.to_thread(bugless_cli, served_api, *command)
    lines = done.stdout.splitlines()  # a comment is printed below its change's line
    (kept,) = [line for line in lines if line.startswith(f"{staying.id} ")]
    (left,) = [line for line in lines if line.startswith(f"{issue.id} ")]
    assert "left the query" not in kept
    assert done.stdout.count("left the query") == 1
    assert left.startswith(f"{issue.id} '{issue.title}': left the query: #2 ")
    assert "status: NEW -> FIXED" in left
    as_json = await asyncio.to_thread(bugless_cli, served_api, *command, "--json")
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["left_query"] for e in events] == [False, True]


async def test_a_watch_line_of_an_issue_moved_out_of_view_says_only_that_it_left(
    served_api: dict[str, str], cli_bot: BuglessClient, connect_as: ConnectAs
) -> None:
    """Moved where cli-bot may not look: the line names the issue's id and the
    change's number, nothing of the title or the change (the event holds no more)."""
    (boss,) = await signed_in(connect_as, "boss")
    root = await new_component(boss, "WatchHidden")
    secret = await boss.create_component(
        "Secret",
        parent_id=root.id,
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    issue = await boss.create_issue("soon hidden", root.id)
    query = f"c:{root.id}+ is:open"
    watch = cli_bot.watch(query=query, reconnect=False)
    start = (await anext(watch)).position
    await watch.aclose()
    await boss.update_issue(issue.id, component_id=secret.id, comment="the secret reason")
    command = ("issue", "watch", "--query", query, "--after", str(start), "--count", "1")
    done = await asyncio.to_thread(bugless_cli, served_api, *command)
    assert done.stdout == (
        f"{issue.id}: left the query by change #2 (you may no longer view the issue)\n"
    )
