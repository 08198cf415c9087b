"""Accessibility of the pages at the edges: after a form without script, dev-only, and errors.

The main screens are audited in ``test_browser_a11y.py``; these are the
pages a person meets less often but still has to use with a screen reader
or a keyboard alone: what a form posted without script answers (the issue's
version-conflict page, the stale-page 409 of an updated server, the bulk
edit's result), the custom-field screens with their edit forms open and
their 409 and 400 answers, the device-login approval page (``/device``),
``bugless dev``'s mail viewer (``/dev/mail``), and the error pages (404,
403, 405, 409, the 4xx page with the reason). Each is audited with axe-core
(``a11y_support``), and walked with real key presses: the first Tab is the
skip link, which shows and leads into the page's main content, and Tab then
visits main's controls in reading order, each with a visible focus ring.

A web replica of its own runs on an Authenticator with a people CA (so a
``bugless login`` can be started through ``/device/start``) and with a dev
mailbox (written by :class:`bugless_dev.mailsink.MailSink`, as ``bugless
dev``'s sink writes it).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from a11y_support import DESKTOP, Audit
from browser_support import Tab, create_issue_ui, iter_console_problems, new_tab, sign_in
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, BrowserContext, Page, expect
from web_support import World

from bugless_dev.mailsink import ENVELOPE_HEADER, MailSink
from bugless_dev.stack import RunningService


@dataclass
class EdgeWeb:
    """The replica's address and the directory its ``/dev/mail`` shows."""

    server: RunningService
    mailbox: Path


@pytest.fixture(scope="module")
def edge_web(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeWeb]:
    """A dev web replica with a dev mailbox, on an Authenticator that signs device logins."""
    root = tmp_path_factory.mktemp("a11y-edges")
    people_ca = trustme.CA(organization_name="bugless people CA (a11y test)")
    ca_cert, ca_key = root / "people-ca.pem", root / "people-ca.key"
    people_ca.cert_pem.write_to_path(str(ca_cert))
    people_ca.private_key_pem.write_to_path(str(ca_key))
    mailbox = root / "mail"
    mailbox.mkdir()
    stack = world.stack
    auth = stack.start(
        "auth",
        ["auth", "serve", "--port", "0"],
        name="auth-a11y-edges",
        env={
            "BUGLESS_AUTH_PEOPLE_CA_CERT": str(ca_cert),
            "BUGLESS_AUTH_PEOPLE_CA_KEY": str(ca_key),
        },
    )
    try:
        web = stack.start_web(
            *("--auth", f"127.0.0.1:{auth.port}", "--dev-mailbox", str(mailbox)),
            name="web-a11y-edges",
            env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2"},
        )
        try:
            yield EdgeWeb(web, mailbox)
        finally:
            stack.stop_service(web)
    finally:
        stack.stop_service(auth)


