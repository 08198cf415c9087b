"""Accessibility in a real browser: axe-core on every page a person reaches, and the keyboard.

axe-core (the engine behind browser accessibility audits; its script comes
from the ``axe-playwright-python`` package of the ``testing`` extra) runs the
WCAG 2.1 A and AA rules and its best practices inside Debian's chromium on
pages with realistic content: a component with a custom field, an issue with
comments, an edited and a redacted comment, an attachment, a child issue and
a hotlist, a saved search, and the error pages. A violation of impact
"serious" or "critical" fails the test, whatever page it is on; the lesser
ones are listed in the failure message too, so one run shows all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from a11y_support import (
    ALLOWED_RULES,
    DESKTOP,
    FAILING_IMPACTS,
    FOCUSED,
    Audit,
    describe,
    run_axe,
)
from browser_support import (
    Tab,
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import Browser, BrowserContext, FilePayload, Page, expect
from web_support import PASSWORD, World, acting_for

from bugless_dev.stack import RunningService


@dataclass
class Seeded:
    """What the audited pages show: ids made through the UI by alice and bob."""

    issue_id: int = 0
    child_id: int = 0
    component_id: int = 0
    hotlist_href: str = ""
    saved_search_edit_href: str = ""
    #: In every title and name the module made, so a search finds only those.
    suffix: str = ""


def _attach(page: Page, name: str, content: bytes, mime: str) -> None:
    form = page.locator("aside.fields form.attach-form")
    form.locator('input[name="file"]').set_input_files(
        files=FilePayload(name=name, mimeType=mime, buffer=content)
    )
    form.locator('button:has-text("Attach")').click()
    expect(page.locator(".attachment-list li.attachment", has_text=name)).to_have_count(1)


def _comment(page: Page, text: str) -> None:
    page.fill("#comment", text)
    page.click('#issue-form button:has-text("Save")')
    expect(page.locator("#entries")).to_contain_text(text)


def _seed(tab: Tab, server: RunningService, world: World) -> Seeded:
    """Content for every page, made as a person would (alice is an admin)."""
    page = tab.page
    seeded = Seeded()
    suffix = secrets.token_hex(3)
    # A component with an enum custom field.
    name = f"Audited{suffix}"
    page.goto(f"{server.url}/components/new?parent={world.components['Platform']}")
    page.fill('form.stack input[name="name"]', name)
    page.click('button:has-text("Create component")')
    seeded.component_id = int(page.url.rstrip("/").rsplit("/", 1)[1].split("?")[0])
    page.click("a.custom-fields-link")
    form = page.locator("#new-field-form")
    form.locator('input[name="name"]').fill("Found in")
    form.locator('select[name="type"]').select_option("enum")
    form.locator('textarea[name="options"]').fill("4.1\n4.2")
    form.locator('button:has-text("Define field")').click()
    expect(page.locator(".custom-field-list .cf-name")).to_have_text("Found in")
    # The issue: description, custom field, comments (one edited, one redacted), a file.
    page.goto(f"{server.url}/issues/new")
    page.select_option("#component-picker", label=f"Platform>{name}")
    page.locator("#custom-fields select").select_option("4.2")
    page.fill('#create-form input[name="title"]', f"Disk fills up during backup {suffix}")
    page.fill(
        '#create-form textarea[name="description"]',
        "## Steps\n\n1. Run the nightly backup\n2. Watch `df -h`\n\n"
        "Expected: **free space** stays above 10%.\n\n"
        # A log line wider than the page: its code block scrolls sideways.
        "```\n2026-12-06T03:00:01Z backup[4711]: write /var/lib/backup/"
        + "/".join(f"part-{n:04d}" for n in range(24))
        + ": ENOSPC (No space left on device)\n```",
    )
    page.click('#create-form button:has-text("Create issue")')
    expect(page.locator(".issue-title")).to_contain_text("Disk fills up")
    page.wait_for_load_state()
    seeded.issue_id = int(page.url.rsplit("/", 1)[1].split("#")[0])
    _comment(page, "Seen on host db-3 as well; the token was tok3nleaked")
    _comment(page, "Looks like the *temporary* files are never removed.")
    _attach(page, "backup.log", b"backup started\nENOSPC\n", "text/plain")
    redact = page.locator("article.entry[data-version='2']")
    redact.locator("details.redact > summary").click()
    redact.locator('button:has-text("Redact permanently")').click()
    expect(
        page.locator("article.entry[data-version='2']").locator(".redacted-marker")
    ).to_be_visible()
    # A child issue, so the page lists related issues.
    seeded.child_id = create_issue_ui(tab, server, f"Clean temporary files {suffix}")
    page.fill('#issue-form input[name="parent_id"]', str(seeded.issue_id))
    page.click('#issue-form button:has-text("Save")')
    expect(page.locator(".parent-crumbs")).to_be_visible()
    # A hotlist holding both, and a saved search.
    page.goto(f"{server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Storage fires {suffix}")
    page.fill('input[name="description"]', "What the storage team works on first")
    page.click('button:has-text("Create")')
    page.fill('input[name="issue_ids"]', f"{seeded.issue_id} {seeded.child_id}")
    page.click('.add-items button:has-text("Add")')
    expect(page.locator("table.ranked tbody tr.row")).to_have_count(2)
    seeded.hotlist_href = page.url.removeprefix(server.url or "")
    page.goto(f"{server.url}/search?q={suffix}")
    page.locator("summary:has-text('Save this search')").click()
    page.locator('.save-search input[name="name"]').fill(f"Backup trouble {suffix}")
    page.locator('.save-search button:has-text("Save")').click()
    expect(page.locator(".banner.notice")).to_contain_text("Saved search")
    page.goto(f"{server.url}/searches")
    edit = page.locator("tr.row", has_text=f"Backup trouble {suffix}").locator("a.edit-search")
    seeded.saved_search_edit_href = edit.get_attribute("href") or ""
    seeded.suffix = suffix
    return seeded


@pytest.fixture(scope="module")
def seeded(browser: Browser, web_server: RunningService, world: World) -> Iterator[Seeded]:
    """The module's content, made once by alice."""
    ctx = browser.new_context(viewport=DESKTOP)
    try:
        tab = new_tab(ctx)
        sign_in(tab, web_server, "alice")
        # The notifier acting for alice: her sessions page shows their folded line.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, acting_for(world.stack, "alice", 2)).result()
        yield _seed(tab, web_server, world)
    finally:
        ctx.close()


