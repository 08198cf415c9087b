"""Forms in a real browser: the create form's template, field errors, Markdown preview."""

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


def test_picking_a_component_fills_the_template_without_losing_typed_text(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    page.goto(f"{web_server.url}/issues/new")
    form = page.locator("#create-form")
    form.locator('input[name="title"]').fill("Typed first, picked later")
    form.locator('textarea[name="description"]').fill("Details I wrote before choosing.")
    form.locator('select[name="severity"]').select_option("S0")
    page.evaluate("window.__same_page = true")
    page.select_option("#component-picker", label="Platform>Storage")
    # Untouched fields take Storage's template; typed ones stay.
    expect(form.locator('select[name="priority"]')).to_have_value("P1")
    expect(form.locator('input[name="title"]')).to_have_value("Typed first, picked later")
    expect(form.locator('textarea[name="description"]')).to_have_value(
        "Details I wrote before choosing."
    )
    expect(form.locator('select[name="severity"]')).to_have_value("S0")
    expect(page.locator(".component-description")).to_have_text("Disks and databases")
    assert page.evaluate("window.__same_page") is True  # no reload
    save_screenshot(page, tmp_path, "20-create-template-kept")
    form.locator('button:has-text("Create issue")').click()
    expect(page.locator(".issue-title")).to_have_text("Typed first, picked later")
    expect(page.locator(".fields")).to_contain_text("P1")
    expect(page.locator(".fields")).to_contain_text("S0")
    expect(page.locator(".comment")).to_contain_text("Details I wrote before choosing.")
    assert list(iter_console_problems(tab.console)) == []


def test_a_refused_edit_focuses_the_field_at_fault_with_its_message(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Focus goes to the mistake")
    page.fill('#issue-form input[name="parent_id"]', "987654321")
    page.fill("#comment", "A comment that must not be lost")
    page.click('#issue-form button:has-text("Save")')
    parent = page.locator('#issue-form input[name="parent_id"]')
    expect(parent).to_have_attribute("aria-invalid", "true")
    expect(parent).to_be_focused()
    described_by = parent.get_attribute("aria-describedby")
    assert described_by
    expect(page.locator(f"#{described_by}")).to_contain_text("issue 987654321 not found")
    expect(page.locator(f"#{described_by}")).to_be_in_viewport()
    expect(page.locator("#comment")).to_have_value("A comment that must not be lost")
    assert page.url.endswith(f"/issues/{issue_id}")
    save_screenshot(page, tmp_path, "21-field-error-focused")
    assert list(iter_console_problems(tab.console)) == []


def test_every_markdown_box_has_a_preview_tab_rendered_by_the_server(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Preview before saving")
    draft = "**Plan** for #1:\n\n- [x] reproduce\n- [ ] fix https://example.com/doc\n"
    page.fill("#comment", draft)
    box = page.locator(".comment-box")
    box.locator('button[role="tab"]:has-text("Preview")').click()
    preview = box.locator(".md-preview")
    expect(preview.locator("strong")).to_have_text("Plan")
    expect(preview.locator('a[href="/issues/1"]')).to_have_text("#1")
    expect(preview.locator('a[href="https://example.com/doc"]')).to_be_visible()
    boxes = preview.locator('input[type="checkbox"]')
    expect(boxes).to_have_count(2)
    expect(boxes.nth(0)).to_be_checked()
    expect(boxes.nth(0)).to_be_disabled()
    expect(page.locator("#comment")).to_be_hidden()
    save_screenshot(page, tmp_path, "22-markdown-preview")
    box.locator('button[role="tab"]:has-text("Write")').click()
    expect(page.locator("#comment")).to_have_value(draft)
    page.click('#issue-form button:has-text("Save")')
    entry = page.locator("#entry-2 .comment")
    expect(entry.locator('input[type="checkbox"]')).to_have_count(2)
    expect(entry.locator('a[href="/issues/1"]')).to_be_visible()
    assert page.url.split("#")[0].endswith(f"/issues/{issue_id}")
    # The create form's description has the tab too.
    page.goto(f"{web_server.url}/issues/new")
    expect(page.locator('#create-form button[role="tab"]:has-text("Preview")')).to_be_visible()
    assert list(iter_console_problems(tab.console)) == []
