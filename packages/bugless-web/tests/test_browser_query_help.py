"""The search help page in a real browser: reached from the search box, its examples run."""

from __future__ import annotations

import re
from pathlib import Path

from browser_support import (
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
    wider_than_window,
)
from playwright.sync_api import Browser, expect

from bugless_dev.stack import RunningService


def test_the_search_box_leads_to_the_help_and_an_example_runs_its_search(
    web_server: RunningService, browser: Browser, tmp_path: Path
) -> None:
    """Before, a person in the browser had three examples on an error page and no reference.

    Also on a phone-sized window: the tables and their explanations wrap, the
    page is no wider than the window.
    """
    for name, viewport in (("desk", (1360, 900)), ("phone", (360, 740))):
        ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        try:
            tab = new_tab(ctx)
            page = tab.page
            sign_in(tab, web_server, "bob")
            page.locator("a.query-help-link").click()
            expect(page).to_have_url(f"{web_server.url}/search/help")
            expect(page.locator("h1")).to_have_text("Searching issues")
            row = page.locator("tr#field-star")
            expect(row).to_contain_text("starredby")
            expect(row.locator("pre.meaning").first).to_contain_text("starred by me")
            wider = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wider <= 0, f"{name}: {wider}px wider than the window: {wider_than_window(page)}"
            save_screenshot(page, tmp_path, f"34-query-help-{name}")
            row.get_by_role("link", name="star:me").click()
            expect(page).to_have_url(re.compile(r"/search\?q=star%3Ame$"))
            page.locator(".explain summary").click()
            expect(page.locator(".explain pre")).to_contain_text("star:me — starred by me")
            assert list(iter_console_problems(tab.console)) == []
        finally:
            ctx.close()