def signed_in_pages(seeded: Seeded, world: World) -> list[tuple[str, str]]:
    """(name, path) of the pages a signed-in person reaches."""
    suffix = seeded.suffix
    component = seeded.component_id
    return [
        ("home", "/"),
        ("search-results", f"/search?q={suffix}"),
        ("search-all-open", "/search?q=is:open"),
        ("search-empty", "/search?q=nothingmatchesthisxyz"),
        ("search-invalid", "/search?q=priority:%3C%3C"),
        ("search-help", "/search/help"),
        ("issue", f"/issues/{seeded.issue_id}"),
        ("issue-child", f"/issues/{seeded.child_id}"),
        ("create-issue", "/issues/new"),
        ("components", "/components"),
        ("component", f"/components/{component}"),
        ("component-platform", f"/components/{world.components['Platform']}"),
        ("component-fields", f"/components/{component}/fields"),
        ("component-webhooks", f"/components/{component}/webhooks"),
        ("component-new", "/components/new"),
        ("hotlists", "/hotlists"),
        ("hotlist", seeded.hotlist_href),
        ("saved-searches", "/searches"),
        ("saved-search-edit", seeded.saved_search_edit_href),
        ("settings-notifications", "/settings/notifications"),
        ("api-access", "/settings/api-access"),
        ("sessions", "/settings/sessions"),
        ("user", "/users/bob"),
        ("admin", "/admin"),
        ("dead-letters", "/admin/notifications/dead-letters"),
        ("not-found", "/issues/987654321"),
        ("bad-request", "/issues/not-a-number"),
    ]


