"""The sessions page in Chromium against a real web server: sign out another device.

One person signs in on two browsers (two profiles: a laptop and a phone).
From the laptop they open Sessions from the header, see both sessions with
this one marked, and sign the phone out with its row's button; the phone's
next page load is sent to sign in. The sessions of the notifier acting for
them are one folded line, opened to sign one of them out.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from browser_support import iter_console_problems, new_tab, save_screenshot, sign_in
from playwright.sync_api import Browser, BrowserContext, expect
from web_support import PASSWORD, World, acting_for

from bugless_dev.stack import RunningService

#: The module's server validates a session at most every --token-cache-seconds
#: (5 by default); what a loaded two-core machine needs on top.
REFUSED_WITHIN_SECONDS = 5.0 + 10.0


def test_a_person_signs_out_their_other_device_from_the_sessions_page(
    web_server: RunningService,
    world: World,
    browser: Browser,
    context: BrowserContext,
    tmp_path: Path,
) -> None:
    world.stack.add_user("roaming", PASSWORD)
    phone_context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        phone = new_tab(phone_context)
        sign_in(phone, web_server, "roaming")
        laptop = new_tab(context)
        sign_in(laptop, web_server, "roaming")
        page = laptop.page

        page.locator(".me a", has_text="Sessions").click()

        expect(page).to_have_url(f"{web_server.url}/settings/sessions")
        rows = page.locator("table.sessions-list tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_have_attribute("aria-current", "true")
        expect(rows.nth(0)).to_contain_text("This session")
        expect(rows.nth(1)).to_contain_text("Password")
        save_screenshot(page, tmp_path, "80-sessions")
        rows.nth(1).locator('button:has-text("Sign out")').click()
        expect(page.locator(".banner.notice")).to_contain_text("Session signed out")
        expect(rows).to_have_count(1)

        deadline = time.monotonic() + REFUSED_WITHIN_SECONDS
        while True:
            phone.page.goto(f"{web_server.url}/")
            if phone.page.url.startswith(f"{web_server.url}/signin"):
                break
            assert time.monotonic() < deadline, "the phone is still signed in"
            time.sleep(0.5)
        expect(phone.page.locator('input[name="password"]')).to_be_visible()
        page.reload()
        expect(rows).to_have_count(1)  # the laptop is still signed in
        assert list(iter_console_problems(laptop.console + phone.console)) == []
    finally:
        phone_context.close()


def test_services_acting_for_a_person_fold_into_one_line_that_opens(
    web_server: RunningService,
    world: World,
    context: BrowserContext,
    tmp_path: Path,
) -> None:
    world.stack.add_user("notified", PASSWORD)
    # Not on this thread: Playwright's sync API runs its own event loop here.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, acting_for(world.stack, "notified", 2)).result()
    tab = new_tab(context)
    sign_in(tab, web_server, "notified")
    page = tab.page
    page.goto(f"{web_server.url}/settings/sessions")

    services = page.locator("details.services-acting")
    summary = services.locator("summary")
    expect(summary).to_contain_text("Services acting for you: 2, latest at")
    rows = services.locator("tbody tr")
    expect(rows.first).to_be_hidden()  # folded: one line, not two rows
    expect(page.locator("table.sessions-list tbody tr").first).to_contain_text("This session")
    summary.click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("A service acting for you")
    save_screenshot(page, tmp_path, "81-sessions-services")
    rows.first.locator('button:has-text("Sign out")').click()
    expect(page.locator(".banner.notice")).to_contain_text("Session signed out")
    expect(page.locator("details.services-acting summary")).to_contain_text(
        "Services acting for you: 1, latest at"
    )
    assert list(iter_console_problems(tab.console)) == []
