"""``bugless dev`` end to end: the real command, real servers, a browser-like client.

Every run starts the command exactly as a person would (a subprocess of the
``bugless`` CLI) in a temporary state directory with free ports, and talks to
it only through what it prints: the web URL and admin password (signing in
over HTTP through the sign-in form and its CSRF token), and the exported
``BUGLESS_*`` variables (the ``bugless issue`` client over mutual TLS).

One state directory goes through a life: first start (sign in, create an
issue through the API, see it on the web page, Ctrl-C), restart with
``--demo`` (data kept, no new password, demo data seeded through the services),
then ``--reset`` (everything gone, a new administrator).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dev_process import IMPORT_EXPORT_LINE, DevProcess, clean_env, run_bugless

from bugless_dev._stack_config import SERVICE_KINDS
from bugless_dev.command import REQUIRED_COMMANDS
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_testing.smtp import SmtpSink

#: Exported GitHub issues (the importer's own test fixtures).
GITHUB_EXPORT = Path(__file__).parents[3] / "bugless-import" / "tests" / "fixtures" / "github"
_CSRF_FIELD = re.compile(r'name="_csrf" value="([^"]+)"')


def _ports() -> list[str]:
    """Any free ports: the services bind port 0 and the test reads what was printed."""
    return ["--port", "0", "--api-port", "0"]


@contextlib.contextmanager
def _signed_in(url: str, username: str, password: str) -> Iterator[httpx.Client]:
    """A client signed in through the form, the way a browser does it."""
    with httpx.Client(base_url=url, timeout=30.0, follow_redirects=True) as client:
        form = client.get("/signin")
        assert form.status_code == 200, form.text
        token = _CSRF_FIELD.search(form.text)
        assert token, "the sign-in form carries no CSRF token"
        response = client.post(
            "/signin",
            data={
                "username": username,
                "password": password,
                "_csrf": token.group(1),
                "next": "/",
            },
        )
        assert response.status_code == 200, response.text
        assert "Wrong username or password" not in response.text
        assert str(response.url).rstrip("/") == url, "signing in did not land on the home page"
        yield client


def _postmaster_pid(state_dir: Path) -> int:
    lines = (state_dir / "postgres" / "data" / "postmaster.pid").read_text().splitlines()
    return int(lines[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class FirstRun:
    """What the first start of a fresh state directory did and printed."""

    state_dir: Path
    output: str
    password: str
    issue_id: int
    title: str
    issue_page: str
    imported: subprocess.CompletedProcess[str]
    imported_page: str
    search_page: str
    mail_page: str
    notifications_page: httpx.Response
    api_access_page: str
    #: What each printed metrics URL answered, by the service kind printed with it.
    metrics: dict[str, httpx.Response]
    exit_code: int
    postgres_pid: int


@pytest.fixture(scope="module")
def state_root() -> Iterator[Path]:
    """A directory for the state dir, outside pytest's own temporary root.

    As root, PostgreSQL runs as ``embedded_postgres`` and must traverse every
    directory above its data; pytest keeps its base directory at mode 0700
    (and re-applies that whenever a pytest session starts), so a state dir
    under ``tmp_path`` would lose access mid-run. ``/tmp`` is world-traversable.
    """
    root = Path(tempfile.mkdtemp(prefix="bugless-dev-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def first_run(state_root: Path) -> FirstRun:
    """Start on a new state dir, use the web UI and the API, stop it with Ctrl-C."""
    state_dir = state_root / "state"
    dev = DevProcess.start(state_dir, *_ports())
    try:
        url = dev.wait_for_url()
        password = dev.password()
        assert password, dev.output
        postgres_pid = _postmaster_pid(state_dir)
        title = "Disk full on the build farm"
        created = run_bugless(
            "issue", "create", "--title", title, "--component", "General", "--json",
            "--cc", "admin", env=dev.client_env(),
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
        issue_id = int(json.loads(created.stdout)["id"])
        imported = _import_as_printed(dev, password, state_root)
        with _signed_in(url, "admin", password) as web:
            issue_page = web.get(f"/issues/{issue_id}")
            assert issue_page.status_code == 200, issue_page.text
            imported_page = web.get("/search", params={"q": 'externalid:"github:acme/rocket#1"'})
            search_page = web.get("/search", params={"q": "is:open"})
            assert search_page.status_code == 200, search_page.text
            mail_page = _wait_for_mail(web, title)
            notifications_page = web.get("/admin/notifications")
            api_access_page = web.get("/settings/api-access")
            assert api_access_page.status_code == 200, api_access_page.text
        metrics = {
            kind: httpx.get(url, timeout=30.0)
            for kind, url in re.findall(
                r"^ +(\w+) +(http://127\.0\.0\.1:\d+/metrics)$", dev.output, re.M
            )
        }
        exit_code = dev.interrupt(signal.SIGINT)
    except BaseException:
        dev.kill()
        raise
    return FirstRun(
        state_dir=state_dir,
        output=dev.output,
        password=password,
        issue_id=issue_id,
        title=title,
        issue_page=issue_page.text,
        imported=imported,
        imported_page=imported_page.text,
        search_page=search_page.text,
        mail_page=mail_page,
        notifications_page=notifications_page,
        api_access_page=api_access_page.text,
        metrics=metrics,
        exit_code=exit_code,
        postgres_pid=postgres_pid,
    )


def test_first_start_prints_admin_password_and_ready_to_paste_commands(
    first_run: FirstRun,
) -> None:
    output = first_run.output
    assert "Created the administrator `admin`" in output
    assert 'bugless issue list "is:open"' in output
    assert re.search(r"grpcurl -cacert \S+ -cert \S+ -key \S+ 127\.0\.0\.1:\d+ ", output)
    # The API as yourself: the web, API and CA the stack runs with, in one command.
    api = re.search(r"export BUGLESS_API=(\S+) .*BUGLESS_CA=(\S+)$", output, re.M)
    web = re.search(r"^Web UI \(sign in as `admin`\): (\S+)$", output, re.M)
    assert api, output
    assert web, output
    login = f"login --web {web.group(1)} --api {api.group(1)} --ca {api.group(2)}"
    assert f" {login}\n" in output
    # The web's API access page shows the same command (the API's port was
    # picked free: --api-port 0), not placeholders.
    shown = re.search(r'<pre class="command">([^<]*)</pre>', first_run.api_access_page)
    assert shown, first_run.api_access_page
    assert html.unescape(shown.group(1)) == f"bugless {login}"
    if os.geteuid() == 0:
        assert "system user `embedded_postgres`" in output


def _import_as_printed(
    dev: DevProcess, password: str, state_root: Path
) -> subprocess.CompletedProcess[str]:
    """The printed import line, pasted, then its command with the password on stdin."""
    line = re.search(r"^ +(\S+ import trac \S+ --user admin --dry-run)$", dev.output, re.M)
    assert line, dev.output
    return subprocess.run(
        [*BUGLESS_COMMAND, "import", "github", str(GITHUB_EXPORT), "--user", "admin", "--quiet",
         "--state-dir", str(state_root / "import-state")],
        input=f"{password}\n", env=dev.client_env(IMPORT_EXPORT_LINE), capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_printed_import_line_imports_as_the_administrator(first_run: FirstRun) -> None:
    # Before, no command or page gave the session token `bugless import` needed.
    imported = first_run.imported
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "imported: " in imported.stdout
    assert "Launch fails at T-0" in first_run.imported_page


def test_issue_created_through_the_api_is_on_the_web_pages(first_run: FirstRun) -> None:
    assert first_run.title in first_run.issue_page
    assert "dev-bot" in first_run.issue_page
    assert first_run.title in first_run.search_page


def _wait_for_mail(web: httpx.Client, title: str) -> str:
    """The dev mailbox page once the notifier's mail about ``title`` is on it."""
    deadline = time.monotonic() + 90
    while True:
        page = web.get("/dev/mail")
        assert page.status_code == 200, page.text
        if title in page.text:
            return page.text
        assert time.monotonic() < deadline, f"no mail about {title!r} on /dev/mail"
        time.sleep(0.5)