@pytest.fixture
def no_script(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile with the pages' JavaScript off."""
    ctx = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        yield ctx
    finally:
        ctx.close()


#: Marks main's keyboard stops in reading order (visible, enabled, not in a closed
#: <details> but its summary); returns how they read, in that order.
_MARK_STOPS = """() => {
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary,'
    + ' [tabindex]:not([tabindex="-1"])';
  const stops = [...document.querySelector("main").querySelectorAll(selector)].filter(
    (el) => !el.disabled && el.tabIndex >= 0 && el.checkVisibility({visibilityProperty: true}));
  return stops.map((el, i) => {
    el.dataset.a11yStop = String(i);
    return (el.getAttribute("aria-label") || el.textContent || el.name || el.tagName)
      .trim().slice(0, 40);
  });
}"""

#: The focused element: its stop mark, whether it is in main, its ring, its place on screen.
_FOCUS = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    stop: el.dataset ? (el.dataset.a11yStop ?? "") : "",
    inMain: !!el.closest("main"), skip: el.classList.contains("skip-link"),
    what: (el.getAttribute("aria-label") || el.textContent || el.name || el.tagName)
      .trim().slice(0, 40),
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    onScreen: box.width > 0 && box.height > 0 && box.top >= 0 && box.left >= 0,
  };
}"""


def keyboard_problems(page: Page, name: str) -> list[str]:
    """What a keyboard user would trip on here, found with real key presses.

    Call it on a freshly loaded page, before anything has taken the focus:
    the first Tab must reach the skip link, shown on screen with its ring;
    Enter on it, then Tab, must land on main's first control; and Tab must
    then visit every control of main in reading order, each with its ring.
    """
    stops: list[str] = page.evaluate(_MARK_STOPS)
    page.keyboard.press("Tab")
    first: dict[str, Any] = page.evaluate(_FOCUS)
    if not (first["skip"] and first["ring"] and first["onScreen"]):
        return [f"{name}: the first Tab is not on a visible skip link: {first}"]
    page.keyboard.press("Enter")
    problems: list[str] = []
    visited: list[str] = []
    for _ in range(len(stops) + 1):
        page.keyboard.press("Tab")
        focused: dict[str, Any] = page.evaluate(_FOCUS)
        if not focused["inMain"]:
            break
        if not focused["ring"]:
            problems.append(f"{name}: no visible focus ring on {focused['what']!r}")
        visited.append(focused["stop"])
    wanted = [str(i) for i in range(len(stops))]
    if visited != wanted:
        problems.append(
            f"{name}: Tab after the skip link went {visited}, not main's reading order "
            f"{wanted} ({stops})"
        )
    return problems


def audit_and_walk(page: Page, audit: Audit, name: str, problems: list[str]) -> None:
    """Keyboard first (it needs the focus where the page left it), then axe."""
    problems += keyboard_problems(page, name)
    audit.check(page, name)


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _start_device_login(server: RunningService, label: str) -> dict[str, Any]:
    """What ``bugless login`` does first: POST its CSR to ``/device/start``."""
    answer = httpx.post(
        f"{server.url}/device/start",
        json={"csr_pem": _csr(), "label": label, "validity_seconds": 3600},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    started: dict[str, Any] = answer.json()
    return started


def _comment_meanwhile(tab: Tab, server: RunningService, issue_id: int, text: str) -> None:
    """Someone else's change: the issue's version moves on under an open page."""
    page = tab.page
    page.goto(f"{server.url}/issues/{issue_id}")
    page.fill("#comment", text)
    page.click('#issue-form button:has-text("Save")')
    expect(page.locator("#entries")).to_contain_text(text)


def test_pages_after_a_form_without_script_pass_axe_and_the_keyboard(
    edge_web: EdgeWeb, context: BrowserContext, no_script: BrowserContext, world: World
) -> None:
    server = edge_web.server
    suffix = secrets.token_hex(3)
    other = new_tab(context)
    sign_in(other, server, "alice")
    first = create_issue_ui(other, server, f"Quota alerts are late {suffix}")
    second = create_issue_ui(other, server, f"Quota page shows <b>tags</b> {suffix}")
    tab = new_tab(no_script)
    page = tab.page
    sign_in(tab, server, "alice")
    audit = Audit("edges-no-script", script_off=True)
    problems: list[str] = []

    # The issue changed under the open page: the version-conflict page (409).
    page.goto(f"{server.url}/issues/{first}")
    page.fill("#comment", "My comment, typed on an old version")
    _comment_meanwhile(other, server, first, "Their change, saved first")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click('#issue-form button:has-text("Save")')
    assert answer.value.status == 409
    expect(page.locator(".conflict[role=alert]")).to_contain_text("Their change")
    audit_and_walk(page, audit, "issue-version-conflict", problems)

    # The server was updated while the page was open: the stale-page 409.
    page.goto(f"{server.url}/issues/{first}")
    page.evaluate("document.querySelector('#issue-form input[name=_build]').value = 'c999-0'")
    page.fill("#comment", "Typed before the update")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click('#issue-form button:has-text("Save")')
    assert answer.value.status == 409
    expect(page.locator("textarea.stale-field[data-field=comment]")).to_have_value(
        "Typed before the update"
    )
    audit_and_walk(page, audit, "stale-build", problems)

    # A bulk edit of two issues, one changed meanwhile: the result page.
    page.goto(f"{server.url}/search?q={suffix}")
    for box in page.locator('input[name="issue"]').all():
        box.check()
    page.click("summary:has-text('Bulk edit')")
    page.select_option('#bulk select[name="priority"]', "P3")
    _comment_meanwhile(other, server, second, "Changed while the bulk edit was open")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click('#bulk button:has-text("Apply to selected")')
    assert answer.value.status == 409
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    audit_and_walk(page, audit, "bulk-result", problems)

    failing = audit.finish()
    assert failing == [], "\n".join(failing)
    assert problems == [], "\n".join(problems)
    assert tab.dialogs == []


def test_custom_field_screens_and_their_refusals_pass_axe_and_the_keyboard(
    edge_web: EdgeWeb, context: BrowserContext, no_script: BrowserContext, world: World
) -> None:
    server = edge_web.server
    other = new_tab(context)
    sign_in(other, server, "alice")
    tab = new_tab(no_script)
    page = tab.page
    sign_in(tab, server, "alice")
    audit = Audit("edges-custom-fields", script_off=True)
    problems: list[str] = []
    # A component with a field of each kind that has an edit form of its own.
    page.goto(f"{server.url}/components/new?parent={world.components['Platform']}")
    page.fill('form.stack input[name="name"]', f"Fielded{secrets.token_hex(3)}")
    page.click('button:has-text("Create component")')
    component = int(page.url.rstrip("/").rsplit("/", 1)[1].split("?")[0])
    fields_url = f"{server.url}/components/{component}/fields"
    for name, kind, options in [("Found in", "enum", "4.1\n4.2"), ("Due", "date", "")]:
        page.goto(fields_url)
        form = page.locator("#new-field-form")
        form.locator('input[name="name"]').fill(name)
        form.locator('select[name="type"]').select_option(kind)
        form.locator('textarea[name="options"]').fill(options)
        form.locator('button:has-text("Define field")').click()
        expect(page.locator(".banner.notice")).to_contain_text("Defined the custom field")

    # The list with every edit form open (no script needed to open them).
    page.goto(fields_url)
    audit_and_walk(page, audit, "custom-fields", problems)
    for summary in page.locator("details.field-edit > summary").all():
        summary.click()
    audit.check(page, "custom-fields-editing")

    # An admin saved the field first: the 409 page.
    editing = page.locator("details.field-edit", has_text="Change Found in")
    other.page.goto(fields_url)
    theirs = other.page.locator("details.field-edit", has_text="Change Found in")
    theirs.locator("summary").click()
    theirs.locator('input[name="description"]').fill("Their description")
    theirs.locator('button:has-text("Save Found in")').click()
    expect(other.page.locator(".banner.notice")).to_contain_text("Saved the custom field")
    editing.locator('input[name="description"]').fill("Mine")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        editing.locator('button:has-text("Save Found in")').click()
    assert answer.value.status == 409
    expect(page.locator("main h1")).to_contain_text("(409)")
    audit_and_walk(page, audit, "custom-field-conflict", problems)

    # Bad input: 400, the form again as typed with the reason by its field, nothing defined.
    page.goto(fields_url)
    form = page.locator("#new-field-form")
    form.locator('input[name="name"]').fill("Owner")
    form.locator('select[name="type"]').select_option("user")
    form.locator('input[name="default"]').fill("nobody-by-this-name")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator('button:has-text("Define field")').click()
    assert answer.value.status == 400
    expect(page.locator("#field-default-error")).to_contain_text(
        "no user named 'nobody-by-this-name'"
    )
    # The form puts the focus on the field at fault itself (autofocus), as the
    # empty device code form does: axe only.
    expect(page.locator('#new-field-form input[name="default"]')).to_be_focused()
    audit.check(page, "custom-field-invalid")
    page.goto(fields_url)
    expect(page.locator(".custom-field-list .cf-name")).to_have_count(2)

    failing = audit.finish()
    assert failing == [], "\n".join(failing)
    assert problems == [], "\n".join(problems)


def _store_mail(mailbox: Path, subject: str) -> str:
    """A notification mail, kept as ``bugless dev``'s sink keeps one; returns its file name."""
    mail = EmailMessage()
    mail["From"] = "bugless <bugless@example.com>"
    mail["To"] = "Alice Admin <alice@example.com>"
    mail["Subject"] = subject
    # Lines as long as a notifier's: an HTML part on one line, a long link.
    link = "http://127.0.0.1:8080/issues/7?utm_source=notification&amp;delivery=" + "0" * 80
    mail.set_content(f"Bob Builder changed the issue.\n\n  Priority: P2 -> P1\n\n{link}\n")
    mail.add_alternative(
        '<!doctype html><html><body><p>Bob Builder changed <a href="'
        + link
        + '">issue 7</a>.</p><table><tr><th>Priority</th><td>P2 &rarr; P1</td></tr></table>'
        + "<p>You get this mail because you are the issue's assignee.</p></body></html>",
        subtype="html",
    )
    raw = f"{ENVELOPE_HEADER}: alice@example.com\r\n".encode() + mail.as_bytes(policy=SMTP)
    return MailSink(mailbox).store(raw).name


