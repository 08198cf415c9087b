"""``bugless login`` words the web UI's refusals as what the person must do.

The device endpoints answer with the Authenticator's message, which names the
request field at fault. These tests feed :func:`refusal_in_words` the
messages the Authenticator and the web UI send for each field ``login``
fills (the end-to-end refusals, against a real web UI, are in bugless-web's
``test_device_login_flood.py``).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bugless_api.cli.login import ended_login, refusal_in_words, refusal_of
from bugless_core.cli import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    exit_status_of,
)
from bugless_testing.program import BUGLESS_SCRIPT


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (
            "validity_seconds: must not be negative",
            "--hours: must not be negative; give --hours as a number of hours above 0, "
            "or leave it out for the server's default",
        ),
        (
            "csr_pem: use an EC key on P-256, P-384 or P-521",
            "the web UI refused the certificate request this command made (use an EC key "
            "on P-256, P-384 or P-521); this bugless and the server's disagree: upgrade "
            "bugless, or tell whoever runs the server",
        ),
        (
            "device_code: no such device login",
            "the web UI no longer knows this login (it expired, or was cleared); "
            "run `bugless login` again",
        ),
    ],
)
def test_a_field_refusal_says_what_to_do(message: str, said: str) -> None:
    assert refusal_in_words(message) == said


def test_a_refusal_without_a_field_is_kept_with_the_wait_it_asks_for() -> None:
    message = "too many device logins are waiting"
    assert refusal_in_words(message, retry_after="30") == f"{message} (try again in 30 s)"
    worded = "5 device logins from this address are waiting; try again in 12 s"
    assert refusal_in_words(worded, retry_after="12") == worded


URL = "https://bugs.example.com/device/start"


def _refusal(error: str, code: str | None) -> bytes:
    """The body of the web UI's JSON refusal (``_json_error`` in bugless_web.routes.api_access)."""
    return json.dumps({"error": error} if code is None else {"error": error, "code": code}).encode()


@pytest.mark.parametrize(
    ("status", "phrase", "body", "exit_status", "said"),
    [
        # The web UI's refusals ({"error", "code"}): the error the status names.
        pytest.param(
            400,
            "Bad Request",
            _refusal("label: at most 100 characters", "INVALID_ARGUMENT"),
            EXIT_ERROR,
            "--label: at most 100 characters; give another --label, or none "
            "(this machine's name is used)",
            id="a field refused: the service refused the request",
        ),
        pytest.param(
            404,
            "Not Found",
            _refusal("device_code: no such device login", "NOT_FOUND"),
            EXIT_NOT_FOUND,
            "the web UI no longer knows this login (it expired, or was cleared); "
            "run `bugless login` again",
            id="the login is gone: not found",
        ),
        pytest.param(
            409,
            "Conflict",
            _refusal("this server has no people CA: ask whoever runs it", "FAILED_PRECONDITION"),
            EXIT_ERROR,
            "this server has no people CA: ask whoever runs it",
            id="a precondition",
        ),
        pytest.param(
            409,
            "Conflict",
            _refusal("this device login was decided meanwhile", "ABORTED"),
            EXIT_CONFLICT,
            "this device login was decided meanwhile",
            id="a conflict",
        ),
        pytest.param(
            429,
            "Too Many Requests",
            _refusal("too many device logins are waiting", "RESOURCE_EXHAUSTED"),
            EXIT_ERROR,
            "too many device logins are waiting (try again in 30 s)",
            id="a rate limit",
        ),
        pytest.param(
            403,
            "Forbidden",
            _refusal("not from this network", "PERMISSION_DENIED"),
            EXIT_ERROR,
            "not from this network",
            id="permission denied",
        ),
        pytest.param(
            503,
            "Service Unavailable",
            _refusal("the web UI is shutting down", "UNAVAILABLE"),
            EXIT_ERROR,
            "the web UI is shutting down",
            id="unavailable",
        ),
        pytest.param(
            400,
            "Bad Request",
            _refusal("something new", "NO_SUCH_CODE"),
            EXIT_ERROR,
            "something new",
            id="a code this bugless does not know",
        ),
        pytest.param(
            400,
            "Bad Request",
            _refusal("no code at all", None),
            EXIT_ERROR,
            "no code at all",
            id="no code",
        ),
        # Answers that are no bugless refusal.
        pytest.param(
            502,
            "Bad Gateway",
            b"<html><h1>502 Bad Gateway</h1></html>",
            EXIT_ERROR,
            f"{URL} answered 502 Bad Gateway: the web UI, or a proxy in front of it, failed; "
            "try again shortly, and tell whoever runs bugless if it lasts",
            id="a failed server's page",
        ),
        pytest.param(
            404,
            "Not Found",
            b"<html>no such page</html>",
            EXIT_USAGE,
            f"{URL} answered 404 Not Found, not as the bugless web UI does; check that --web "
            "is the address of the bugless web UI",
            id="another site: --web is wrong",
        ),
        pytest.param(
            404,
            "Not Found",
            b'{"detail": "Not Found", "status_code": 404}',
            EXIT_USAGE,
            f"{URL} answered 404 Not Found, not as the bugless web UI does; check that --web "
            "is the address of the bugless web UI",
            id="JSON without an error: --web is wrong",
        ),
        pytest.param(
            400,
            "Bad Request",
            b"[" * 100_000,
            EXIT_USAGE,
            f"{URL} answered 400 Bad Request, not as the bugless web UI does; check that --web "
            "is the address of the bugless web UI",
            id="JSON too deep to read",
        ),
    ],
)
def test_each_answer_of_the_web_ui_ends_login_with_the_tables_status(
    status: int, phrase: str, body: bytes, exit_status: int, said: str
) -> None:
    """The status is :func:`exit_status_of` the answer's error, as for every client command.

    Before, ``login`` had a rule of its own: every 4xx was 2 (bad usage), so a
    refusal by the service, a login gone (not found, 3 in the table) and a
    rate limit all read as a mistake in the command line.
    """
    # The web UI sends Retry-After with its 429s only (``_json_error``).
    error = refusal_of(URL, status, phrase, body, retry_after="30" if status == 429 else None)
    assert error.message == said
    assert exit_status_of(error, answered_by_service=True) == exit_status


