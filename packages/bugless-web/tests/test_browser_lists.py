"""Result lists and layouts in a real browser: the bulk-edit bar, the column picker, widths."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from browser_support import (
    Tab,
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
    wider_than_window,
)
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect
from web_support import World

from bugless_dev.stack import RunningService

#: An iPhone 12-15 sized window.
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        yield ctx
    finally:
        ctx.close()


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


def test_bulk_edit_bar_sits_above_the_table_and_counts_the_selection(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    for n in range(3):
        create_issue_ui(tab, web_server, f"Bulk target {n} capybara")
    page.goto(f"{web_server.url}/search?q=capybara")
    bar = page.locator(".bulk-bar")
    table = page.locator("table.results")
    bar_box, table_box = bar.bounding_box(), table.bounding_box()
    assert bar_box
    assert table_box
    assert bar_box["y"] + bar_box["height"] <= table_box["y"]
    count = page.locator(".bulk-count")
    expect(count).to_have_text("Select issues to edit them together")
    boxes = page.locator('input[name="issue"]')
    boxes.nth(0).check()
    boxes.nth(2).check()
    expect(count).to_have_text("2 issues selected")
    expect(page.locator(".select-all")).to_be_visible()
    page.locator(".select-all").check()
    expect(count).to_have_text("3 issues selected")
    page.locator(".select-all").uncheck()
    expect(count).to_have_text("Select issues to edit them together")
    boxes.nth(1).check()
    expect(count).to_have_text("1 issue selected")
    page.locator("summary:has-text('Bulk edit')").click()
    page.locator('#bulk select[name="priority"]').select_option("P0")
    save_screenshot(page, tmp_path, "30-bulk-bar")
    page.click('#bulk button:has-text("Apply to selected")')
    expect(page.locator(".banner.notice")).to_contain_text("Changed 1 issue.")
    assert list(iter_console_problems(tab.console)) == []


def test_a_refused_bulk_edit_comes_back_open_with_the_rows_still_ticked(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """The problem spans the form, above its fields; the count and the typed comment are kept."""
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    for n in range(3):
        create_issue_ui(tab, web_server, f"Bulk refusal {n} okapi")
    page.goto(f"{web_server.url}/search?q=okapi")
    boxes = page.locator('input[name="issue"]')
    boxes.nth(0).check()
    boxes.nth(2).check()
    page.locator("summary:has-text('Bulk edit')").click()
    page.locator('#bulk input[name="assignee"]').fill("nobody_of_that_name")
    page.locator('#bulk textarea[name="comment"]').fill("Sweeping the okapis")
    page.click('#bulk button:has-text("Apply to selected")')
    problem = page.locator('#bulk [role="alert"]')
    expect(problem).to_have_text(
        "Nothing was changed: assignee: no user named 'nobody_of_that_name'"
    )
    expect(page.locator(".bulk-count")).to_have_text("2 issues selected")
    expect(page.locator('#bulk textarea[name="comment"]')).to_have_value("Sweeping the okapis")
    assert [boxes.nth(n).is_checked() for n in range(3)] == [True, False, True]
    form_box, problem_box = page.locator("#bulk").bounding_box(), problem.bounding_box()
    assert form_box
    assert problem_box
    assert problem_box["width"] >= form_box["width"] - 2  # its own line, not squeezed beside
    status_box = page.locator('#bulk select[name="status"]').bounding_box()
    assert status_box
    assert problem_box["y"] + problem_box["height"] <= status_box["y"]
    save_screenshot(page, tmp_path, "31-bulk-refused")
    page.locator('#bulk input[name="assignee"]').fill("carol")
    page.click('#bulk button:has-text("Apply to selected")')
    expect(page.locator(".banner.notice")).to_contain_text("Changed 2 issues.")


def test_column_picker_choice_stays_for_the_next_list(
    web_server: RunningService, context: BrowserContext
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    create_issue_ui(tab, web_server, "Column picker sample quetzal")
    page.goto(f"{web_server.url}/search?q=quetzal")
    page.locator("summary:has-text('Columns')").click()
    page.locator('.column-choice[value="assignee"]').uncheck()
    page.locator('.column-choice[value="reporter"]').check()
    page.locator('.columns-form button:has-text("Apply")').click()
    expect(page.locator("th.col-reporter")).to_be_visible()
    expect(page.locator("th.col-assignee")).to_have_count(0)
    page.goto(f"{web_server.url}/search?q=is:open")
    expect(page.locator("th.col-reporter")).to_be_visible()
    expect(page.locator("th.col-assignee")).to_have_count(0)


def test_saved_search_keeps_its_columns_and_its_edit_form_changes_them(
    web_server: RunningService, context: BrowserContext
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    create_issue_ui(tab, web_server, "Saved columns sample okapi")
    page.goto(f"{web_server.url}/search?q=okapi")
    page.locator("summary:has-text('Columns')").click()
    page.locator('.column-choice[value="assignee"]').uncheck()
    page.locator('.column-choice[value="severity"]').check()
    page.locator('.columns-form button:has-text("Apply")').click()
    expect(page.locator("th.col-severity")).to_be_visible()
    page.locator("summary:has-text('Save this search')").click()
    page.locator('.save-search input[name="name"]').fill("Okapi list")
    page.locator('.save-search button:has-text("Save")').click()
    expect(page.locator(".banner.notice")).to_contain_text("Saved search 'Okapi list'")
    # Another list's choice (this browser's cookie) must not decide what the saved one shows.
    page.goto(f"{web_server.url}/search?q=is:open&columns=id,title&set_columns=1")
    page.goto(f"{web_server.url}/searches")
    row = page.locator("tr.row", has_text="Okapi list")
    expect(row.locator(".saved-columns")).to_contain_text("severity")
    row.locator("a:has-text('Okapi list')").click()
    expect(page.locator("th.col-severity")).to_be_visible()
    expect(page.locator("th.col-assignee")).to_have_count(0)
    expect(page.locator("table.results")).to_contain_text("okapi")
    # Edit: drop Severity, add Reporter.
    page.goto(f"{web_server.url}/searches")
    page.locator("tr.row", has_text="Okapi list").locator("a.edit-search").click()
    columns = page.locator("fieldset.saved-columns")
    expect(columns.locator('input[value="severity"]')).to_be_checked()
    expect(columns.locator('input[value="assignee"]')).not_to_be_checked()
    columns.locator('input[value="severity"]').uncheck()
    columns.locator('input[value="reporter"]').check()
    page.locator('.edit-saved-search button:has-text("Save")').click()
    expect(page.locator(".banner.notice")).to_contain_text("updated")
    page.locator("tr.row", has_text="Okapi list").locator("a:has-text('Okapi list')").click()
    expect(page.locator("th.col-reporter")).to_be_visible()
    expect(page.locator("th.col-severity")).to_have_count(0)
    assert list(iter_console_problems(tab.console)) == []


def _define_text_field(tab: Tab, server: RunningService, component_id: int, name: str) -> int:
    """Define a text field on the component through its fields page; its id."""
    page = tab.page
    page.goto(f"{server.url}/components/{component_id}/fields")
    form = page.locator("#new-field-form")
    form.locator('input[name="name"]').fill(name)
    form.locator('select[name="type"]').select_option("text")
    form.locator('button:has-text("Define field")').click()
    expect(page.locator(".custom-field-list .cf-name", has_text=name)).to_have_count(1)
    match = re.search(r"#field-(\d+)$", page.url)
    assert match, page.url
    return int(match.group(1))


def test_saved_search_edit_names_custom_columns_and_adds_the_fields_one_sees(
    web_server: RunningService, context: BrowserContext, world: World
) -> None:
    """Before, a custom column showed as ``customfield12`` and no custom field was offered."""
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "alice")
    name = f"Cols{secrets.token_hex(3)}"
    page.goto(f"{web_server.url}/components/new?parent={world.components['Platform']}")
    page.fill('form.stack input[name="name"]', name)
    page.click('button:has-text("Create component")')
    component_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    rollout = _define_text_field(tab, web_server, component_id, f"Rollout {name}")
    owner = _define_text_field(tab, web_server, component_id, f"Team {name}")
    query = f"componentid:{component_id}"
    page.goto(
        f"{web_server.url}/search?"
        + urlencode({"q": query, "columns": f"id,title,customfield{rollout}"})
    )
    expect(page.locator(f"th.col-customfield{rollout}")).to_contain_text(f"Rollout {name}")
    page.locator("summary:has-text('Save this search')").click()
    page.locator('.save-search input[name="name"]').fill(f"Search {name}")
    page.locator('.save-search button:has-text("Save")').click()
    expect(page.locator(".banner.notice")).to_contain_text(f"Saved search 'Search {name}'")
    page.locator("tr.row", has_text=f"Search {name}").locator("a.edit-search").click()
    columns = page.locator("fieldset.saved-columns")
    chosen = columns.locator("label", has=page.locator(f'input[value="customfield{rollout}"]'))
    expect(chosen).to_have_text(f"Rollout {name}")
    expect(chosen.locator("input")).to_be_checked()
    expect(columns).not_to_contain_text("customfield")
    # The other field of a component alice sees is offered, unticked; tick it.
    offered = columns.locator("label", has=page.locator(f'input[value="customfield{owner}"]'))
    expect(offered).to_have_text(f"Team {name}")
    expect(offered.locator("input")).not_to_be_checked()
    offered.locator("input").check()
    page.locator('.edit-saved-search button:has-text("Save")').click()
    expect(page.locator(".banner.notice")).to_contain_text("updated")
    page.locator("tr.row", has_text=f"Search {name}").locator(
        f"a:has-text('Search {name}')"
    ).click()
    expect(page.locator(f"th.col-customfield{owner}")).to_contain_text(f"Team {name}")
    expect(page.locator(f"th.col-customfield{rollout}")).to_contain_text(f"Rollout {name}")
    assert list(iter_console_problems(tab.console)) == []


def test_an_issue_starred_in_the_browser_appears_on_the_home_page(
    web_server: RunningService, context: BrowserContext, browser: Browser
) -> None:
    reporter = new_tab(context)
    sign_in(reporter, web_server, "bob")
    issue_id = create_issue_ui(reporter, web_server, "Star me on the home page narwhal")
    other = browser.new_context()
    try:
        tab = new_tab(other)
        page = tab.page
        sign_in(tab, web_server, "carol")
        following = page.locator("#section-cc")
        expect(following.locator("h2")).to_have_text("CC'd or starred")
        expect(following.locator(f'a[href="/issues/{issue_id}"]')).to_have_count(0)
        page.goto(f"{web_server.url}/issues/{issue_id}")
        page.locator("form.star button").click()
        expect(page.locator('form.star button[aria-pressed="true"]')).to_be_visible()
        page.goto(f"{web_server.url}/")
        expect(following).to_contain_text("Star me on the home page narwhal")
        expect(following.locator(f'a[href="/issues/{issue_id}"]').first).to_be_visible()
        assert list(iter_console_problems(tab.console)) == []
    finally:
        other.close()


def test_pages_fit_a_phone_without_sideways_scrolling(
    web_server: RunningService, phone: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(phone)
    page = tab.page
    sign_in(tab, web_server, "bob")
    long_word = "Unbroken" + "x" * 120
    issue_id = create_issue_ui(
        tab, web_server, f"Phone {long_word}", description=f"See https://example.com/{long_word}"
    )
    for n in range(2):
        create_issue_ui(tab, web_server, f"Phone list item {n} tapir")
    checks = {
        "home": "/",
        "search": "/search?q=tapir OR Phone",
        "issue": f"/issues/{issue_id}",
        "create": "/issues/new",
        "components": "/components",
        "hotlists": "/hotlists",
        "saved-searches": "/searches",
    }
    for name, path in checks.items():
        page.goto(f"{web_server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert overflow(page) <= 0, (
            f"{name} is {overflow(page)}px wider than a phone: {wider_than_window(page)}"
        )
        save_screenshot(page, tmp_path, f"31-phone-{name}")
    page.goto(f"{web_server.url}/search?q=tapir")
    # The cards keep each value's column name.
    first = page.locator("table.results tbody tr").first
    expect(first.locator("td.col-title")).to_be_visible()
    assert list(iter_console_problems(tab.console)) == []


def test_a_long_querys_explanation_and_error_wrap_in_a_narrow_window(
    web_server: RunningService, browser: Browser, tmp_path: Path
) -> None:
    """A 300-character query: the page is no wider than a 360 px window.

    Before, the "How this query was read" tree (a ``<pre>`` in the result
    head, a flex item as wide as its longest line) and a refused query's
    reason and highlighted query pushed the page sideways.
    """
    ctx = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        tab = new_tab(ctx)
        page = tab.page
        sign_in(tab, web_server, "bob")
        word = "Unbroken" + "y" * 280
        for name, query in (("explained", f"is:open {word}"), ("refused", f"p:{word}")):
            assert len(query) >= 290
            page.goto(f"{web_server.url}/search?{urlencode({'q': query})}")
            if name == "explained":
                page.locator(".explain summary").click()
                expect(page.locator(".explain pre")).to_contain_text(word)
            else:
                expect(page.locator(".query-error .reason")).to_be_visible()
            assert overflow(page) <= 0, (
                f"{name}: {overflow(page)}px wider than the window: {wider_than_window(page)}"
            )
            save_screenshot(page, tmp_path, f"33-long-query-{name}")
        assert list(iter_console_problems(tab.console)) == []
    finally:
        ctx.close()


_STICKING_OUT = """(selector) => {
  const box = document.querySelector(selector).getBoundingClientRect();
  return Array.from(document.querySelectorAll(selector + " *"))
    .filter((el) => el.getBoundingClientRect().right > box.right + 1)
    .map((el) => el.tagName.toLowerCase() + "." + el.className);
}"""


@pytest.mark.parametrize("width", [1280, 1000])
def test_the_issue_sidebar_holds_its_controls_on_a_desktop(
    web_server: RunningService, browser: Browser, tmp_path: Path, width: int
) -> None:
    """A hotlist's "remove" box and the file pickers stay inside their columns.

    The sidebar's value column was ``1fr``, whose minimum is its content's: the
    file input's intrinsic width widened the column past the 300 px sidebar,
    and the hotlist's "remove" and the picker's "No file chosen" were cut at
    the window's edge (seen in a walk of ``bugless dev --demo``); the update
    form's "Attach files…" picker stuck out of the form by its left margin.
    """
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    try:
        tab = new_tab(ctx)
        page = tab.page
        sign_in(tab, web_server, "bob")
        issue_id = create_issue_ui(tab, web_server, f"Sidebar at {width} okapi")
        page.goto(f"{web_server.url}/hotlists")
        page.click("summary:has-text('New hotlist')")
        page.fill('input[name="name"]', f"Release 2.4 blockers for the {width} px window")
        page.click('button:has-text("Create")')
        page.fill('input[name="issue_ids"]', str(issue_id))
        page.click('.add-items button:has-text("Add")')
        expect(page.locator("table.ranked tbody tr.row")).to_have_count(1)
        page.goto(f"{web_server.url}/issues/{issue_id}")
        page.wait_for_load_state("networkidle")
        expect(page.locator("aside.fields .hotlist-chip .remove")).to_be_visible()
        expect(page.locator("aside.fields .attach-form input[type=file]")).to_be_visible()
        outside: list[str] = page.evaluate(_STICKING_OUT, "aside.fields")
        beside: list[str] = page.evaluate(_STICKING_OUT, "#issue-form")
        save_screenshot(page, tmp_path, f"32-issue-sidebar-{width}")
        assert outside == [], f"sticking out of the sidebar at {width} px: {outside}"
        assert beside == [], f"sticking out of the update form at {width} px: {beside}"
        assert overflow(page) <= 0, wider_than_window(page)
        # In the value column (~170 px) Chromium elided "No file chosen" to
        # "N…sen"; the form now takes the sidebar's width under its row.
        picker = page.locator("aside.fields .attach-form input[type=file]").bounding_box()
        assert picker is not None
        assert picker["width"] >= 240, f"file picker {picker}"
        assert list(iter_console_problems(tab.console)) == []
    finally:
        ctx.close()
