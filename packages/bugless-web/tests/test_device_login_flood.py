"""An anonymous flood of ``/device/start`` cannot refuse ``bugless login`` to everybody.

Starting a device login needs no account and no CSRF token (the CLI calls
it), and the Authenticator holds at most ``MAX_PENDING_DEVICE_LOGINS``
pending at once for everybody. One address starting them as fast as it could
(about 50 a second on one core, each kept for ``--device-login-seconds``)
filled that and every person's ``bugless login`` was refused for as long as
it kept going. Now one address may have only
``MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS`` waiting, and one network (an IPv6
``/64``, which one host holds whole) may start only ``DEVICE_STARTS_PER_WINDOW``
per throttle window; the others are unaffected.

Real processes: an Authenticator with a people CA and a ``--dev`` web
replica, which believes ``X-Forwarded-For`` from 127.0.0.1 (as a replica
believes its ingress), so the test speaks from two addresses.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from web_support import World

from bugless_auth.people import MAX_LABEL, MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS
from bugless_auth.throttle import DEVICE_STARTS_PER_WINDOW
from bugless_dev.stack import RunningService
from bugless_testing.program import BUGLESS_SCRIPT

ATTACKER = "203.0.113.66"
SOMEONE_ELSE = "198.51.100.7"


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _assert_retry_after_as_in_message(refused: list[httpx.Response]) -> None:
    """Each 429 says in ``Retry-After`` the wait its message gives, as the sign-in page's does.

    A client (the CLI, a script) reads when to try again from the header,
    not by parsing the message.
    """
    for answer in refused:
        said = re.search(r"try again in (\d+) s", answer.json()["error"])
        assert said is not None, answer.text
        header = answer.headers.get("retry-after")
        assert header is not None, answer.headers
        assert header.isdigit(), header
        # Both are the same wait rounded up to whole seconds; the header's
        # crossed gRPC with 3 decimals, so it may round 29.0004 s to 29.
        assert abs(int(header) - int(said.group(1))) <= 1, (header, answer.text)
        assert int(header) >= 1


@pytest.fixture(scope="module")
def device_web(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a web replica on an Authenticator of its own with a people CA."""
    root = tmp_path_factory.mktemp("device-flood")
    people_ca = trustme.CA(organization_name="bugless people CA (flood test)")
    ca_cert, ca_key = root / "people-ca.pem", root / "people-ca.key"
    people_ca.cert_pem.write_to_path(str(ca_cert))
    people_ca.private_key_pem.write_to_path(str(ca_key))
    stack = world.stack
    auth = stack.start(
        "auth",
        ["auth", "serve", "--port", "0"],
        name="auth-device-flood",
        env={
            "BUGLESS_AUTH_PEOPLE_CA_CERT": str(Path(ca_cert)),
            "BUGLESS_AUTH_PEOPLE_CA_KEY": str(Path(ca_key)),
        },
    )
    started: list[RunningService] = [auth]
    try:
        web = stack.start_web("--auth", f"127.0.0.1:{auth.port}", name="web-device-flood")
        started.append(web)
        assert web.url is not None
        yield web.url
    finally:
        for service in reversed(started):
            stack.stop_service(service)


def test_one_address_flooding_device_logins_leaves_everybody_else_able_to_log_in(
    device_web: str,
) -> None:
    csr = _csr()  # one CSR serves the whole flood: the key never matters to it
    with httpx.Client(base_url=device_web, timeout=30) as http:

        def start(address: str) -> httpx.Response:
            return http.post(
                "/device/start",
                json={"csr_pem": csr, "label": "laptop", "validity_seconds": 3600},
                headers={"x-forwarded-for": address},
            )

        for _ in range(MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS):
            answer = start(ATTACKER)
            assert answer.status_code == 200, answer.text
        flooded = [start(ATTACKER) for _ in range(5)]
        assert [a.status_code for a in flooded] == [429] * 5, [a.text for a in flooded]
        assert "device logins" in flooded[0].json()["error"]
        assert flooded[0].json()["code"] == "RESOURCE_EXHAUSTED"
        _assert_retry_after_as_in_message(flooded)
        # Everybody else still starts one, and it works: it is pending.
        theirs = start(SOMEONE_ELSE)
        assert theirs.status_code == 200, theirs.text
        polled = http.post("/device/poll", json={"device_code": theirs.json()["device_code"]})
        assert polled.status_code == 200, polled.text
        assert polled.json()["state"] == "pending"


def test_one_ipv6_host_cannot_flood_from_every_address_of_its_64(device_web: str) -> None:
    csr = _csr()
    network = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    with httpx.Client(base_url=device_web, timeout=30) as http:

        def start(address: str) -> httpx.Response:
            return http.post(
                "/device/start",
                json={"csr_pem": csr, "label": "laptop", "validity_seconds": 3600},
                headers={"x-forwarded-for": address},
            )

        # A new address of the same /64 for every start.
        answers = [start(f"{network}:{n:x}::1") for n in range(1, 16)]
        statuses = [a.status_code for a in answers]
        assert statuses == [200] * DEVICE_STARTS_PER_WINDOW + [429] * 5, statuses
        _assert_retry_after_as_in_message(answers[-5:])
        assert start(f"2001:db8:{secrets.randbelow(0xFFFF):x}:ffff::1").status_code == 200


def _login(web_url: str, *arguments: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``bugless login`` as a person runs it, with a config file of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    env["BUGLESS_CLIENT_CONFIG"] = str(config)
    return subprocess.run(
        [BUGLESS_SCRIPT, "login", "--web", web_url, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_login_says_which_option_the_web_refused_and_what_to_give(
    device_web: str, tmp_path: Path
) -> None:
    """A refused ``--label`` is named as the option, with what to do, not as ``label:``.

    Before: ``error: http://…/device/start: label: at most 100 characters``.
    The web UI refused the request: exit 1, as a client command's refused
    value (the exit-status table, through ``exit_status_of``); before, every
    4xx was 2.
    """
    done = _login(device_web, "--label", "x" * (MAX_LABEL + 1), config=tmp_path / "c.toml")
    assert done.returncode == 1
    assert done.stderr == (
        f"error: --label: at most {MAX_LABEL} characters; give another --label, or none "
        "(this machine's name is used)\n"
    )
    assert not (tmp_path / "c.toml").exists()


def test_login_at_an_address_that_is_not_the_web_ui_says_to_check_web(
    device_web: str, tmp_path: Path
) -> None:
    """A 404 that is no bugless refusal asks for the right ``--web``, not "Not Found"."""
    wrong = f"{device_web}/not-the-web-ui"
    done = _login(wrong, "--no-browser", config=tmp_path / "c.toml")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {wrong}/device/start answered 404 Not Found, not as the bugless web UI does; "
        "check that --web is the address of the bugless web UI\n"
    )
