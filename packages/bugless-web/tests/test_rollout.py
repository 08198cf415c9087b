"""Two real web versions with incompatible forms behind one HAProxy, in Chromium.

Version A is the installed ``bugless_web``; version B is a copy of it with a
changed stylesheet (other asset hashes) and the next form contract, run from
``PYTHONPATH`` as a second build would be. Both serve an asset archive that
holds A's files, as a release image carries its predecessors'. HAProxy
listens on a socket this test bound (``bind fd@N``: no port race) and sends
traffic where each step needs it, the way a rollout moves it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_support import require_chromium, start_web_server
from playwright.sync_api import Browser, Page, expect
from web_support import PASSWORD, World

import bugless_web
from bugless_core.clients import call
from bugless_dev.processes import run_in_thread
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_web.assets import AssetCatalog
from bugless_web.builds import FORM_CONTRACT, export_assets

HAPROXY = "/usr/sbin/haproxy"
#: The issue page's live stream (``/issues/N/events``).
_LIVE_STREAM = re.compile(r"/issues/\d+/events")


@dataclass
class Versions:
    a: RunningService
    b: RunningService
    a_build: str
    b_build: str


def _version_b(root: Path) -> Path:
    """A second build: other asset hashes and the next form contract."""
    copy = root / "bugless_web"
    shutil.copytree(
        Path(bugless_web.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    css = copy / "static" / "app.css"
    css.write_text(css.read_text() + "\n/* version B */\n")
    builds = copy / "builds.py"
    builds.write_text(
        re.sub(
            r"^FORM_CONTRACT = \d+$",
            f"FORM_CONTRACT = {FORM_CONTRACT + 1}",
            builds.read_text(),
            flags=re.M,
        )
    )
    return root


class Proxy:
    """HAProxy on a socket bound here, restarted with another routing when asked."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.process: subprocess.Popen[bytes] | None = None

    def route(self, backend: str) -> None:
        """(Re)start HAProxy with ``backend`` as its web backend section body."""
        self.stop()
        config = self.directory / "haproxy.cfg"
        config.write_text(
            "defaults\n    mode http\n    timeout connect 2s\n"
            "    timeout client 60s\n    timeout server 60s\n"
            f"frontend web_in\n    bind fd@{self.listener.fileno()}\n    default_backend web\n"
            f"backend web\n{backend}"
        )
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)],
            pass_fds=(self.listener.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "haproxy.log").open("ab"),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            assert self.process.poll() is None, (self.directory / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)

    def only(self, server: RunningService) -> None:
        """Every request to ``server``."""
        self.route(f"    server s 127.0.0.1:{server.port}\n")

    def split(self, pages: RunningService, scripts: RunningService) -> None:
        """Page loads to ``pages``, script requests (``X-Requested-With: fetch``) to ``scripts``."""
        self.route(
            "    use-server scripts if { req.hdr(x-requested-with) -m str fetch }\n"
            f"    server pages 127.0.0.1:{pages.port}\n"
            f"    server scripts 127.0.0.1:{scripts.port} weight 0\n"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self.listener.close()


@pytest.fixture(scope="module")
def versions(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    root = tmp_path_factory.mktemp("rollout")
    catalog = AssetCatalog()
    archive = root / "archive"
    export_assets(catalog.build_id, catalog.files, archive)
    env = {"BUGLESS_WEB_ASSET_ARCHIVE_DIR": str(archive)}
    a = start_web_server(world.stack, extra_env=env)
    b = start_web_server(world.stack, extra_env={**env, "PYTHONPATH": str(_version_b(root / "b"))})
    try:
        builds = [
            _build_of(urllib.request.urlopen(f"{s.url}/signin").read().decode()) for s in (a, b)
        ]
        assert builds[0] == catalog.build_id
        assert builds[1].startswith(f"c{FORM_CONTRACT + 1}-"), "version B did not load its copy"
        yield Versions(a, b, *builds)
    finally:
        world.stack.stop_service(a)
        world.stack.stop_service(b)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    require_chromium()
    assert Path(HAPROXY).exists(), "apt-get install -y haproxy"
    proxy = Proxy(tmp_path)
    try:
        yield proxy
    finally:
        proxy.close()


def _build_of(html: str) -> str:
    match = re.search(r'<meta name="bugless-build" content="([^"]+)">', html)
    assert match, "the page names no build"
    return match.group(1)


def _sign_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/signin")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button:has-text("Sign in")')
    expect(page.locator(".me .chip")).to_be_visible()


def _draft_on_version_a(
    page: Page, proxy: Proxy, versions: Versions, issue_id: int, draft: str
) -> list[str]:
    """Bob's page of ``issue_id`` served by version A, ``draft`` typed in its comment box.

    Returns:
        The URLs the page loads from now on (filled in as they load).
    """
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    proxy.only(versions.a)
    _sign_in(page, proxy.url, "bob")
    page.goto(f"{proxy.url}/issues/{issue_id}")
    assert _build_of(page.content()) == versions.a_build
    page.fill('#issue-form textarea[name="comment"]', draft)
    loads.clear()
    return loads


def _new_issue(world: World, title: str) -> v1.Issue:
    async def create() -> v1.Issue:
        channel = world.stack.model.channel()
        try:
            return await call(
                world.stack.acting_model(
                    world.stack.acting_model(v1.ModelStub(channel))
                ).create_issue,
                v1.CreateIssueRequest(
                    caller=world.caller("bob"),
                    fields=v1.IssueFields(title=title, component_id=world.components["Platform"]),
                    idempotency_key=title,
                ),
            )
        finally:
            channel.close()

    return run_in_thread(create())


def _issue(world: World, issue_id: int) -> v1.Issue:
    async def get() -> v1.Issue:
        channel = world.stack.model.channel()
        try:
            return await call(
                world.stack.acting_model(world.stack.acting_model(v1.ModelStub(channel))).get_issue,
                v1.GetIssueRequest(caller=world.admin, issue_id=issue_id),
            )
        finally:
            channel.close()

    return run_in_thread(get())


def test_a_form_of_the_old_version_submitted_to_the_new_one_loses_nothing(
    world: World, versions: Versions, proxy: Proxy, browser: Browser
) -> None:
    issue = _new_issue(world, "Rollout: old page, new replica")
    context = browser.new_context()
    page = context.new_page()
    # The page's live stream is held off: reconnecting to B, it would reload the
    # page onto B before the old form is sent (what the next test checks), and
    # whether the submit or that reload comes first is a race. Held off, this is
    # the page whose stream is not connected (a proxy that buffers, a slow link).
    page.route(_LIVE_STREAM, lambda route: route.abort())
    try:
        _draft_on_version_a(page, proxy, versions, issue.id, "Typed on the old page, **kept**")
        old_css = page.locator('link[rel="stylesheet"]').get_attribute("href")
        assert old_css

        proxy.only(versions.b)  # the rollout moves all traffic to version B
        # The old page's stylesheet still loads from a B replica (the archive).
        assert page.request.get(f"{proxy.url}{old_css}").status == 200
        page.click('#issue-form button[type="submit"]')
        expect(page.locator("h1")).to_contain_text("bugless was updated while this page was open")
        expect(page.locator("textarea.stale-field[data-field=comment]")).to_have_value(
            "Typed on the old page, **kept**"
        )
        assert _issue(world, issue.id).version == issue.version  # nothing half-written

        page.click('a:has-text("Open the page again")')
        expect(page).to_have_url(f"{proxy.url}/issues/{issue.id}")
        assert _build_of(page.content()) == versions.b_build
        page.fill('#issue-form textarea[name="comment"]', "Typed on the old page, **kept**")
        page.click('#issue-form button[type="submit"]')
        expect(page.locator(".entry").last).to_contain_text("Typed on the old page")
        after = _issue(world, issue.id)
        assert (after.version, after.comment_count) == (issue.version + 1, 1)
    finally:
        context.close()


def test_an_open_page_whose_live_stream_reaches_the_new_version_reloads_once_with_the_draft(
    world: World, versions: Versions, proxy: Proxy, browser: Browser
) -> None:
    issue = _new_issue(world, "Rollout: live stream to the new version")
    context = browser.new_context()
    page = context.new_page()
    try:
        loads = _draft_on_version_a(page, proxy, versions, issue.id, "typed before the rollout")

        # Restarting the proxy cuts the stream; it reconnects (after the
        # browser's retry delay) to B, which answers "reload".
        proxy.only(versions.b)
        expect(page.locator('meta[name="bugless-build"]')).to_have_attribute(
            "content", versions.b_build, timeout=20_000
        )
        expect(page.locator('#issue-form textarea[name="comment"]')).to_have_value(
            "typed before the rollout"
        )
        time.sleep(4)  # longer than a reconnect: the reloaded page (B's build) stays
        assert len(loads) == 1, loads
        page.click('#issue-form button[type="submit"]')
        expect(page.locator(".entry").last).to_contain_text("typed before the rollout")
        after = _issue(world, issue.id)
        assert (after.version, after.comment_count) == (issue.version + 1, 1)
    finally:
        context.close()


def test_a_script_request_to_an_incompatible_replica_reloads_once_and_keeps_the_draft(
    world: World, versions: Versions, proxy: Proxy, browser: Browser
) -> None:
    issue = _new_issue(world, "Rollout: preview on another version")
    context = browser.new_context()
    page = context.new_page()
    try:
        loads = _draft_on_version_a(page, proxy, versions, issue.id, "a draft that must survive")
        # Page loads stay on A, script requests go to B: the worst case, in
        # which a reload cannot help. The page reloads once, then stops.
        proxy.split(pages=versions.a, scripts=versions.b)
        # The reload follows B's answer, after the click returned: waiting for
        # its load event, not the load state the old page is already in, keeps
        # the next click off the page the reload is about to replace.
        with page.expect_event("load"):
            page.click('#issue-form button.md-tab:has-text("Preview")')
        expect(page.locator('#issue-form textarea[name="comment"]')).to_have_value(
            "a draft that must survive"
        )
        page.click('#issue-form button.md-tab:has-text("Preview")')
        expect(page.locator("#issue-form .md-preview")).to_contain_text("409")
        time.sleep(1.5)
        assert len(loads) == 1, loads  # one reload, no loop

        # Once traffic is on B, the same page (reloaded from B) previews fine.
        proxy.only(versions.b)
        page.reload()
        assert _build_of(page.content()) == versions.b_build
        page.fill('#issue-form textarea[name="comment"]', "**bold** preview")
        page.click('#issue-form button.md-tab:has-text("Preview")')
        expect(page.locator("strong:has-text('bold')").first).to_be_visible()
    finally:
        context.close()
