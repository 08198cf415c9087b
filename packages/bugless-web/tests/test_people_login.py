"""``bugless login`` end to end: a CLI subprocess approved in Chromium, then the API as that person.

Real processes: an Authenticator with a people CA, a web replica, an API that
trusts the people CA beside the bot CA, and the ``bugless`` CLI. What the CLI
sends crosses a recording proxy, so the test sees that the private key never
travels (only a CSR for the key it stored).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from browser_support import require_chromium
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, Page, expect
from web_support import PASSWORD, World

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_core.clients import call
from bugless_core.errors import BuglessError
from bugless_dev.processes import BUGLESS_COMMAND, run_in_thread
from bugless_dev.stack import RunningService
from bugless_proto import v1


class RecordingProxy:
    """Forwards the CLI's requests to the web tier and keeps every body it saw."""

    def __init__(self, target: str) -> None:
        self.bodies: list[bytes] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                proxy.bodies.append(body)
                request = urllib.request.Request(
                    target + self.path,
                    data=body,
                    headers={"content-type": self.headers.get("content-type", "")},
                    method="POST",
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PeopleStack:
    web: RunningService
    web_url: str
    auth: RunningService
    api: RunningService
    ca_file: Path
    proxy: RecordingProxy


@pytest.fixture(scope="module")
def people_stack(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeopleStack]:
    root = tmp_path_factory.mktemp("people")
    people_ca = trustme.CA(organization_name="bugless people CA (test)")
    ca_cert, ca_key = root / "people-ca.pem", root / "people-ca.key"
    people_ca.cert_pem.write_to_path(str(ca_cert))
    people_ca.private_key_pem.write_to_path(str(ca_key))
    stack = world.stack
    # The API trusts the bot CA and the people CA (one bundle).
    bundle = root / "client-ca.pem"
    bundle.write_bytes(stack.pki.ca_file.read_bytes() + ca_cert.read_bytes())
    auth = stack.start(
        "auth",
        ["auth", "serve", "--port", "0"],
        name="auth-people",
        env={
            "BUGLESS_AUTH_PEOPLE_CA_CERT": str(ca_cert),
            "BUGLESS_AUTH_PEOPLE_CA_KEY": str(ca_key),
        },
    )
    started: list[RunningService] = [auth]
    try:
        web = stack.start_web(
            "--auth",
            f"127.0.0.1:{auth.port}",
            name="web-people",
            env={"BUGLESS_WEB_TOKEN_CACHE_SECONDS": "0"},
        )
        started.append(web)
        api = stack.start_api(
            "--auth", f"127.0.0.1:{auth.port}", "--client-ca", str(bundle), name="api-people"
        )
        started.append(api)
        assert web.url is not None
        proxy = RecordingProxy(web.url)
        try:
            yield PeopleStack(
                web=web,
                web_url=web.url,
                auth=auth,
                api=api,
                ca_file=stack.pki.ca_file,
                proxy=proxy,
            )
        finally:
            proxy.close()
    finally:
        for service in reversed(started):
            stack.stop_service(service)


def _cli_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    env["BUGLESS_CLIENT_CONFIG"] = str(config)
    return env


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUGLESS_COMMAND, *args],
        env=_cli_env(config),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _sign_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/signin")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button:has-text("Sign in")')
    expect(page.locator(".me .chip")).to_be_visible()


def _secret_issue(world: World) -> int:
    async def create() -> int:
        channel = world.stack.model.channel()
        try:
            issue = await call(
                world.stack.acting_model(
                    world.stack.acting_model(v1.ModelStub(channel))
                ).create_issue,
                v1.CreateIssueRequest(
                    caller=world.admin,
                    fields=v1.IssueFields(
                        title="Only admins see this", component_id=world.components["Secret"]
                    ),
                    idempotency_key=secrets.token_hex(8),
                ),
            )
            return issue.id
        finally:
            channel.close()

    return run_in_thread(create())


