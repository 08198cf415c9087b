"""Days in a query run in the caller's time zone: one per API call, the CLI's own by default.

Issue 15: ``created>today-7`` means the caller's today. The web sends the
browser's zone; a bot names one per call (``time_zone``), and the CLI sends
``--time-zone``, else its config file's, else the machine's (``TZ``). The two
zones here are 26 hours apart, so an instant never falls on the same date in
both: a one-day query finds the issue in exactly one of them.
"""

from __future__ import annotations

import datetime
import secrets
import zoneinfo

import pytest
from api_support import ConnectAs, bugless_cli, cli_json, signed_in

from bugless_api.client import BuglessClient
from bugless_core.errors import InvalidArgument
from bugless_proto import v1

EAST = "Pacific/Kiritimati"  # UTC+14
WEST = "Etc/GMT+12"  # UTC-12 (POSIX sign: the name says +12)


async def _issue_and_day(client: BuglessClient) -> tuple[v1.Issue, datetime.date, datetime.date]:
    """A fresh issue and the date it was created on in EAST and in WEST."""
    component = await client.create_component(f"Zones-{secrets.token_hex(3)}")
    issue = await client.create_issue("made at one instant", component.id)
    assert issue.created_at is not None
    created = issue.created_at
    return (
        issue,
        created.astimezone(zoneinfo.ZoneInfo(EAST)).date(),
        created.astimezone(zoneinfo.ZoneInfo(WEST)).date(),
    )


async def test_a_day_in_the_query_is_the_callers_day_in_the_zone_it_names(
    connect_as: ConnectAs,
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    issue, east_day, west_day = await _issue_and_day(robot)
    assert east_day != west_day
    scope = f"componentid:{issue.component_id}"

    for zone, day, expected in [
        (EAST, east_day, [issue.id]),
        (WEST, east_day, []),
        (WEST, west_day, [issue.id]),
        (EAST, west_day, []),
    ]:
        found = await robot.search_issues(f"{scope} created:{day}", time_zone=zone)
        assert [i.id for i in found.issues] == expected, (zone, day)

    # Relative days too: in EAST "today" began at least 14 hours before UTC's.
    found = await robot.search_issues(f"{scope} created>=today", time_zone=EAST)
    assert [i.id for i in found.issues] == [issue.id]


async def test_the_clients_zone_is_used_unless_a_call_names_another(
    connect_as: ConnectAs,
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    issue, east_day, _ = await _issue_and_day(robot)
    query = f"componentid:{issue.component_id} created:{east_day}"
    robot.time_zone = EAST
    assert [i.id for i in (await robot.search_issues(query)).issues] == [issue.id]
    assert (await robot.search_issues(query, time_zone=WEST)).issues == []


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "x" * 200])
async def test_an_unknown_zone_is_invalid_and_named(connect_as: ConnectAs, zone: str) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    with pytest.raises(InvalidArgument, match=r"time_zone: .* is not a time zone") as caught:
        await robot.search_issues("is:open", time_zone=zone)
    assert caught.value.metadata["field"] == "time_zone"

    async def watch() -> None:
        async for _ in robot.watch(query="is:open", time_zone=zone):
            return

    with pytest.raises(InvalidArgument, match="time_zone"):
        await watch()


async def test_the_cli_counts_days_in_its_flag_else_the_machines_zone(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    (robot,) = await signed_in(connect_as, "cli-bot")
    issue, east_day, west_day = await _issue_and_day(robot)
    query = f"componentid:{issue.component_id} created:{east_day}"

    def ids(env: dict[str, str], *flags: str) -> list[str]:
        return [i["id"] for i in cli_json(env, "issue", "list", query, *flags)["issues"]]

    assert ids(served_api, "--time-zone", EAST) == [str(issue.id)]
    assert ids(served_api, "--time-zone", WEST) == []
    # No flag: the machine's zone, as TZ names it for every program.
    assert ids({**served_api, "TZ": EAST}) == [str(issue.id)]
    assert ids({**served_api, "TZ": WEST}) == []
    assert ids({**served_api, "TZ": WEST, "BUGLESS_TIME_ZONE": EAST}) == [str(issue.id)]

    bad = bugless_cli(
        served_api, "issue", "list", query, "--time-zone", "Nowhere/Land", check=False
    )
    assert bad.returncode == 2, bad.stderr
    assert "Nowhere/Land" in bad.stderr
    assert "not a time zone" in bad.stderr
    assert west_day != east_day
