"""The search language's days run midnight to midnight in the browser's zone."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_proto import v1
from bugless_web.timezones import TIMEZONE_COOKIE, zone_named

#: Fourteen hours ahead of UTC and twelve behind: "today" differs most between them.
AHEAD, BEHIND = "Etc/GMT-14", "Etc/GMT+12"


def _midnight_now(zone: str) -> datetime.datetime:
    tz = ZoneInfo(zone)
    today = datetime.datetime.now(tz).date()
    return datetime.datetime.combine(today, datetime.time(), tzinfo=tz).astimezone(datetime.UTC)


async def _set_created(world: World, issue_id: int, at: datetime.datetime) -> None:
    """Move an issue's creation time (the API cannot: it is always 'now')."""
    schema = world.stack.env.get("BUGLESS_DATABASE_SCHEMA", "bugless")
    conn = await asyncpg.connect(
        world.stack.model_database_url, server_settings={"search_path": schema}
    )
    try:
        await conn.execute("UPDATE issues SET created_at = $1 WHERE id = $2", at, issue_id)
    finally:
        await conn.close()


async def _found(client: AsyncTestClient[Any], zone: str | None, issue_id: int) -> bool:
    if zone is None:
        client.cookies.delete(TIMEZONE_COOKIE)
    else:
        client.cookies.set(TIMEZONE_COOKIE, zone)
    page = await client.get("/search", params={"q": "created>=today dingo"})
    assert page.status_code == 200, page.text
    return f'href="/issues/{issue_id}"' in page.text


async def test_today_is_the_browsers_today(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Created between two midnights dingo")
    ahead, behind = _midnight_now(AHEAD), _midnight_now(BEHIND)
    # Between the two zones' midnights: today in one of them, yesterday in the other.
    between = min(ahead, behind) + abs(ahead - behind) / 2
    await _set_created(world, issue.id, between)
    await sign_in(client, "bob")
    assert await _found(client, AHEAD, issue.id) is (between >= ahead)
    assert await _found(client, BEHIND, issue.id) is (between >= behind)
    assert (between >= ahead) is not (between >= behind)
    # No zone (or one this machine does not know) is UTC.
    utc = _midnight_now("UTC")
    assert await _found(client, None, issue.id) is (between >= utc)
    assert await _found(client, "Mars/Olympus_Mons", issue.id) is (between >= utc)


async def test_the_explanation_names_the_zone(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    client.cookies.set(TIMEZONE_COOKIE, "Europe/Paris")
    page = await client.get("/search", params={"q": "modified>today-7"})
    assert "7 days ago (Europe/Paris)" in page.text


def test_only_real_zone_names_are_taken() -> None:
    assert zone_named("America/Argentina/Buenos_Aires").name == "America/Argentina/Buenos_Aires"
    assert zone_named("Etc/GMT+12").name == "Etc/GMT+12"
    for bad in ("", "../../etc/passwd", "/etc/localtime", "Nowhere/Land", "x" * 80, "UTC;x=1"):
        assert zone_named(bad).name == "UTC", bad
