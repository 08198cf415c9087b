"""``bugless login`` words the web UI's refusals as what the person must do.

The device endpoints answer with the Authenticator's message, which names the
request field at fault. These tests feed :func:`refusal_in_words` the
messages the Authenticator and the web UI send for each field ``login``
fills (the end-to-end refusals, against a real web UI, are in bugless-web's
``test_device_login_flood.py``).
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bugless_api.cli._common import EXIT_SERVER_ERROR
from bugless_api.cli.login import refusal_in_words

BUGLESS = str(Path(sys.executable).with_name("bugless"))


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
        [BUGLESS, "login", "--web", failing_proxy, "--no-browser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_SERVER_ERROR, done.stderr
    assert done.stderr == (
        f"error: {failing_proxy}/device/start answered 502 Bad Gateway: the web UI, or a "
        "proxy in front of it, failed; try again shortly, and tell whoever runs bugless if "
        "it lasts\n"
    )
    assert not (tmp_path / "client.toml").exists()