#: Pages audited (and shot) at a phone's width too: the result table becomes cards there.
ON_A_PHONE = frozenset(
    {"search-results", "search-help", "issue", "hotlist", "component", "signin", "sessions"}
)


def _audit(page: Page, server: RunningService, pages: list[tuple[str, str]], tag: str) -> list[str]:
    """Runs axe on each page; returns the failing lines, writes all findings (a11y_support)."""
    audit = Audit(tag)
    audit.visit(page, server, pages, on_a_phone=ON_A_PHONE)
    return audit.finish()


def test_axe_finds_nothing_serious_on_the_signed_in_pages(
    web_server: RunningService,
    context: BrowserContext,
    seeded: Seeded,
    world: World,
) -> None:
    tab = new_tab(context)
    sign_in(tab, web_server, "alice")
    failing = _audit(tab.page, web_server, signed_in_pages(seeded, world), "signed-in")
    assert failing == [], "\n".join(failing)


def test_axe_finds_nothing_serious_on_the_signed_in_pages_without_script(
    web_server: RunningService,
    browser: Browser,
    seeded: Seeded,
    world: World,
) -> None:
    # The web works without script (forms post and redirect): the plain
    # fallbacks it shows then (the upload form, the component picker's
    # button, links in place of the script's controls) are audited too.
    no_script = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        tab = new_tab(no_script)
        sign_in(tab, web_server, "alice")
        pages = [(f"{name}-no-script", path) for name, path in signed_in_pages(seeded, world)]
        phones = frozenset(f"{name}-no-script" for name in ON_A_PHONE)
        audit = Audit("no-script", script_off=True)
        audit.visit(tab.page, web_server, pages, on_a_phone=phones)
        failing = audit.finish()
    finally:
        no_script.close()
    assert failing == [], "\n".join(failing)


def test_axe_finds_nothing_serious_for_a_plain_user_and_signed_out(
    web_server: RunningService,
    context: BrowserContext,
    browser: Browser,
    seeded: Seeded,
    world: World,
) -> None:
    tab = new_tab(context)
    sign_in(tab, web_server, "bob")
    bob_pages = [
        ("issue-as-bob", f"/issues/{seeded.issue_id}"),
        ("hotlist-as-bob", seeded.hotlist_href),
        ("forbidden-component", f"/components/{world.components['Secret']}"),
        ("forbidden-admin", "/admin"),
    ]
    failing = _audit(tab.page, web_server, bob_pages, "bob")
    anonymous = browser.new_context(viewport=DESKTOP)
    try:
        page = anonymous.new_page()
        failing += _audit(page, web_server, [("signin", "/signin")], "signed-out")
        page.fill('input[name="username"]', "bob")
        page.fill('input[name="password"]', PASSWORD + "wrong")
        page.click('button:has-text("Sign in")')
        expect(page.locator("main [role=alert]")).to_contain_text("Wrong username or password")
        for v in run_axe(page):
            if v["impact"] in FAILING_IMPACTS and v["id"] not in ALLOWED_RULES:
                failing += describe("signin-failed", [v])
    finally:
        anonymous.close()
    assert failing == [], "\n".join(failing)


def test_an_issues_hotlist_box_names_the_hotlist_it_removes_from(
    web_server: RunningService, context: BrowserContext, seeded: Seeded
) -> None:
    # Each hotlist's box read "remove" alone: with two hotlists, a screen
    # reader could not tell which one a box takes the issue out of.
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "alice")
    page.goto(f"{web_server.url}/issues/{seeded.issue_id}")
    box = page.locator('input[name="hotlist_remove"]')
    expect(box).to_have_count(1)
    expect(box).to_have_accessible_name(f"remove from Storage fires {seeded.suffix}")
    # Seen, it still reads "remove" beside the hotlist's link: the rest is for screen readers.
    label = page.locator("aside.fields .hotlist-chip label.remove")
    expect(label.locator(".visually-hidden")).to_have_text(f"from Storage fires {seeded.suffix}")