def test_device_login_dev_mail_and_error_pages_pass_axe_and_the_keyboard(
    edge_web: EdgeWeb, context: BrowserContext, browser: Browser
) -> None:
    server = edge_web.server
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, server, "alice")
    audit = Audit("edges-signed-in")
    problems: list[str] = []
    started = _start_device_login(server, "a11y laptop")
    code = started["user_code"]
    mail_name = ""
    pages = [
        ("device-pending", f"/device?code={code}"),
        ("dev-mail-empty", "/dev/mail"),
        ("dev-mail", "/dev/mail"),
        ("dev-mail-one", ""),  # the mail stored for "dev-mail"
        ("not-found-page", "/no/such/page"),
        ("not-found-issue", "/issues/987654321"),
        ("bad-request", "/issues/not-a-number"),
        ("method-not-allowed", "/issues/bulk"),
    ]
    for name, path in pages:
        if name == "dev-mail":
            mail_name = _store_mail(edge_web.mailbox, "[bugless] Issue 7: Quota <alerts> late")
        page.goto(f"{server.url}{path or f'/dev/mail/{mail_name}'}")
        audit_and_walk(page, audit, name, problems)
        if name == "dev-mail-one":
            page.click("details.dev-mail-html > summary")
            audit.check(page, "dev-mail-one-html")
    # The empty code form takes the focus itself (autofocus): axe only.
    page.goto(f"{server.url}/device")
    audit.check(page, "device-enter-code")
    expect(page.locator('main input[name="code"]')).to_be_focused()
    # Under the alert that a code is unknown it does not, so the page reads from
    # its heading: the skip link and main's controls in order, and the box
    # described by the alert.
    page.goto(f"{server.url}/device?code=ZZZZ-ZZZZ")
    expect(page.locator("main [role=alert]")).not_to_be_empty()
    box = page.locator('main input[name="code"]')
    expect(box).not_to_be_focused()
    expect(box).to_have_value("ZZZZ-ZZZZ")
    expect(box).to_have_accessible_description(page.locator("main [role=alert]").inner_text())
    audit_and_walk(page, audit, "device-unknown-code", problems)

    bob = browser.new_context(viewport=DESKTOP)
    try:
        bobs = new_tab(bob)
        sign_in(bobs, server, "bob")
        bobs.page.goto(f"{server.url}/admin")
        expect(bobs.page.locator("main h1")).to_contain_text("(403)")
        audit_and_walk(bobs.page, audit, "forbidden", problems)
    finally:
        bob.close()
    failing = audit.finish()
    assert failing == [], "\n".join(failing)
    assert problems == [], "\n".join(problems)
    # The error pages' own statuses are logged as failed loads; nothing else may be.
    logged = [line for line in iter_console_problems(tab.console) if "status of 40" not in line]
    assert logged == []


