"""Times in a real browser: relative words, the exact local time on hover, the zone sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import Browser, BrowserContext, expect

from bugless_dev.stack import RunningService

ZONE = "America/New_York"


@pytest.fixture
def new_yorker(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        viewport={"width": 1360, "height": 900}, timezone_id=ZONE, locale="en-US"
    )
    try:
        yield ctx
    finally:
        ctx.close()


def test_times_read_as_how_long_ago_with_the_local_time_on_hover(
    web_server: RunningService, new_yorker: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(new_yorker)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "When was this okapi filed")
    created = page.locator(".subhead time")
    expect(created).to_have_attribute("data-relative", "true")
    expect(created).to_have_text(re.compile(r"^(now|\d+ seconds? ago|1 minute ago)$"))
    # The tooltip is the exact time on the browser's clock, naming its zone.
    title = created.get_attribute("title") or ""
    assert re.search(r"\b(EST|EDT)\b", title), title
    iso = created.get_attribute("datetime") or ""
    assert iso.endswith("Z")
    save_screenshot(page, tmp_path, "40-relative-times")
    # The browser told the server its zone, and searches count days there.
    cookies = {c["name"]: c["value"] for c in new_yorker.cookies()}
    assert cookies.get("bugless_tz") == ZONE
    page.fill("#q", "created>=today okapi")
    page.press("#q", "Enter")
    expect(page.locator(f'tr.row[data-href="/issues/{issue_id}"]')).to_be_visible()
    page.locator("summary:has-text('How this query was read')").click()
    expect(page.locator(".explain pre")).to_contain_text(f"today ({ZONE})")
    assert list(iter_console_problems(tab.console)) == []
