"""@name completion in Markdown text boxes, in Chromium against a real web server.

Typing ``@ca`` in the comment box lists matching people from the existing
``/suggest/users`` endpoint; the keyboard moves through the list and picks;
the saved comment links the person (the same ``@name`` grammar the
notifier reads). The create form's description box completes the same way.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from browser_support import (
    create_issue_ui,
    iter_console_problems,
    new_tab,
    save_screenshot,
    sign_in,
)
from playwright.sync_api import BrowserContext, expect
from web_support import PASSWORD, World

from bugless_dev.stack import RunningService


def test_at_name_completes_from_the_keyboard_in_the_comment_box(
    web_server: RunningService, context: BrowserContext, tmp_path: Path
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    create_issue_ui(tab, web_server, "Mention completion")
    box = page.locator("#comment")
    box.click()
    box.press_sequentially("Thanks @ca", delay=30)
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    expect(listbox).to_be_visible()
    # Screen readers hear that it opened (a text area may not carry aria-expanded).
    expect(page.locator("#comment ~ .mention-status")).to_have_text(
        "1 person matches: arrow keys choose, Enter inserts, Escape closes"
    )
    option = listbox.locator('li[data-username="carol"]')
    expect(option).to_contain_text("Carol Coder")
    expect(option).to_have_attribute("aria-selected", "true")
    save_screenshot(page, tmp_path, "60-mention-list")
    # Moving down wraps back to carol (the only match); Escape closes, typing reopens.
    box.press("ArrowDown")
    expect(option).to_have_attribute("aria-selected", "true")
    box.press("Escape")
    expect(listbox).to_be_hidden()
    box.press_sequentially("r", delay=30)
    expect(option).to_be_visible()
    box.press("Enter")  # picks; does not submit the form or add a line
    expect(listbox).to_be_hidden()
    expect(box).to_have_value("Thanks @carol ")
    box.press_sequentially("for the fix.", delay=10)
    page.click('#issue-form button:has-text("Save")')
    mention = page.locator('.comment a[href="/users/carol"]')
    expect(mention).to_have_text("@carol")
    assert list(iter_console_problems(tab.console)) == []


def test_the_description_box_completes_too_and_mouse_picks(
    web_server: RunningService, context: BrowserContext
) -> None:
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    page.goto(f"{web_server.url}/issues/new")
    box = page.locator('#create-form textarea[name="description"]')
    box.click()
    box.press_sequentially("Ask @al", delay=30)
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    option = listbox.locator('li[data-username="alice"]')
    expect(option).to_be_visible()
    option.click()
    expect(box).to_have_value("Ask @alice ")
    # No list for an e-mail address or a lone "@".
    box.press_sequentially("or mail x@ali", delay=30)
    page.wait_for_timeout(600)
    expect(listbox).to_be_hidden()
    assert list(iter_console_problems(tab.console)) == []


def test_a_name_in_any_script_completes_and_links(
    web_server: RunningService, world: World, context: BrowserContext
) -> None:
    """ "@Öla…" opens the list as "@ca" does (the box's grammar is the usernames' own)."""
    tag = secrets.token_hex(3)
    olaf = f"Ölaf{tag}"
    world.stack.add_user(olaf, PASSWORD, display_name=f"Ölaf Browser {tag}")
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, web_server, "bob")
    create_issue_ui(tab, web_server, "Mention completion in any script")
    box = page.locator("#comment")
    box.click()
    box.press_sequentially(f"Danke @Ölaf{tag[:4]}", delay=30)
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    option = listbox.locator(f'li[data-username="{olaf}"]')
    expect(option).to_be_visible()
    option.click()
    expect(box).to_have_value(f"Danke @{olaf} ")
    page.click('#issue-form button:has-text("Save")')
    mention = page.locator(f'.comment a[href="/users/%C3%96laf{tag}"]')
    expect(mention).to_have_text(f"@{olaf}")
    mention.click()
    expect(page.locator("body")).to_contain_text(f"Ölaf Browser {tag}")
    assert list(iter_console_problems(tab.console)) == []