def test_the_notifier_mails_the_dev_sink_and_the_page_shows_it(first_run: FirstRun) -> None:
    # The bot filed the issue CCing the administrator (admin@localhost).
    assert first_run.title in first_run.mail_page
    assert "admin@localhost" in first_run.mail_page
    assert re.search(
        r"Mail the notifier sent .*: http://127\.0\.0\.1:\d+/dev/mail", first_run.output
    )
    assert any((first_run.state_dir / "mail").glob("*.eml"))


def test_every_service_serves_prometheus_metrics_at_the_printed_url(first_run: FirstRun) -> None:
    # Before, bugless dev started no service with --metrics-port: an operator
    # trying bugless could read none of the series the alerts (docs/alerts.md) use.
    assert sorted(first_run.metrics) == sorted(SERVICE_KINDS), first_run.output
    for kind, answer in first_run.metrics.items():
        assert answer.status_code == 200, (kind, answer.text)
        assert "# TYPE " in answer.text, kind
    assert "bugless_" in first_run.metrics["model"].text
    assert re.search(
        r"^Health: http://127\.0\.0\.1:\d+/healthz and /readyz", first_run.output, re.M
    )


def test_the_web_reaches_the_notifier_where_it_was_told_it_listens(first_run: FirstRun) -> None:
    # The web is told the notifier's (reserved) port before the notifier starts.
    page = first_run.notifications_page
    assert page.status_code == 200, page.text


