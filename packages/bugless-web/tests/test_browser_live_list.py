"""A search page in Chromium hears which of its issues changed or left, and offers a refresh.

Real web, Model, Authenticator and PostgreSQL; the changes are made in
another tab, through the issue form, as a colleague would.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import BrowserContext, Route, expect

from bugless_dev.stack import RunningService


def test_a_search_page_marks_changed_and_left_rows_and_refreshes(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """A comment marks its row changed, a close marks its row left; the bar counts issues.

    Before, the list stayed as it was loaded until the triager reloaded it,
    with nothing saying that anything had changed.
    """
    word = "livelist" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    commented = create_issue_ui(watcher, web_server, f"{word} to comment on")
    closed = create_issue_ui(watcher, web_server, f"{word} to close")
    page = watcher.page
    page.goto(f"{web_server.url}/search?q={quote(word + ' is:open')}")
    expect(page.locator("table.results tr.row")).to_have_count(2)
    expect(page.locator(".search[data-live-state='watching']")).to_have_count(1)
    bar = page.locator("#list-live")
    expect(bar).to_be_hidden()

    other = new_tab(context)
    other.page.goto(f"{web_server.url}/issues/{commented}")
    other.page.fill("#comment", "Seen on staging too")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator("#entry-2")).to_be_visible()
    expect(bar).to_have_text("1 issue changed. Refresh")
    changed_row = page.locator(f'tr.row[data-href="/issues/{commented}"]')
    expect(changed_row).to_have_class("row live-changed")

    other.page.goto(f"{web_server.url}/issues/{closed}")
    other.page.select_option('#issue-form select[name="status"]', "FIXED")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator("#entry-2")).to_be_visible()
    expect(bar).to_have_text("1 issue changed, 1 issue left this list. Refresh")
    expect(page.locator(f'tr.row[data-href="/issues/{closed}"]')).to_have_class("row live-left")
    save_screenshot(page, tmp_path, "live-list")

    bar.locator("button.refresh").click()
    expect(page.locator("table.results tr.row")).to_have_count(1)
    expect(page.locator(f'tr.row[data-href="/issues/{commented}"]')).to_have_class("row")
    expect(bar).to_be_hidden()
    assert list(iter_console_problems(watcher.console)) == []
    assert watcher.dialogs == []


def test_a_hotlist_page_marks_changed_removed_and_added_issues_and_refreshes(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """A hotlist follows ``hotlistid:N`` as a search page follows its query.

    Before, a hotlist's page stayed as loaded while a colleague commented on,
    removed or added its issues, with nothing saying that anything changed.
    """
    word = "livehot" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    ids = [create_issue_ui(watcher, web_server, f"{word} {n}") for n in range(3)]
    page = watcher.page
    page.goto(f"{web_server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Live {word}")
    page.click('button:has-text("Create")')
    page.fill('input[name="issue_ids"]', f"{ids[0]} {ids[1]}")
    page.click('.add-items button:has-text("Add")')
    rows = page.locator("table.ranked tbody tr.row")
    expect(rows).to_have_count(2)
    expect(page.locator(".hotlist[data-live-state='watching']")).to_have_count(1)
    hotlist_url = page.url
    bar = page.locator("#list-live")
    expect(bar).to_be_hidden()

    other = new_tab(context)
    other.page.goto(f"{web_server.url}/issues/{ids[0]}")
    other.page.fill("#comment", "Still blocking the launch")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator("#entry-2")).to_be_visible()
    expect(bar).to_have_text("1 issue changed. Refresh")
    expect(page.locator(f'tr.row[data-issue="{ids[0]}"]')).to_have_class("row live-changed")

    other.page.goto(hotlist_url)
    other.page.get_by_role("button", name=f"Remove issue {ids[1]} from this hotlist").click()
    expect(other.page.locator("table.ranked tbody tr.row")).to_have_count(1)
    expect(bar).to_have_text("1 issue changed, 1 issue left this list. Refresh")
    expect(page.locator(f'tr.row[data-issue="{ids[1]}"]')).to_have_class("row live-left")
    other.page.fill('input[name="issue_ids"]', str(ids[2]))
    other.page.click('.add-items button:has-text("Add")')
    expect(other.page.locator("table.ranked tbody tr.row")).to_have_count(2)
    expect(bar).to_have_text("2 issues changed, 1 issue left this list. Refresh")
    save_screenshot(page, tmp_path, "live-hotlist")

    bar.locator("button.refresh").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[0]))
    expect(rows.nth(1)).to_have_attribute("data-issue", str(ids[2]))
    expect(page.locator(f'tr.row[data-issue="{ids[0]}"]')).to_have_class("row")
    expect(bar).to_be_hidden()
    assert list(iter_console_problems(watcher.console)) == []
    assert watcher.dialogs == []


def test_a_changed_row_of_a_search_page_is_drawn_again_in_place(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """A row marked changed shows what changed without a refresh, unticked at its new version.

    Before, the row only got a blue edge: its priority still read P2 until
    Refresh re-ran the whole search.
    """
    word = "liverow" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    changed = create_issue_ui(watcher, web_server, f"{word} to reprioritise")
    other_id = create_issue_ui(watcher, web_server, f"{word} left alone")
    page = watcher.page
    page.goto(f"{web_server.url}/search?q={quote(word)}")
    expect(page.locator("table.results tr.row")).to_have_count(2)
    expect(page.locator(".search[data-live-state='watching']")).to_have_count(1)
    row = page.locator(f'tr.row[data-href="/issues/{changed}"]')
    expect(row.locator('input[name="issue"]')).to_have_attribute("value", f"{changed}:1")
    row.locator('input[name="issue"]').check()
    page.locator(f'tr.row[data-href="/issues/{other_id}"] input[name="issue"]').check()
    expect(page.locator(".bulk-count")).to_have_text("2 issues selected")

    other = new_tab(context)
    other.page.goto(f"{web_server.url}/issues/{changed}")
    other.page.select_option('#issue-form select[name="priority"]', "P0")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator("#entry-2")).to_be_visible()

    expect(row.locator('input[name="issue"]')).to_have_attribute("value", f"{changed}:2")
    expect(row).to_contain_text("P0")
    expect(row).to_have_class("row live-changed")
    expect(row.locator('input[name="issue"]')).not_to_be_checked()
    expect(page.locator(".bulk-count")).to_have_text("1 issue selected")
    expect(page.locator("#list-live")).to_have_text("1 issue changed. Refresh")
    expect(page.locator("table.results tr.row")).to_have_count(2)
    save_screenshot(page, tmp_path, "live-row-redrawn")
    # The row endpoint draws only what the viewer may see: none of an issue they cannot.
    hidden = page.request.get(f"{web_server.url}/search/row?issue=999999999")
    assert hidden.status == 204
    assert list(iter_console_problems(watcher.console)) == []


def test_a_hotlist_page_redraws_its_rows_their_order_and_notes_in_place(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """A colleague's priority change, re-rank and note show on an open hotlist without a reload.

    Before, a changed row only got a blue edge, and a re-rank or a note
    showed only after a reload: neither changes an issue, so no event came.
    A note typed here and not saved keeps its text through the redraws.
    """
    word = "liveranks" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    ids = [create_issue_ui(watcher, web_server, f"{word} {n}") for n in range(3)]
    page = watcher.page
    page.goto(f"{web_server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Ranks {word}")
    page.click('button:has-text("Create")')
    page.fill('input[name="issue_ids"]', " ".join(map(str, ids)))
    page.click('.add-items button:has-text("Add")')
    rows = page.locator("table.ranked tbody tr.row")
    expect(rows).to_have_count(3)
    expect(page.locator(".hotlist[data-live-state='watching']")).to_have_count(1)
    hotlist_url = page.url
    page.evaluate("window.buglessNotReloaded = true")

    other = new_tab(context)
    other.page.goto(f"{web_server.url}/issues/{ids[0]}")
    other.page.select_option('#issue-form select[name="priority"]', "P0")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator("#entry-2")).to_be_visible()
    page.bring_to_front()
    changed = page.locator(f'tr.row[data-issue="{ids[0]}"]')
    expect(changed).to_contain_text("P0")
    expect(changed).to_have_class("row live-changed")
    page.get_by_label(f"Note on issue {ids[2]}").fill("my draft")
    page.locator("h1").click()  # typed, not saved

    other.page.bring_to_front()
    other.page.goto(hotlist_url)
    other.page.get_by_label(f"New position of issue {ids[2]}").fill("1")
    other.page.get_by_role("button", name=f"Move issue {ids[2]}", exact=True).click()
    other.page.get_by_label(f"Note on issue {ids[1]}").fill("Needs a repro")
    other.page.get_by_role("button", name=f"Save the note on issue {ids[1]}").click()
    expect(other.page.get_by_label(f"Note on issue {ids[1]}")).to_have_value("Needs a repro")
    page.bring_to_front()

    # The page asks for its rows every 10 s and when it is shown again.
    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[2]), timeout=20_000)
    expect(page.get_by_label(f"Note on issue {ids[1]}")).to_have_value(
        "Needs a repro", timeout=20_000
    )
    expect(rows.nth(0).locator("td.rank")).to_have_text("⠿1")  # the grip, then its rank
    expect(rows.nth(1)).to_have_attribute("data-issue", str(ids[0]))
    expect(page.get_by_label(f"Note on issue {ids[2]}")).to_have_value("my draft")
    expect(changed).to_contain_text("P0")
    expect(changed).to_have_class("row live-changed")
    save_screenshot(page, tmp_path, "live-hotlist-ranks")
    assert page.evaluate("window.buglessNotReloaded") is True
    assert list(iter_console_problems(watcher.console)) == []
    assert watcher.dialogs == []


def test_a_hotlist_page_keeps_asking_for_its_rows_after_a_server_error(
    web_server: RunningService, context: BrowserContext
) -> None:
    """A 503 for the rows (a Model or web restarting) is tried again at the next poll.

    Before, any answer but 200 or 304 stopped the page asking for good, as
    a 404 (the hotlist deleted) should: after one restart an open hotlist
    page never showed a re-rank again until it was reloaded.
    """
    word = "rowerror" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    ids = [create_issue_ui(watcher, web_server, f"{word} {n}") for n in range(2)]
    page = watcher.page
    page.goto(f"{web_server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Rows {word}")
    page.click('button:has-text("Create")')
    refused: list[str] = []

    def first_refused(route: Route) -> None:
        if not refused:
            refused.append(route.request.url)
            route.fulfill(status=503, body="the Model is restarting")
        else:
            route.continue_()

    page.route("**/hotlists/*/rows", first_refused)
    page.fill('input[name="issue_ids"]', " ".join(map(str, ids)))
    page.click('.add-items button:has-text("Add")')
    rows = page.locator("table.ranked tbody tr.row")
    expect(rows).to_have_count(2)
    hotlist_url = page.url
    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[0]))
    # The page's first ask for its rows (at 10 s, or on being shown again) is the 503.

    other = new_tab(context)
    other.page.goto(hotlist_url)
    other.page.get_by_label(f"New position of issue {ids[1]}").fill("1")
    other.page.get_by_role("button", name=f"Move issue {ids[1]}", exact=True).click()
    expect(other.page.locator("table.ranked tbody tr.row").nth(0)).to_have_attribute(
        "data-issue", str(ids[1])
    )
    page.bring_to_front()

    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[1]), timeout=35_000)
    assert len(refused) == 1, refused


def test_a_hotlist_page_keeps_its_forms_current_after_a_re_rank_but_not_a_rename(
    web_server: RunningService, context: BrowserContext
) -> None:
    """A colleague's re-rank leaves a rename from the open page possible; their rename does not.

    A re-rank moves the hotlist's version, and before, the rename and delete
    forms kept the version the page was drawn at, so a rename from a page
    left open was a 409 asking to reload after any colleague's re-rank. A
    colleague's rename must still make this page's rename stale (it would
    overwrite theirs), even once a re-rank has been drawn after it.
    """
    word = "liveversion" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    ids = [create_issue_ui(watcher, web_server, f"{word} {n}") for n in range(3)]
    page = watcher.page
    page.goto(f"{web_server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Versions {word}")
    page.click('button:has-text("Create")')
    page.fill('input[name="issue_ids"]', " ".join(map(str, ids)))
    page.click('.add-items button:has-text("Add")')
    rows = page.locator("table.ranked tbody tr.row")
    expect(rows).to_have_count(3)
    hotlist_url = page.url
    edit_version = page.locator('form.edit-hotlist input[name="version"]')
    delete_version = page.locator('form.delete-hotlist input[name="version"]')
    drawn = int(edit_version.input_value())

    other = new_tab(context)
    other.page.goto(hotlist_url)
    other.page.get_by_label(f"New position of issue {ids[2]}").fill("1")
    other.page.get_by_role("button", name=f"Move issue {ids[2]}", exact=True).click()
    expect(other.page.locator("table.ranked tbody tr.row").nth(0)).to_have_attribute(
        "data-issue", str(ids[2])
    )
    other.page.get_by_role("button", name=f"Remove issue {ids[1]} from this hotlist").click()
    expect(other.page.locator("table.ranked tbody tr.row")).to_have_count(2)
    page.bring_to_front()

    # The page asks for its rows every 10 s and when it is shown again.
    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[2]), timeout=20_000)
    expect(edit_version).to_have_value(str(drawn + 2))
    expect(delete_version).to_have_value(str(drawn + 2))
    expect(page.locator("form.delete-hotlist label")).to_contain_text("its 2 issues leave it")
    page.click("summary:has-text('Rename or describe this hotlist')")
    page.fill('form.edit-hotlist input[name="name"]', f"Mine {word}")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click('form.edit-hotlist button:has-text("Save")')
    assert answer.value.status == 303
    expect(page.locator("h1")).to_contain_text(f"Mine {word}")

    # A colleague renames it, then re-ranks: the page draws the re-rank but
    # keeps its forms at the version before the rename.
    drawn = int(edit_version.input_value())
    other.page.goto(hotlist_url)
    other.page.click("summary:has-text('Rename or describe this hotlist')")
    other.page.fill('form.edit-hotlist input[name="name"]', f"Theirs {word}")
    other.page.click('form.edit-hotlist button:has-text("Save")')
    expect(other.page.locator("h1")).to_contain_text(f"Theirs {word}")
    other.page.get_by_label(f"New position of issue {ids[0]}").fill("1")
    other.page.get_by_role("button", name=f"Move issue {ids[0]}", exact=True).click()
    expect(other.page.locator("table.ranked tbody tr.row").nth(0)).to_have_attribute(
        "data-issue", str(ids[0])
    )
    page.bring_to_front()
    expect(rows.nth(0)).to_have_attribute("data-issue", str(ids[0]), timeout=20_000)
    expect(edit_version).to_have_value(str(drawn))
    expect(delete_version).to_have_value(str(drawn))
    page.click("summary:has-text('Rename or describe this hotlist')")
    page.fill('form.edit-hotlist input[name="name"]', f"Mine again {word}")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click('form.edit-hotlist button:has-text("Save")')
    assert answer.value.status == 409
    page.goto(hotlist_url)
    expect(page.locator("h1")).to_contain_text(f"Theirs {word}")
    assert list(iter_console_problems(watcher.console)) == [
        "error: Failed to load resource: the server responded with a status of 409 (Conflict)"
    ]


def test_a_hotlist_page_redraws_its_count_and_version_with_its_rows(
    web_server: RunningService, context: BrowserContext
) -> None:
    """The owner line's count and the "Version N · last changed" line follow the rows.

    Before, the rows were drawn again but the page went on saying "0 issues"
    and the version and time it was drawn at, and the redraw of an empty
    hotlist's rows left no ``data-rows-drawn`` (it returned first).
    """
    word = "livecount" + secrets.token_hex(4)
    watcher = new_tab(context)
    sign_in(watcher, web_server, "bob")
    ids = [create_issue_ui(watcher, web_server, f"{word} {n}") for n in range(2)]
    page = watcher.page
    page.goto(f"{web_server.url}/hotlists")
    page.click("summary:has-text('New hotlist')")
    page.fill('input[name="name"]', f"Counts {word}")
    page.click('button:has-text("Create")')
    expect(page.locator(".hotlist-count")).to_have_text("0 issues")
    expect(page.locator(".hotlist-search")).to_be_hidden()
    hotlist_url = page.url
    page.evaluate("window.buglessNotReloaded = true")
    # The page asks for its rows every 10 s and when it is shown again.
    expect(page.locator(".hotlist[data-rows-drawn]")).to_have_count(1, timeout=20_000)

    other = new_tab(context)
    other.page.goto(hotlist_url)
    other.page.fill('input[name="issue_ids"]', " ".join(map(str, ids)))
    other.page.click('.add-items button:has-text("Add")')
    expect(other.page.locator("table.ranked tbody tr.row")).to_have_count(2)
    version = other.page.locator(".hotlist-version").inner_text()
    changed = other.page.locator(".hotlist-changed time").get_attribute("datetime")
    assert changed is not None
    page.bring_to_front()

    expect(page.locator("table.ranked tbody tr.row")).to_have_count(2, timeout=20_000)
    expect(page.locator(".hotlist-count")).to_have_text("2 issues")
    expect(page.locator(".hotlist-search")).to_be_visible()
    expect(page.locator(".hotlist-version")).to_have_text(version)
    when = page.locator(".hotlist-changed time")
    expect(when).to_have_attribute("datetime", changed)
    expect(when).to_have_attribute("data-relative", "true")  # in words, as every time is

    other.page.bring_to_front()
    other.page.get_by_role("button", name=f"Remove issue {ids[0]} from this hotlist").click()
    expect(other.page.locator("table.ranked tbody tr.row")).to_have_count(1)
    version = other.page.locator(".hotlist-version").inner_text()
    page.bring_to_front()
    expect(page.locator(".hotlist-count")).to_have_text("1 issue", timeout=20_000)
    expect(page.locator(".hotlist-version")).to_have_text(version)
    assert page.evaluate("window.buglessNotReloaded") is True
    assert list(iter_console_problems(watcher.console)) == []
