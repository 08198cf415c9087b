"""``bugless login`` words the web UI's refusals as what the person must do.

The device endpoints answer with the Authenticator's message, which names the
request field at fault. These tests feed :func:`refusal_in_words` the
messages the Authenticator and the web UI send for each field ``login``
fills (the end-to-end refusals, against a real web UI, are in bugless-web's
``test_device_login_flood.py``).
"""

from __future__ import annotations

import pytest

from bugless_api.cli.login import refusal_in_words


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