def test_ctrl_c_stops_everything_and_exits_zero(first_run: FirstRun) -> None:
    assert first_run.exit_code == 0, first_run.output
    assert "stopped; the data stays in" in first_run.output
    assert not (first_run.state_dir / "postgres" / "data" / "postmaster.pid").exists()
    assert not _alive(first_run.postgres_pid)


def test_restart_keeps_the_data_and_seeds_demo_data_without_a_new_password(
    first_run: FirstRun,
) -> None:
    dev = DevProcess.start(first_run.state_dir, *_ports(), "--demo")
    try:
        url = dev.wait_for_url()
        assert dev.password() is None, dev.output
        assert "The administrator `admin` exists" in dev.output
        # The demo's people by name, and how to sign in as one.
        assert "its people are alice, bob, carol, dan, erin, farid, grace, hiro" in dev.output
        assert "bugless auth user set-password alice --database-url" in dev.output
        env = dev.client_env()
        shown = run_bugless("issue", "show", str(first_run.issue_id), "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["title"] == first_run.title
        # Demo data went through the Model's ACLs: the bot cannot see Security.
        listed = run_bugless("component", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        paths = {c["path"] for c in json.loads(listed.stdout)["components"]}
        assert {"Platform>Storage", "Web>Search", "Developer Tools>CI"} <= paths
        assert "Security" not in paths
        with _signed_in(url, "admin", first_run.password) as web:
            security = web.get("/search", params={"q": "type:vulnerability"})
            assert security.status_code == 200
            assert "Vulnerability" in security.text or "VULNERABILITY" in security.text
            hotlists = web.get("/hotlists")
            assert "Release 2.4 blockers" in hotlists.text
            # The administrator has work of their own in the demo: no home section is empty.
            home = web.get("/")
            for key in ("assigned", "verify", "cc", "components"):
                section = re.search(
                    rf'<section class="home-section" id="section-{key}".*?</section>',
                    home.text,
                    re.S,
                )
                assert section, key
                assert 'href="/issues/' in section.group(0), f"the {key} section is empty"
            issues = run_bugless("issue", "list", "", "--limit", "500", "--json", env=env)
            assert issues.returncode == 0, issues.stderr
            assert len(json.loads(issues.stdout)["issues"]) > 200
        assert dev.interrupt(signal.SIGTERM) == 0, dev.output
    finally:
        dev.kill()


def test_reset_wipes_the_state_directory(first_run: FirstRun) -> None:
    # Runs after the restart test (file order): the state dir has had two lives.
    dev = DevProcess.start(first_run.state_dir, *_ports(), "--reset")
    try:
        dev.wait_for_url()
        new_password = dev.password()
        assert new_password, dev.output
        assert new_password != first_run.password
        shown = run_bugless("issue", "show", str(first_run.issue_id), env=dev.client_env())
        assert shown.returncode == 3, shown.stdout + shown.stderr  # not found
        assert dev.interrupt() == 0, dev.output
    finally:
        dev.kill()


def test_the_notifier_mails_an_smtp_relay_and_sends_digests_as_often_as_asked(
    first_run: FirstRun,
) -> None:
    # Runs after the reset (file order). A team trying bugless with mail on reads
    # the mails in a client of their own (--smtp-relay), and sees what a daily
    # digest looks like without waiting for 07:00 UTC (--digest-interval-seconds).
    with SmtpSink() as relay:
        dev = DevProcess.start(
            first_run.state_dir, *_ports(), "--reset",
            "--smtp-relay", f"127.0.0.1:{relay.port}", "--digest-interval-seconds", "2",
        )  # fmt: skip
        try:
            url = dev.wait_for_url()
            password = dev.password()
            assert password, dev.output
            assert f"notifier   mailing to the SMTP relay 127.0.0.1:{relay.port}" in dev.output
            assert (
                f"Mail the notifier sends goes to the SMTP relay 127.0.0.1:{relay.port} "
                "(--smtp-relay; /dev/mail is off)" in dev.output
            )
            assert "/dev/mail" not in dev.output.replace("/dev/mail is off", "")
            title = "Mail me through the relay"
            created = run_bugless(
                "issue", "create", "--title", title, "--component", "General", "--cc", "admin",
                "--json", env=dev.client_env(),
            )  # fmt: skip
            assert created.returncode == 0, created.stdout + created.stderr
            (mail,) = relay.wait_for(1, timeout=60.0)
            assert mail.recipients == ("admin@localhost",)
            assert title in str(mail.message["Subject"])
            assert mail.message["X-Bugless-Reason"] == "cc"
            with _signed_in(url, "admin", password) as web:
                # No sink: the web's mailbox page is off.
                assert web.get("/dev/mail").status_code == 404
                page = web.get("/settings/notifications").text
                version = re.search(r'name="version" value="(\d+)"', page)
                token = _CSRF_FIELD.search(page)
                assert version, page
                assert token, page
                saved = web.post(
                    "/settings/notifications",
                    data={"_csrf": token.group(1), "version": version.group(1),
                          "channel": "email", "digest": "daily",
                          "event": re.findall(r'name="event" value="(\d+)"', page)},
                )  # fmt: skip
                assert "Notification settings saved." in saved.text
            issue_id = json.loads(created.stdout)["id"]
            commented = run_bugless(
                "issue", "comment", str(issue_id), "For the digest",
                env=dev.client_env(),
            )  # fmt: skip
            assert commented.returncode == 0, commented.stdout + commented.stderr
            digest = relay.wait_for(2, timeout=60.0)[1]
            assert str(digest.message["Subject"]) == "bugless daily digest: 1 change"
            body = digest.message.get_body(preferencelist=("plain",))
            assert body is not None
            assert "For the digest" in body.get_content()
            assert dev.interrupt() == 0, dev.output
        finally:
            dev.kill()


def test_an_smtp_relay_that_is_not_host_and_port_is_refused_before_anything_starts() -> None:
    refused = run_bugless("dev", "--smtp-relay", "mail.example.com")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--smtp-relay must be HOST:PORT (127.0.0.1:8025, say), not 'mail.example.com'" in (
        refused.stderr
    )


def test_every_service_it_starts_is_checked_for_before_anything_starts() -> None:
    """A service package missing from the check fails only after the demo is seeded.

    The notifier's was missing once: ``bugless dev`` from the quick start's
    install died at ``bugless notify serve`` ("No such command 'notify'").
    """
    # The Model is checked as the `postgres` backend plugin, not as a command.
    started_by_command = set(SERVICE_KINDS) - {"model"}
    assert started_by_command <= REQUIRED_COMMANDS.keys(), started_by_command - set(
        REQUIRED_COMMANDS
    )


def test_port_in_use_is_a_clear_usage_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_bugless("dev", "--state-dir", str(tmp_path / "s"), "--port", str(port))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} is in use; pass --port" in result.stderr
    assert not (tmp_path / "s").exists(), "nothing may be created before the check"


