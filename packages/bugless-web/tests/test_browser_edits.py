"""Comment edits, redaction and custom fields in a real browser (Debian chromium, headless)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import Browser, BrowserContext, FilePayload, expect
from web_support import World

from bugless_dev.stack import RunningService


def test_edit_own_comment_then_an_admin_redacts_it(
    web_server: RunningService, browser: Browser, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Edit then redact in the browser")
    page.fill("#comment", "The token is tok3nleakedvalue")
    page.click('#issue-form button:has-text("Save")')
    entry = page.locator("article.entry[data-version='2']")
    expect(entry.locator(".comment")).to_contain_text("tok3nleakedvalue")
    entry.locator("details.edit-comment > summary").click()
    entry.locator(".edit-comment-form textarea").fill("The token was rotated")
    entry.locator('.edit-comment-form button:has-text("Save edit")').click()
    entry = page.locator("article.entry[data-version='2']")
    expect(entry.locator(".comment").first).to_have_text("The token was rotated")
    expect(entry.locator(".edited-mark")).to_have_text("edited")
    earlier = entry.locator("details.versions")
    expect(earlier.locator(".earlier-version")).not_to_be_visible()
    page.wait_for_load_state()  # the mark's handler (pages.js) runs once the page has parsed
    entry.locator(".edited-mark").click()  # one click: the mark opens the earlier versions
    expect(earlier.locator(".earlier-version")).to_be_visible()
    expect(earlier.locator(".earlier-version")).to_contain_text("tok3nleakedvalue")
    expect(page.locator("article.edit-record")).to_contain_text("edited the comment of #2")
    save_screenshot(page, tmp_path, "40-comment-edited")

    admin_context = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        admin = new_tab(admin_context)
        sign_in(admin, web_server, "alice")
        admin.page.goto(f"{web_server.url}/issues/{issue_id}")
        target = admin.page.locator("article.entry[data-version='2']")
        target.locator("details.redact > summary").click()
        target.locator('button:has-text("Redact permanently")').click()
        target = admin.page.locator("article.entry[data-version='2']")
        expect(target.locator(".redacted-marker")).to_have_text("Comment redacted.")
        expect(target.locator("details.versions")).to_have_count(0)
        expect(admin.page.locator("article.redaction-record")).to_contain_text(
            "redacted the comment of #2"
        )
        expect(admin.page.locator("body")).not_to_contain_text("tok3nleakedvalue")
        save_screenshot(admin.page, tmp_path, "41-comment-redacted")
        assert list(iter_console_problems(admin.console)) == []
        assert admin.dialogs == []
    finally:
        admin_context.close()
    assert list(iter_console_problems(tab.console)) == []


def test_an_admin_redacts_a_files_content_from_the_attachment_list(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """Redact… on a file, then "Redact content": the notice, the marker and the record entry."""
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "alice")
    issue_id = create_issue_ui(tab, web_server, "Redact a file in the browser")
    form = page.locator("aside.fields form.attach-form")
    form.locator('input[name="file"]').set_input_files(
        files=FilePayload(name="leak.txt", mimeType="text/plain", buffer=b"password=hunter2\n")
    )
    form.locator('button:has-text("Attach")').click()
    item = page.locator(".attachment-list li.attachment", has_text="leak.txt")
    expect(item).to_have_count(1)
    attachment_id = item.get_attribute("data-attachment")
    # An attached file has no description: only its content can be redacted.
    expect(item.locator("button.danger", has_text="Redact description")).to_have_count(0)
    item.locator("details.redact-attachment > summary").click()
    item.locator('button:has-text("Redact content")').click()
    expect(page).to_have_url(re.compile(rf"/issues/{issue_id}#entry-\d+$"))
    expect(page.locator(".banner.notice")).to_have_text(
        f"Redacted the content of attachment {attachment_id}, for good."
    )
    item = page.locator(".attachment-list li.attachment", has_text="leak.txt")
    expect(item).to_contain_text("content redacted")
    expect(item.locator("details.redact-attachment")).to_have_count(0)
    expect(page.locator("article.redaction-record")).to_contain_text(
        f"redacted attachment {attachment_id}"
    )
    save_screenshot(page, tmp_path, "42-attachment-content-redacted")
    assert list(iter_console_problems(tab.console)) == []
    assert tab.dialogs == []


def test_define_a_custom_field_fill_it_on_create_and_search_by_it(
    web_server: RunningService, context: BrowserContext, world: World, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "alice")
    name = f"Browser{secrets.token_hex(3)}"
    page.goto(f"{web_server.url}/components/new?parent={world.components['Platform']}")
    page.fill('form.stack input[name="name"]', name)
    page.click('button:has-text("Create component")')
    page.click("a.custom-fields-link")
    form = page.locator("#new-field-form")
    field_name = f"Found In {name}"
    form.locator('input[name="name"]').fill(field_name)
    form.locator('select[name="type"]').select_option("enum")
    form.locator('textarea[name="options"]').fill("4.1\n4.2")
    form.locator('button:has-text("Define field")').click()
    expect(page.locator(".custom-field-list .cf-name")).to_have_text(field_name)
    save_screenshot(page, tmp_path, "42-custom-field-defined")

    page.goto(f"{web_server.url}/issues/new")
    expect(page.locator("#custom-fields select")).to_have_count(0)
    page.select_option("#component-picker", label=f"Platform>{name}")
    custom = page.locator("#custom-fields select")
    expect(custom).to_have_count(1)  # swapped in without a reload
    custom.select_option("4.2")
    page.fill('#create-form input[name="title"]', "Made with a custom field")
    page.click('#create-form button:has-text("Create issue")')
    expect(page.locator(".fields .cf-value")).to_have_text("4.2")
    expect(page.locator("#issue-form .custom-fields")).to_have_count(1)
    issue_id = int(page.url.rsplit("/", 1)[1].split("#")[0])
    # Change it through the edit form: the history shows the field's name.
    page.locator("#issue-form .custom-fields select").select_option("4.1")
    page.click('#issue-form button:has-text("Save")')
    expect(page.locator(".fields .cf-value")).to_have_text("4.1")
    expect(page.locator("#entries")).to_contain_text(f"{field_name}: 4.2 → 4.1")
    save_screenshot(page, tmp_path, "43-custom-field-on-issue")

    page.fill("#q", f'"{field_name}":4.1')
    page.press("#q", "Enter")
    expect(page.locator(f'a.open-link:has-text("{issue_id}")')).to_have_count(1)
    assert list(iter_console_problems(tab.console)) == []