def test_keyboard_alone_approves_a_device_login(edge_web: EdgeWeb, context: BrowserContext) -> None:
    server = edge_web.server
    started = _start_device_login(server, "keyboard laptop")
    tab = new_tab(context)
    page = tab.page
    sign_in(tab, server, "bob")
    page.goto(f"{server.url}/device")
    page.wait_for_load_state()
    # The code box has the focus; type the code and press Enter.
    expect(page.locator('main input[name="code"]')).to_be_focused()
    page.keyboard.type(started["user_code"])
    page.keyboard.press("Enter")
    expect(page.locator("main .user-code")).to_have_text(started["user_code"])
    page.wait_for_load_state()
    # From the top: the skip link, into main, Tab to Approve (each stop ringed).
    page.keyboard.press("Tab")
    assert page.evaluate(_FOCUS)["skip"]
    page.keyboard.press("Enter")
    for _ in range(10):
        page.keyboard.press("Tab")
        focused: dict[str, Any] = page.evaluate(_FOCUS)
        assert focused["inMain"], focused
        assert focused["ring"], focused
        if focused["what"] == "Approve":
            break
    else:
        pytest.fail("Tab never reached the Approve button")
    page.keyboard.press("Enter")
    expect(page.locator(".banner.notice")).to_contain_text("Approved")
    polled = httpx.post(
        f"{server.url}/device/poll", json={"device_code": started["device_code"]}, timeout=30
    )
    assert polled.json()["state"] == "approved", polled.text
    assert polled.json()["username"] == "bob"
    assert list(iter_console_problems(tab.console)) == []