def test_service_settings_exported_in_the_shell_are_named_as_ignored(tmp_path: Path) -> None:
    # Before, BUGLESS_BLOB_STORE=s3 was dropped silently: attachments went to
    # the database while the person believed them in S3.
    env = {
        **clean_env(),
        "BUGLESS_BLOB_STORE": "s3",
        "BUGLESS_BLOB_S3_BUCKET": "b",
        "BUGLESS_API": "127.0.0.1:1",  # a pasted client export line: not a service's
        "BUGLESS_IMPORT_MODEL": "127.0.0.1:2",
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_bugless(
            "dev", "--state-dir", str(tmp_path / "s"), "--port", str(port), env=env
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "note: ignoring BUGLESS_BLOB_S3_BUCKET, BUGLESS_BLOB_STORE from this shell: "
        "bugless dev sets every service's settings itself"
    ) in result.stderr


def test_state_dir_of_an_incompatible_version_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "old"
    state_dir.mkdir()
    (state_dir / "bugless-dev.json").write_text(
        json.dumps({"format": 999, "created_by": "bugless-core 9.9.9"})
    )
    result = run_bugless("dev", "--state-dir", str(state_dir), *_ports())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "has format 999 (written by bugless-core 9.9.9)" in result.stderr
    assert "--reset" in result.stderr
    assert sorted(p.name for p in state_dir.iterdir()) == [".lock", "bugless-dev.json"]


def test_a_directory_that_is_not_a_state_dir_is_never_used_or_reset(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = run_bugless("dev", "--state-dir", str(precious), "--reset", *_ports())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not a bugless dev state directory" in result.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_second_bugless_dev_on_one_state_dir_is_refused(tmp_path: Path) -> None:
    import fcntl

    state_dir = tmp_path / "busy"
    state_dir.mkdir()
    (state_dir / "bugless-dev.json").write_text(json.dumps({"format": 1}))
    with (state_dir / ".lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_bugless("dev", "--state-dir", str(state_dir), *_ports())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "another `bugless dev` is running on the state directory" in result.stderr
