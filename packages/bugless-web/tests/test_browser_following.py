"""Muting, subscribing and stopping both, by clicking, in Chromium against a real web server.

The issue page's Mute button says what it will do and flips with the
state; the settings page names what one follows (the component's path,
the issue's title) and each row's button stops it, back on the same page.
"""

from __future__ import annotations

from pathlib import Path

from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import BrowserContext, expect

from bugless_dev.stack import RunningService


def test_mute_and_unmute_on_the_issue_page_and_stop_following_in_the_settings(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    title = "Mutable chatter about the gnu"
    issue_id = create_issue_ui(tab, web_server, title)
    mute = page.locator("form.mute button")
    expect(mute).to_have_text("Mute")
    mute.click()
    expect(page.locator(".banner.notice")).to_have_text("Muted.")
    expect(mute).to_have_text("Unmute")
    expect(page.locator("form.star button")).to_have_attribute("aria-pressed", "false")
    save_screenshot(page, tmp_path, "70-issue-muted")
    mute.click()
    expect(page.locator(".banner.notice")).to_have_text("Unmuted.")
    expect(mute).to_have_text("Mute")
    mute.click()  # muted again, to stop it from the settings page
    expect(mute).to_have_text("Unmute")

    page.click('.subhead a[href^="/components/"]')
    subscribe = page.locator("form.subscribe")
    subscribe.locator('input[name="subtree"]').check()
    subscribe.locator('button:has-text("Subscribe to notifications")').click()
    expect(page.locator(".subscription-state")).to_have_text("Subscribed (with its subcomponents)")

    page.goto(f"{web_server.url}/settings/notifications")
    component_row = page.locator("li.followed-component")
    muted_row = page.locator(f'li.followed-muted[data-issue="{issue_id}"]')
    expect(component_row).to_contain_text("Platform and its subcomponents")
    expect(muted_row).to_contain_text(f"{issue_id} {title}")
    save_screenshot(page, tmp_path, "71-settings-following")
    component_row.locator('button:has-text("Unsubscribe")').click()
    expect(page.locator(".banner.notice")).to_have_text("Unsubscribed.")
    expect(page).to_have_url(f"{web_server.url}/settings/notifications")
    expect(component_row).to_have_count(0)
    muted_row.locator('button:has-text("Unmute")').click()
    expect(page.locator(".banner.notice")).to_have_text("Unmuted.")
    expect(muted_row).to_have_count(0)
    expect(page.locator("ul.following li.empty")).to_contain_text("Nothing yet")

    page.goto(f"{web_server.url}/issues/{issue_id}")
    expect(mute).to_have_text("Mute")
    assert tab.dialogs == []
    assert list(iter_console_problems(tab.console)) == []


def test_a_settings_save_from_a_stale_tab_is_refused_with_the_settings_as_they_are_now(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """Two tabs of one person: the second save, from the older page, changes nothing (409).

    The refused page shows the settings as the first tab saved them, says
    what happened, and saves normally from there.
    """
    first, second = new_tab(context), new_tab(context)
    sign_in(first, web_server, "mallory")
    url = f"{web_server.url}/settings/notifications"
    first.page.goto(url)
    second.page.goto(url)
    first.page.select_option('select[name="digest"]', "daily")
    first.page.click('form.settings button:has-text("Save")')
    expect(first.page.locator(".banner.notice")).to_have_text("Notification settings saved.")

    stale = second.page
    starred = stale.locator('form.settings input[name="event"][value="4"]')
    starred.uncheck()
    with stale.expect_response(url) as answered:
        stale.click('form.settings button:has-text("Save")')
    assert answered.value.status == 409
    expect(stale.locator(".settings-conflict")).to_contain_text(
        "your notification settings were changed elsewhere"
    )
    expect(stale.locator(".settings-conflict")).to_contain_text("make your change again")
    expect(stale.locator('select[name="digest"]')).to_have_value("daily")
    expect(starred).to_be_checked()
    save_screenshot(stale, tmp_path, "72-settings-stale-save")

    starred.uncheck()
    stale.click('form.settings button:has-text("Save")')
    expect(stale.locator(".banner.notice")).to_have_text("Notification settings saved.")
    expect(starred).not_to_be_checked()
    expect(stale.locator('select[name="digest"]')).to_have_value("daily")

    # Back to the defaults, from the page as it is now.
    starred.check()
    stale.select_option('select[name="digest"]', "immediate")
    stale.click('form.settings button:has-text("Save")')
    expect(stale.locator(".banner.notice")).to_have_text("Notification settings saved.")
    refused = "the server responded with a status of 409 (Conflict)"
    assert [line for line in second.console if refused in line] != []  # the 409 on purpose
    for tab in (first, second):
        assert tab.dialogs == []
        assert [p for p in iter_console_problems(tab.console) if refused not in p] == []
