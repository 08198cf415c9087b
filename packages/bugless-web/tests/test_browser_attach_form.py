"""Attaching without JavaScript: the plain upload form, in headless Chromium with script off.

A Model of its own runs with a 256 KiB per-file limit (beside the session's,
on the same database), and a web replica talks to it, so a file over the
limit is quick to send and the 413 page can be checked for the limit's name.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import create_issue_ui, new_tab, save_screenshot, sign_in
from playwright.sync_api import Browser, BrowserContext, FilePayload, expect
from web_support import World

from bugless_dev.stack import RunningService

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def small_limit_web(world: World) -> Iterator[RunningService]:
    """A web replica on a Model that refuses files over :data:`LIMIT` bytes."""
    stack = world.stack
    model = stack.start(
        "model",
        ["model", "serve", "--port", "0"],
        name="model-small-files",
        env={"BUGLESS_ATTACHMENT_MAX_FILE_BYTES": str(LIMIT)},
    )
    try:
        # Flags after the stack's own win: this replica uses the small-files Model.
        web = stack.start_web(
            "--model", f"127.0.0.1:{model.port}", env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2"}
        )
        try:
            yield web
        finally:
            stack.stop_service(web)
    finally:
        stack.stop_service(model)


@pytest.fixture
def no_script(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile with JavaScript disabled."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, java_script_enabled=False)
    try:
        yield ctx
    finally:
        ctx.close()


def test_the_form_attaches_without_script_and_names_the_limit_when_too_large(
    small_limit_web: RunningService,
    context: BrowserContext,
    no_script: BrowserContext,
    tmp_path: Path,
) -> None:
    maker = new_tab(context)
    sign_in(maker, small_limit_web, "bob")
    issue_id = create_issue_ui(maker, small_limit_web, "Attach with script off")
    tab = new_tab(no_script)
    page = tab.page
    sign_in(tab, small_limit_web, "bob")
    assert page.evaluate("1 + 1") == 2  # evaluation still works: only the page's script is off
    issue_url = f"{small_limit_web.url}/issues/{issue_id}"
    page.goto(issue_url)
    # The script's drop zone stays hidden; the plain form is what is offered.
    expect(page.locator(".attach-zone")).to_be_hidden()
    content = secrets.token_bytes(LIMIT - 1000)  # several chunks of the stream to the Model
    form = page.locator("form.attach-form")
    form.locator('input[name="file"]').set_input_files(
        files=FilePayload(name="core dump.bin", mimeType="application/octet-stream", buffer=content)
    )
    form.locator('button:has-text("Attach")').click()
    expect(page).to_have_url(f"{issue_url}#attachments")
    item = page.locator(".attachment-list li.attachment")
    expect(item).to_have_count(1)
    expect(item.locator(":scope > a")).to_have_text("core dump.bin")
    expect(page.locator("article.entry").last).to_contain_text("core dump.bin")
    save_screenshot(page, tmp_path, "63-attached-without-script")
    href = item.locator(":scope > a").get_attribute("href")
    assert href is not None
    download = no_script.request.get(f"{small_limit_web.url}{href}")
    assert download.status == 200
    assert download.body() == content

    # Over the Model's limit: a 413 page naming it; nothing attached.
    page.goto(issue_url)
    huge = secrets.token_bytes(3 * LIMIT)
    form.locator('input[name="file"]').set_input_files(
        files=FilePayload(name="huge.bin", mimeType="application/octet-stream", buffer=huge)
    )
    with page.expect_response(lambda r: r.url.endswith("/attachments/form")) as answer:
        form.locator('button:has-text("Attach")').click()
    assert answer.value.status == 413
    expect(page.locator("main")).to_contain_text("BUGLESS_ATTACHMENT_MAX_FILE_BYTES")
    save_screenshot(page, tmp_path, "64-attachment-too-large-without-script")
    page.goto(issue_url)
    expect(page.locator(".attachment-list li.attachment")).to_have_count(1)
    assert tab.dialogs == []


def test_files_chosen_on_the_create_form_are_attached_to_the_new_issue(
    small_limit_web: RunningService,
    context: BrowserContext,
    no_script: BrowserContext,
    tmp_path: Path,
) -> None:
    """Before, a reporter could attach nothing when filing: create, then attach from the issue.

    The issue is made first, then each file goes to it: one over the Model's
    limit is named with the reason on the new issue's page, the issue and the
    other file kept. A form that comes back with a problem makes nothing and
    asks for the files again. With script on and off: the same plain form.
    """
    small = secrets.token_bytes(LIMIT // 2)
    for name, ctx in (("script", context), ("no-script", no_script)):
        tab = new_tab(ctx)
        page = tab.page
        sign_in(tab, small_limit_web, "bob")
        page.goto(f"{small_limit_web.url}/issues/new")
        page.select_option("#component-picker", label="Platform")
        page.wait_for_load_state("networkidle")
        title = f"Filed with files {name} {secrets.token_hex(3)}"
        page.fill('#create-form input[name="title"]', title)
        page.fill('#create-form input[name="assignee"]', "nobody-" + secrets.token_hex(3))
        page.locator('#create-form input[name="attachments"]').set_input_files(
            files=[FilePayload(name="trace.txt", mimeType="text/plain", buffer=small)]
        )
        page.click('#create-form button:has-text("Create issue")')
        # A problem: nothing made, the title kept, the files asked for again.
        expect(page.locator("#create-form .field-error[role=alert]")).to_contain_text(
            "choose them again"
        )
        expect(page.locator('#create-form input[name="title"]')).to_have_value(title)

        page.fill('#create-form input[name="assignee"]', "")
        page.locator('#create-form input[name="attachments"]').set_input_files(
            files=[
                FilePayload(name="trace.txt", mimeType="text/plain", buffer=small),
                FilePayload(
                    name="core.bin",
                    mimeType="application/octet-stream",
                    buffer=secrets.token_bytes(3 * LIMIT),
                ),
            ]
        )
        page.click('#create-form button:has-text("Create issue")')
        expect(page.locator(".issue-title")).to_have_text(title)
        issue_id = page.url.rsplit("/", 1)[-1].split("#")[0]
        expect(page.locator(".banner.notice")).to_have_text(
            f"Created issue {issue_id} with 1 file attached."
        )
        warning = page.locator(".banner.warn.save-warning")
        expect(warning).to_contain_text("Not attached: core.bin (")
        expect(warning).to_contain_text("BUGLESS_ATTACHMENT_MAX_FILE_BYTES")
        expect(warning).to_contain_text("The issue was created: attach them again")
        item = page.locator(".attachment-list li.attachment")
        expect(item).to_have_count(1)
        expect(item.locator(":scope > a")).to_have_text("trace.txt")
        save_screenshot(page, tmp_path, f"65-created-with-files-{name}")
        href = item.locator(":scope > a").get_attribute("href")
        assert href is not None
        download = ctx.request.get(f"{small_limit_web.url}{href}")
        assert download.status == 200
        assert download.body() == small
        assert tab.dialogs == []
        page.close()