def test_the_issue_heading_is_its_number_and_title_alone(
    web_server: RunningService, browser: Browser, seeded: Seeded
) -> None:
    # The star and mute buttons sat inside the <h1>: a screen reader read the
    # heading as "301 Disk fills up ... Star this issue; 0 stars Mute". They
    # sit beside it now, and still work with script and without.
    heading = f"{seeded.issue_id} Disk fills up during backup {seeded.suffix}"
    for script in (True, False):
        ctx = browser.new_context(viewport=DESKTOP, java_script_enabled=script)
        try:
            tab = new_tab(ctx)
            page = tab.page
            sign_in(tab, web_server, "bob")
            page.goto(f"{web_server.url}/issues/{seeded.issue_id}")
            h1 = page.get_by_role("heading", level=1)
            expect(h1).to_have_accessible_name(heading)
            star = page.locator(".issue-head form.star button")
            expect(star).to_have_accessible_name("Star this issue; 0 stars")
            star.click()
            expect(star).to_have_attribute("aria-pressed", "true")
            expect(star).to_have_accessible_name("Star this issue; 1 star")
            mute = page.locator(".issue-head form.mute button")
            mute.click()
            expect(mute).to_have_text("Unmute")
            expect(h1).to_have_accessible_name(heading)
            # Put back, so the other pass (and the module's audits) see them as seeded.
            star.click()
            expect(star).to_have_attribute("aria-pressed", "false")
            mute.click()
            expect(mute).to_have_text("Mute")
        finally:
            ctx.close()


def _what(focused: dict[str, Any]) -> str:
    """The kind of control the keyboard is on, as the keyboard test names it."""
    if focused["id"] == "q":
        return "search box"
    if focused["tag"] == "a" and "open-link" in focused["cls"]:
        return "result link"
    if focused["tag"] == "summary" and focused["text"].startswith("Bulk edit"):
        return "bulk edit"
    if focused["tag"] == "input" and focused["name"] == "issue":
        return "row checkbox"
    if focused["tag"] == "a" and "skip-link" in focused["cls"]:
        return "skip link"
    return ""


def _tab_until(page: Page, wanted: str, *, limit: int = 80, backwards: bool = False) -> list[str]:
    """Presses Tab (or Shift+Tab) until the focus is on ``wanted``; the named stops passed.

    Every stop must show its focus ring: a keyboard user has to see where they are.
    """
    passed: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focused: dict[str, Any] = page.evaluate(FOCUSED)
        assert focused["ring"], f"no visible focus ring on {focused}"
        kind = _what(focused)
        if kind and kind not in passed:
            passed.append(kind)
        if kind == wanted:
            return passed
    pytest.fail(f"{limit} presses of Tab did not reach the {wanted}; passed {passed}")