@pytest.mark.parametrize("state", ["denied", "expired", "delivered"])
def test_a_login_that_ended_unapproved_is_no_usage_mistake(state: str) -> None:
    """Before, each exited 2 (bad usage); the web UI refused this login: 1."""
    error = ended_login(state)
    assert error.message == f"the login was {state}; run `bugless login` again"
    assert exit_status_of(error, answered_by_service=True) == EXIT_ERROR


@pytest.fixture
def failing_proxy() -> Iterator[str]:
    """An HTTP server on loopback that answers every POST 502 with an HTML page.

    What ``bugless login`` meets when the web UI is down behind a load balancer
    or an ingress (a rollout, a crash): the address is right, the server failed.
    """

    class BadGateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self.send_response(502, "Bad Gateway")
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_failure_that_is_no_bugless_answer_is_not_blamed_on_web(
    failing_proxy: str, tmp_path: Path
) -> None:
    """A 5xx page means the server failed, not that ``--web`` is wrong.

    Before: '… answered 502 Bad Gateway, not as the bugless web UI does; check
    that --web is the address of the bugless web UI', which sends a person to
    change a setting that was right.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    env["BUGLESS_CLIENT_CONFIG"] = str(tmp_path / "client.toml")
    done = subprocess.run(
        [BUGLESS_SCRIPT, "login", "--web", failing_proxy, "--no-browser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_ERROR, done.stderr
    assert done.stderr == (
        f"error: {failing_proxy}/device/start answered 502 Bad Gateway: the web UI, or a "
        "proxy in front of it, failed; try again shortly, and tell whoever runs bugless if "
        "it lasts\n"
    )
    assert not (tmp_path / "client.toml").exists()


@pytest.mark.parametrize("where", ["not writable", "not TOML", "a directory"])
def test_a_config_the_login_could_not_be_saved_in_is_refused_before_the_web_ui_is_asked(
    failing_proxy: str, tmp_path: Path, where: str
) -> None:
    """Bad configuration, exit 2, before any request (the proxy would answer 502, exit 1).

    Before, a config directory that could not be written was found after the
    person approved the login in the browser: an OSError traceback, and the
    approval lost; a config file that was not TOML likewise, exit 2.
    """
    if where == "not writable":
        # procfs makes no directory, root or not (permission bits would not stop root).
        config = Path("/proc") / f"bugless-login-{os.getpid()}" / "client.toml"
        said = f"cannot write the login's files in {config.parent} ("
    elif where == "not TOML":
        config = tmp_path / "client.toml"
        config.write_text("api = \n")
        said = f"config file {config}: "
    else:
        config = tmp_path / "client.toml"
        config.mkdir()
        said = f"config file {config}: [Errno 21] Is a directory"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    env["BUGLESS_CLIENT_CONFIG"] = str(config)
    done = subprocess.run(
        [BUGLESS_SCRIPT, "login", "--web", failing_proxy, "--no-browser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith(f"error: {said}"), done.stderr
    if where == "not writable":
        assert done.stderr.endswith(
            "); nothing was asked of the web UI: set BUGLESS_CLIENT_CONFIG to a file in a "
            "directory you can write\n"
        )
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