def _login(
    people: PeopleStack,
    config: Path,
    page: Page,
    *,
    hours: str = "1",
    with_api: bool = True,
    arguments: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``bugless login`` and approve its code in ``page``.

    ``arguments`` (after ``login``) replace the usual ``--web`` of the
    recording proxy and ``--api``/``--ca``.
    """
    api = ["--api", f"127.0.0.1:{people.api.port}", "--ca", str(people.ca_file)] if with_api else []
    if arguments is None:
        arguments = ["--web", people.proxy.url, *api]
    process = subprocess.Popen(
        [*BUGLESS_COMMAND, "login", *arguments, "--no-browser", "--hours", hours],
        env=_cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"open (\S+)", first)
    assert match, first + (process.stderr.read() if process.stderr else "")
    second = process.stdout.readline()
    code = re.search(r"shows the code (\S+)\.", second)
    assert code, second
    # The URL names the proxy the CLI was given; the person opens the web UI itself.
    url = match.group(1).replace(people.proxy.url, people.web_url)
    page.goto(url)
    expect(page.locator("code.user-code")).to_have_text(code.group(1))
    page.click('button:has-text("Approve")')
    expect(page.locator(".banner.notice")).to_contain_text("Approved")
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, first + second + out, err)


def test_login_approved_in_the_browser_acts_as_that_person_until_revoked(
    world: World, people_stack: PeopleStack, browser: Browser, tmp_path: Path
) -> None:
    require_chromium()
    config = tmp_path / "cfg" / "client.toml"
    secret = _secret_issue(world)
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, people_stack.web_url, "bob")
        done = _login(people_stack, config, page)
        assert done.returncode == 0, done.stderr
        assert "Logged in as bob" in done.stdout

        # Stored beside the config, only for its owner, and named by it.
        settings = tomllib.loads(config.read_text())
        cert_file, key_file = Path(settings["cert"]), Path(settings["key"])
        for path in (config, cert_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert settings["api"] == f"127.0.0.1:{people_stack.api.port}"

        # The private key never crossed the wire: only a CSR for the stored key did.
        wire = b"".join(people_stack.proxy.bodies)
        assert b"PRIVATE KEY" not in wire
        assert b"CERTIFICATE REQUEST" in wire
        start = json.loads(people_stack.proxy.bodies[0])
        csr = x509.load_pem_x509_csr(start["csr_pem"].encode())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        der = serialization.Encoding.DER
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert csr.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)

        # The API treats the certificate as bob: bob's identity, bob's ACLs.
        who = _cli(config, "whoami", "--json")
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["user"]["username"] == "bob"
        hidden = _cli(config, "issue", "show", str(secret), "--json")
        assert hidden.returncode == 3, hidden.stdout + hidden.stderr  # not found, for bob

        # The certificate is listed on the API access page; revoking it there
        # stops the API from accepting it (each command is a new connection).
        page.goto(f"{people_stack.web_url}/settings/api-access")
        serial = format(x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number, "x")
        row = page.locator(f'tr[data-serial="{serial}"]')
        expect(row).to_contain_text("device")
        row.locator('button:has-text("Revoke")').click()
        expect(page.locator(".banner.notice")).to_contain_text("revoked")
        refused = _cli(config, "whoami", "--json")
        assert refused.returncode != 0
        assert "revoked" in refused.stderr, refused.stderr
    finally:
        context.close()


def test_a_login_given_only_the_web_ui_says_what_commands_still_need(
    world: World, people_stack: PeopleStack, browser: Browser, tmp_path: Path
) -> None:
    """``bugless login --web URL`` alone succeeds, and says that --api and --ca are missing.

    It used to end with "Logged in as …" and nothing more, and every command
    after it failed with "not configured". The API access page shows the
    whole command.
    """
    require_chromium()
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, people_stack.web_url, "alice")
        page.goto(f"{people_stack.web_url}/settings/api-access")
        expect(page.locator("pre.command")).to_contain_text("--api API-HOST:PORT --ca API-CA.pem")
        config = tmp_path / "web-only" / "client.toml"
        done = _login(people_stack, config, page, with_api=False)
        assert done.returncode == 0, done.stderr
        assert "Logged in as alice" in done.stdout
        assert "note: commands also need --api HOST:PORT and --ca FILE" in done.stderr
        assert str(config) in done.stderr
        settings = tomllib.loads(config.read_text())
        assert "api" not in settings
        unconfigured = _cli(config, "whoami", "--json")
        assert unconfigured.returncode == 2
        assert "not configured" in unconfigured.stderr

        # Done as the note says, the certificate it got works.
        with config.open("a") as handle:
            handle.write(f'api = "127.0.0.1:{people_stack.api.port}"\n')
            handle.write(f"ca = {json.dumps(str(people_stack.ca_file))}\n")
        who = _cli(config, "whoami", "--json")
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["user"]["username"] == "alice"

        # A login with both, or with them already in the config, says nothing more.
        again = _login(people_stack, config, page)
        assert again.returncode == 0, again.stderr
        assert "note:" not in again.stderr
    finally:
        context.close()


def test_the_api_access_page_gives_the_whole_command_when_the_web_knows_the_api(
    world: World, people_stack: PeopleStack, browser: Browser, tmp_path: Path
) -> None:
    """With --api-public-address and --api-ca-hint the page's command is copied and just works.

    A web replica told the API's address and where people keep its CA (a
    path with a space, so the command must quote it) shows them in the
    ``bugless login`` command; that command, split as a shell splits it and
    run as it stands, logs in with nothing left to configure.
    """
    require_chromium()
    ca_copy = tmp_path / "api ca" / "bugless-api-ca.pem"
    ca_copy.parent.mkdir()
    shutil.copyfile(people_stack.ca_file, ca_copy)
    address = f"127.0.0.1:{people_stack.api.port}"
    web = world.stack.start_web(
        "--auth",
        f"127.0.0.1:{people_stack.auth.port}",
        "--api-public-address",
        address,
        "--api-ca-hint",
        str(ca_copy),
        name="web-people-api",
    )
    context = browser.new_context()
    page = context.new_page()
    try:
        assert web.url is not None
        _sign_in(page, web.url, "mallory")
        page.goto(f"{web.url}/settings/api-access")
        command = page.locator("pre.command").inner_text()
        assert command == (
            f"bugless login --web {web.url} --api {address} --ca {shlex.quote(str(ca_copy))}"
        )
        assert "API-HOST" not in page.locator("main").inner_text()
        words = shlex.split(command)
        assert words[:2] == ["bugless", "login"]
        config = tmp_path / "copied" / "client.toml"
        done = _login(people_stack, config, page, arguments=words[2:])
        assert done.returncode == 0, done.stderr
        assert "note:" not in done.stderr
        settings = tomllib.loads(config.read_text())
        assert (settings["api"], settings["ca"]) == (address, str(ca_copy.resolve()))
        who = _cli(config, "whoami", "--json")
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["user"]["username"] == "mallory"
    finally:
        context.close()
        world.stack.stop_service(web)


def test_logout_revokes_and_a_short_certificate_expires(
    world: World, people_stack: PeopleStack, browser: Browser, tmp_path: Path
) -> None:
    require_chromium()
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, people_stack.web_url, "carol")
        config = tmp_path / "logout" / "client.toml"
        assert _login(people_stack, config, page).returncode == 0
        assert _cli(config, "whoami", "--json").returncode == 0
        gone = _cli(config, "logout", "--json")
        assert gone.returncode == 0, gone.stderr
        assert not (config.parent / "login.pem").exists()
        listed = page.goto(f"{people_stack.web_url}/settings/api-access")
        assert listed is not None
        assert "You have no live certificates" in page.content()

        # A short certificate (72 s: a login approved in the browser takes more
        # than 30 s on a loaded CI machine): accepted at once, refused once it expired.
        brief = tmp_path / "brief" / "client.toml"
        assert _login(people_stack, brief, page, hours="0.02").returncode == 0
        assert _cli(brief, "whoami", "--json").returncode == 0
        cert_file = Path(tomllib.loads(brief.read_text())["cert"])
        until = x509.load_pem_x509_certificate(cert_file.read_bytes()).not_valid_after_utc
        time.sleep(max(0.0, (until - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1.5)
        expired = _cli(brief, "whoami", "--json")
        assert expired.returncode == 2
        assert "run `bugless login` again" in expired.stderr
        # Not only the CLI: the API itself refuses the expired certificate.
        settings = tomllib.loads(brief.read_text())

        async def whoami() -> object:
            client = BuglessClient(
                settings["api"],
                cert=settings["cert"],
                key=settings["key"],
                ca=settings["ca"],
                retry=RetryPolicy(attempts=1),
            )
            async with client:
                return await client.whoami()

        with pytest.raises(BuglessError):
            run_in_thread(whoami())
    finally:
        context.close()
