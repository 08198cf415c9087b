"""Attachments in a real browser (headless chromium): drop, paste, thumbnails, inert files."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import BrowserContext, Page, Route, expect

from bugless_dev.stack import RunningService

HTML = (
    "<!doctype html><html><body>"
    "<script>document.title='pwned';alert('html ran')</script></body></html>"
)
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg ran\')">'
    "<script>alert('svg script ran')</script></svg>"
)


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xd0\x30\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _send(page: Page, how: str, name: str, content: bytes, content_type: str) -> None:
    """Drop a file on, or paste it into, the comment box, as the browser would."""
    page.evaluate(
        """([how, name, bytes, type]) => {
            const area = document.querySelector('textarea[data-attach-url]');
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], name, { type }));
            const options = { bubbles: true, cancelable: true };
            const event = how === 'drop'
                ? new DragEvent('drop', { ...options, dataTransfer: data })
                : new ClipboardEvent('paste', { ...options, clipboardData: data });
            area.dispatchEvent(event);
        }""",
        [how, name, list(content), content_type],
    )


def test_drop_and_paste_attach_with_progress_and_thumbnails(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Attach by drag-and-drop and paste")
    _send(page, "drop", "dropped.png", png(64, 48), "image/png")
    done = page.locator(".attach-progress li.done")
    expect(done).to_have_count(1)
    _send(page, "paste", "", png(32, 32), "image/png")
    expect(done).to_have_count(2)
    expect(page.locator(".attach-progress progress").first).to_have_attribute("value", "100")
    comment = page.locator('#issue-form textarea[name="comment"]')
    expect(comment).to_have_value(re.compile(r"!\[dropped\.png\]\(/attachments/\d+/dropped\.png\)"))
    expect(comment).to_have_value(re.compile(r"!\[pasted-[^\]]+\.png\]\(/attachments/"))
    save_screenshot(page, tmp_path, "60-attachments-uploaded")

    page.goto(f"{web_server.url}/issues/{issue_id}")
    thumbs = page.locator("article.entry img.thumb")
    expect(thumbs).to_have_count(2)
    for index in range(2):
        thumb = thumbs.nth(index)
        thumb.scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
        )
    expect(page.locator(".attachment-list li.attachment")).to_have_count(2)
    # Inset in their entry as a comment's text is, not against its border.
    for index in range(2):
        inset = thumbs.nth(index).evaluate(
            "t => t.getBoundingClientRect().left"
            " - t.closest('article').getBoundingClientRect().left"
        )
        assert inset >= 10, inset
    save_screenshot(page, tmp_path, "61-attachment-thumbnails")

    first = page.locator(".attachment-list li.attachment").first
    first.locator('button:has-text("delete")').click()
    expect(page.locator(".attachment-list li.attachment")).to_have_count(1)
    expect(page.locator("article.entry").last).to_contain_text("deleted attachment")
    assert list(iter_console_problems(tab.console)) == []
    assert tab.dialogs == []


def test_a_comment_saved_after_uploads_from_its_box_is_not_a_conflict(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """Drop files, write about them, Save: the comment is saved, not refused as stale.

    Each upload is an issue version of its own; the form named the version
    before them, so Save answered the "Someone changed this issue" page (409)
    for the person's own files. A change by anyone else still comes first.
    """
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Attach, then comment about it")
    _send(page, "drop", "one.txt", b"first log\n", "text/plain")
    _send(page, "drop", "two.txt", b"second log\n", "text/plain")
    expect(page.locator(".attach-progress li.done")).to_have_count(2)
    expect(page.locator('#issue-form input[name="version"]')).to_have_value("3")
    # The live timeline shows the uploads; they are not someone else's change.
    expect(page.locator("#entry-3")).to_be_attached()
    expect(page.locator("#live-notice")).to_be_hidden()
    comment = page.locator('#issue-form textarea[name="comment"]')
    comment.press_sequentially("Both logs show the crash.")
    with page.expect_response(f"{web_server.url}/issues/{issue_id}") as posted:
        page.click('#issue-form button:has-text("Save")')
    assert posted.value.status == 303
    expect(page).to_have_url(f"{web_server.url}/issues/{issue_id}#entry-4")
    expect(page.locator(".conflict")).to_have_count(0)
    saved = page.locator("#entry-4")
    expect(saved).to_contain_text("Both logs show the crash.")
    expect(saved.locator('a[href*="/one.txt"]')).to_have_count(1)
    save_screenshot(page, tmp_path, "62-comment-after-uploads")

    # Someone else's change between an upload and the save is still shown first.
    _send(page, "drop", "three.txt", b"third log\n", "text/plain")
    expect(page.locator(".attach-progress li.done")).to_have_count(1)
    expect(page.locator('#issue-form input[name="version"]')).to_have_value("5")
    other = new_tab(context)
    other.page.goto(f"{web_server.url}/issues/{issue_id}")
    other.page.fill('#issue-form input[name="title"]', "Attach, then comment (retitled)")
    other.page.click('#issue-form button:has-text("Save")')
    expect(other.page.locator(".issue-title")).to_have_text("Attach, then comment (retitled)")
    expect(page.locator("#live-notice")).to_be_visible()
    comment.press_sequentially("And the third.")
    page.click('#issue-form button:has-text("Save")')
    expect(page.locator(".conflict")).to_contain_text("Someone changed this issue")
    expect(page.locator(".conflict .meanwhile")).to_contain_text("retitled")
    assert [line for line in iter_console_problems(tab.console) if "409" not in line] == []
    assert tab.dialogs == []


def test_save_pressed_while_an_upload_runs_waits_for_it(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    """Save while a file still goes up: the comment is saved once it is attached, linking it.

    Before, Save left at once: the comment was saved without the link the
    upload adds, and the navigation cut uploads still running, so the file
    the comment spoke of could be missing. An upload that fails while the
    save waits saves nothing and says so; the comment stays as typed.
    """
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Save while uploading")
    issue_url = f"{web_server.url}/issues/{issue_id}"
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(f"**/issues/{issue_id}/attachments", hold)

    def wait_for_upload(count: int) -> None:
        for _ in range(200):
            if len(held) == count:
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"{count} uploads were expected, {len(held)} were sent")

    _send(page, "drop", "slow.log", b"a slow log\n", "text/plain")
    wait_for_upload(1)
    comment = page.locator('#issue-form textarea[name="comment"]')
    comment.press_sequentially("The log shows it.")
    page.click('#issue-form button:has-text("Save")')
    waiting = page.locator(".attach-wait")
    expect(waiting).to_have_text("Saving once the upload finishes…")
    expect(waiting).to_have_attribute("role", "status")
    page.wait_for_timeout(300)
    assert page.url == issue_url
    held[0].continue_()
    expect(page).to_have_url(f"{issue_url}#entry-3")
    saved = page.locator("#entry-3")
    expect(saved).to_contain_text("The log shows it.")
    expect(saved.locator('a[href$="/slow.log"]')).to_have_count(1)
    expect(page.locator("#entry-2")).to_contain_text("slow.log")
    save_screenshot(page, tmp_path, "63-saved-after-the-upload")

    # An upload refused while the save waits: nothing is saved, the reason shows.
    _send(page, "drop", "huge.log", b"too big\n", "text/plain")
    wait_for_upload(2)
    comment.press_sequentially("And the second one.")
    page.click('#issue-form button:has-text("Save")')
    expect(waiting).to_have_text("Saving once the upload finishes…")
    held[1].fulfill(
        status=413,
        content_type="application/json",
        body='{"error": "huge.log is over the 1 KiB limit"}',
    )
    expect(waiting).to_contain_text("Not saved: an upload failed")
    expect(page.locator(".attach-progress li.failed")).to_contain_text("over the 1 KiB limit")
    assert page.url == f"{issue_url}#entry-3"
    expect(comment).to_have_value("And the second one.")
    expect(page.locator("#entry-4")).to_have_count(0)
    page.click('#issue-form button:has-text("Save")')
    expect(page).to_have_url(f"{issue_url}#entry-4")
    expect(page.locator("#entry-4")).to_contain_text("And the second one.")
    assert [line for line in iter_console_problems(tab.console) if "413" not in line] == []
    assert tab.dialogs == []


def test_uploaded_html_and_svg_never_run_script(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    issue_id = create_issue_ui(tab, web_server, "Hostile files stay inert")
    for name, text, kind in (
        ("evil.html", HTML, "text/html"),
        ("evil.svg", SVG, "image/svg+xml"),
        ("notes.txt", "log line <script>alert('text ran')</script>\n" + HTML, "text/plain"),
    ):
        _send(page, "drop", name, text.encode(), kind)
    expect(page.locator(".attach-progress li.done")).to_have_count(3)
    page.goto(f"{web_server.url}/issues/{issue_id}")
    urls = {
        str(a.text_content()): f"{web_server.url}{a.get_attribute('href')}"
        for a in page.locator(".attachment-list li.attachment > a").all()
    }
    assert set(urls) == {"evil.html", "evil.svg", "notes.txt"}

    # HTML and SVG are saved, not shown: navigating to them starts a download.
    for name in ("evil.html", "evil.svg"):
        with page.expect_download() as info:
            page.evaluate("url => { window.location.href = url; }", urls[name])
        download = info.value
        assert download.suggested_filename == name
        assert Path(download.path()).read_text() in (HTML, SVG)
    # Plain text is shown as text: the markup in it is just characters.
    page.goto(urls["notes.txt"])
    expect(page.locator("body")).to_contain_text("<script>alert('text ran')</script>")
    assert page.title() != "pwned"
    # Even framed into a page of the site, the download response runs nothing.
    page.goto(f"{web_server.url}/issues/{issue_id}")
    page.evaluate(
        """url => { const f = document.createElement('iframe'); f.src = url;
                    document.body.appendChild(f); }""",
        urls["evil.svg"],
    )
    page.wait_for_timeout(500)
    save_screenshot(page, tmp_path, "62-hostile-files-inert")
    assert tab.dialogs == []
    assert page.title() != "pwned"