def test_keyboard_reaches_search_results_and_bulk_edit_with_a_visible_focus(
    web_server: RunningService, context: BrowserContext, seeded: Seeded, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    page.goto(f"{web_server.url}/search?q={seeded.suffix}")
    page.wait_for_load_state()
    # From the top: the skip link, the search box, the bulk-edit bar, a row, its link.
    passed = _tab_until(page, "result link")
    assert passed == ["skip link", "search box", "bulk edit", "row checkbox", "result link"]
    save_screenshot(page, tmp_path, "80-keyboard-focus-on-a-result")
    # Back to the row's checkbox: Space selects it.
    _tab_until(page, "row checkbox", backwards=True)
    # A screen reader names the box by its issue's number and title, not by a number alone.
    box = page.locator('input[name="issue"]:focus')
    row = page.locator("tr.row", has=box)
    number = row.locator("td.col-id").inner_text().strip()
    title = row.locator("td.col-title").inner_text().strip()
    assert seeded.suffix in title
    expect(box).to_have_accessible_name(f"Select issue {number}: {title}")
    page.keyboard.press("Space")
    expect(page.locator(".bulk-count")).to_have_text("1 issue selected")
    # Up to the bulk-edit bar: Enter opens it; set a priority and apply, keys only.
    _tab_until(page, "bulk edit", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("details.bulk")).to_have_attribute("open", "")
    page.keyboard.press("Tab")  # Status
    page.keyboard.press("Tab")  # Priority
    assert page.evaluate("document.activeElement.name") == "priority"
    page.keyboard.press("End")  # the last priority, P4
    expect(page.locator('#bulk select[name="priority"]')).to_have_value("P4")
    for _ in range(12):  # on through the form's other fields to its button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent").strip() == "Apply to selected":
            break
    else:
        pytest.fail("Tab never reached the bulk form's Apply button")
    page.keyboard.press("Enter")
    expect(page.locator(".banner.notice")).to_contain_text("Changed 1 issue.")
    assert list(iter_console_problems(tab.console)) == []


def test_keyboard_alone_updates_an_issue(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Updated by keyboard alone")
    page.goto(f"{web_server.url}/issues/{issue_id}")
    page.wait_for_load_state()
    for _ in range(120):
        page.keyboard.press("Tab")
        focused: dict[str, Any] = page.evaluate(FOCUSED)
        assert focused["ring"], f"no visible focus ring on {focused}"
        if focused["name"] == "priority":
            break
    else:
        pytest.fail("Tab never reached the priority field of the update form")
    page.keyboard.press("End")  # the last priority (P4)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "comment":
            break
    else:
        pytest.fail("Tab never reached the comment box")
    page.keyboard.type("Typed without a mouse")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.type") == "submit":
            break
    save_screenshot(page, tmp_path, "81-keyboard-on-save")
    assert page.evaluate("document.activeElement.textContent").strip() == "Save"
    page.keyboard.press("Enter")
    expect(page.locator("#entries")).to_contain_text("Typed without a mouse")
    expect(page.locator("aside.fields")).to_contain_text("P4")
    assert list(iter_console_problems(tab.console)) == []


def test_the_shortcut_help_is_a_modal_dialog_and_turns_single_key_shortcuts_off(
    web_server: RunningService, context: BrowserContext, seeded: Seeded, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    search = f"{web_server.url}/search?q={seeded.suffix}"
    page.goto(search)
    page.wait_for_load_state()
    help_link = page.locator("footer a.js-help")
    help_link.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#shortcuts")
    expect(dialog).to_be_visible()
    # The focus moved into the dialog and stays there.
    toggle = page.locator("#single-key-shortcuts")
    expect(toggle).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator(".js-help-close")).to_be_focused()
    page.keyboard.press("Tab")
    expect(toggle).to_be_focused()
    save_screenshot(page, tmp_path, "82-shortcut-help")
    # Turn the single-key shortcuts off; Escape closes and gives the focus back.
    page.keyboard.press("Space")
    expect(toggle).not_to_be_checked()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(help_link).to_be_focused()
    page.locator("h1").click()  # the focus leaves the link: keys go to the page
    page.keyboard.press("j")
    expect(page.locator("tr.row.selected")).to_have_count(0)
    page.keyboard.press("c")
    page.keyboard.press("?")
    expect(dialog).to_be_hidden()
    assert page.url == search
    # Still off on the next page (kept in this browser); on again from the help.
    page.reload()
    page.wait_for_load_state()
    page.keyboard.press("j")
    expect(page.locator("tr.row.selected")).to_have_count(0)
    help_link.focus()
    page.keyboard.press("Enter")
    expect(toggle).not_to_be_checked()
    page.keyboard.press("Space")
    page.keyboard.press("Escape")
    page.locator("h1").click()
    page.keyboard.press("j")
    expect(page.locator("tr.row.selected")).to_have_count(1)
    # With a row selected, Enter on a focused link follows that link, not the row.
    page.locator("summary:has-text('Save this search')").focus()
    page.keyboard.press("Enter")
    expect(page.locator("details.save-search")).to_have_attribute("open", "")
    assert page.url == search
    assert list(iter_console_problems(tab.console)) == []
