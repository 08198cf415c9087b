"""A real ``bugless web serve`` process and a headless Debian chromium driven by Playwright.

Browser tests are skipped by nothing: when chromium is missing they fail with
the apt command to run, because CI treats a skip as a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import expect
from web_support import PASSWORD

from bugless_dev.stack import LocalStack, RunningService

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Dialog, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the best screenshots (and axe's findings) are copied for people to
#: look at: ``BUGLESS_TEST_SCREENS``, else ``bugless-screens`` in the system's
#: temporary directory.
SHARED_SCREENS = Path(
    os.environ.get("BUGLESS_TEST_SCREENS") or Path(tempfile.gettempdir(), "bugless-screens")
)


def start_web_server(
    stack: LocalStack,
    *,
    extra_env: Mapping[str, str] | None = None,
    auth_port: int | None = None,
    port: int = 0,
) -> RunningService:
    """Start ``bugless web serve`` (dev mode) through the stack and wait until it is ready.

    ``auth_port`` points it at another Authenticator of the stack; ``port``
    0 lets it pick one (read back from its ready file).
    """
    extra = ["--auth", f"127.0.0.1:{auth_port}"] if auth_port else []
    return stack.start_web(
        *extra, port=port, env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2", **(extra_env or {})}
    )


def require_chromium() -> None:
    """Fail (not skip) with the fix when the browser is missing."""
    if not shutil.which(CHROMIUM):
        msg = "browser tests need Debian's chromium: apt-get install -y chromium fonts-dejavu-core"
        raise RuntimeError(msg)


def save_screenshot(page: Page, tmp_dir: Path, name: str, *, share: bool = True) -> Path:
    """Screenshot to the test's tmp dir, and a copy under SHARED_SCREENS."""
    path = tmp_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if share:
        SHARED_SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHARED_SCREENS / path.name)
    return path


def iter_console_problems(messages: list[str]) -> Iterator[str]:
    """Console lines that signal trouble (CSP violations, script errors)."""
    for line in messages:
        if "status of 400" in line:  # the query-error page is a 400 on purpose
            continue
        if any(word in line.lower() for word in ("error", "refused", "violat", "xss")):
            yield line


class Tab:
    """A page plus what it saw: dialogs (must stay empty) and console lines."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.console: list[str] = []
        #: Console lines with the URL they came from (pages of other sites,
        #: like an OIDC provider's, log their own problems).
        self.console_sources: list[tuple[str, str]] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text}"
        self.console.append(line)
        self.console_sources.append((message.location.get("url", ""), line))

    def console_from(self, origin: str) -> list[str]:
        """Console lines logged by pages and resources of ``origin``."""
        return [line for url, line in self.console_sources if url.startswith(origin)]


def new_tab(context: BrowserContext) -> Tab:
    """A new page in ``context``, watched."""
    return Tab(context.new_page())


def sign_in(tab: Tab, server: RunningService, username: str) -> None:
    """Sign in through the form (the browser lands on the home page)."""
    tab.page.goto(f"{server.url}/")
    expect(tab.page).to_have_url(f"{server.url}/signin")
    tab.page.fill('input[name="username"]', username)
    tab.page.fill('input[name="password"]', PASSWORD)
    tab.page.click('button:has-text("Sign in")')
    expect(tab.page.locator(".me .chip")).to_be_visible()


def create_issue_ui(
    tab: Tab,
    server: RunningService,
    title: str,
    *,
    component: str = "Platform",
    description: str = "",
) -> int:
    """Create an issue through the create form; returns its id."""
    page = tab.page
    page.goto(f"{server.url}/issues/new")
    page.select_option("#component-picker", label=component)
    # The component's template and fields arrive by script; type once they are in.
    page.wait_for_load_state("networkidle")
    page.fill('#create-form input[name="title"]', title)
    if description:
        page.fill('#create-form textarea[name="description"]', description)
    page.click('#create-form button:has-text("Create issue")')
    expect(page.locator(".issue-title")).to_have_text(title)
    # The title is there while the page still parses, before its deferred
    # scripts (completion, attachments, previews) have run: the caller's
    # next step may need them.
    page.wait_for_load_state()
    return int(page.url.rsplit("/", 1)[1].split("#")[0])


#: The innermost elements whose right edge is past the window's (five at most).
_WIDEST = """() => {
  const limit = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll("body *"))
    .filter((el) => el.getBoundingClientRect().right > limit + 1)
    .slice(-5)
    .map((el) => el.tagName.toLowerCase() + "." + el.className);
}"""


def wider_than_window(page: Page) -> list[str]:
    """The innermost elements sticking out on the right (for the failure message)."""
    found: list[str] = page.evaluate(_WIDEST)
    return found
