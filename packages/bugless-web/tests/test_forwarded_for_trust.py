"""A client that reaches a web replica directly cannot choose the address it is counted by.

Outside ``--dev`` the web tier believed ``X-Forwarded-For`` (and
``X-Forwarded-Proto``) from any peer, so anyone who could connect to a
replica (a pod reachable past the ingress, a misrouted Service) named the
address that the password throttle, the device-login caps and the logs
saw: a new one for every guess. Now only ``--trusted-proxy`` peers are
believed (none by default; loopback with ``--dev`` unless given), and from
them the client is the rightmost address of the chain that is not itself a
trusted proxy.

Real processes over sockets: an Authenticator of this module's own (its own
schema, so that the buckets these tests fill for 127.0.0.1 are no other
test's; a people CA for device logins) and three ``bugless web serve``
replicas on it, each trusting other peers. Every request comes from
127.0.0.1, which is or is not a trusted proxy depending on the replica.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from web_support import World

from bugless_auth.people import MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS
from bugless_dev.stack import RunningService

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
#: Failed passwords per (username, address) before the pair is refused (SECURITY.md).
PAIR_LIMIT = 10


@dataclass(frozen=True)
class Replicas:
    """The URLs of this module's web replicas.

    Attributes:
        no_proxy: Outside ``--dev``, without ``--trusted-proxy``: every peer
            is the client.
        other_proxy: ``--dev`` with ``--trusted-proxy 192.0.2.0/24``: the
            explicit setting replaces dev's loopback, so 127.0.0.1 is an
            untrusted client.
        chain: Outside ``--dev`` with ``BUGLESS_WEB_TRUSTED_PROXIES`` naming
            127.0.0.1, 198.51.100.0/24 and 2001:db8:ffff::/48 (an ingress
            behind load balancers).
        chain_dev: The same proxies with ``--dev``, for the sign-in form
            (its session cookie is ``Secure`` outside ``--dev``, which a
            client on plain HTTP never sends back).
    """

    no_proxy: str
    other_proxy: str
    chain: str
    chain_dev: str


@pytest.fixture(scope="module")
def replicas(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("forwarded-for")
    people_ca = trustme.CA(organization_name="bugless people CA (forwarded-for test)")
    ca_cert, ca_key = root / "people-ca.pem", root / "people-ca.key"
    people_ca.cert_pem.write_to_path(str(ca_cert))
    people_ca.private_key_pem.write_to_path(str(ca_key))
    stack = world.stack
    schema = f"auth_forwarded_{secrets.token_hex(4)}"
    auth = stack.start(
        "auth",
        ["auth", "serve", "--port", "0", "--schema", schema, "--migrate"],
        name="auth-forwarded-for",
        env={
            "BUGLESS_AUTH_PEOPLE_CA_CERT": str(Path(ca_cert)),
            "BUGLESS_AUTH_PEOPLE_CA_KEY": str(Path(ca_key)),
        },
    )
    started: list[RunningService] = [auth]
    chain_proxies = {"BUGLESS_WEB_TRUSTED_PROXIES": "127.0.0.1, 198.51.100.0/24 2001:db8:ffff::/48"}
    try:
        urls: list[str] = []
        for name, flags, env, dev in (
            ("web-no-proxy", [], {}, False),
            ("web-other-proxy", ["--trusted-proxy", "192.0.2.0/24"], {}, True),
            ("web-proxy-chain", [], chain_proxies, False),
            ("web-proxy-chain-dev", [], chain_proxies, True),
        ):
            web = stack.start_web(
                "--auth", f"127.0.0.1:{auth.port}", *flags, name=name, env=env, dev=dev
            )
            started.append(web)
            assert web.url is not None
            urls.append(web.url)
        yield Replicas(*urls)
    finally:
        for service in reversed(started):
            stack.stop_service(service)


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _device_starts(url: str, headers: list[dict[str, str]]) -> list[httpx.Response]:
    """One ``/device/start`` with each set of headers, in order."""
    csr = _csr()
    with httpx.Client(base_url=url, timeout=30) as http:
        return [
            http.post(
                "/device/start",
                json={"csr_pem": csr, "label": "laptop", "validity_seconds": 3600},
                headers=extra,
            )
            for extra in headers
        ]


def _guesses(url: str, username: str, forwarded_for: list[str]) -> list[int]:
    """One wrong password for ``username`` with each ``X-Forwarded-For``, in order; the statuses."""
    with httpx.Client(base_url=url, timeout=30) as http:
        token = _CSRF.search(http.get("/signin").text)
        assert token is not None
        return [
            http.post(
                "/signin",
                data={"username": username, "password": "wrong", "_csrf": token.group(1)},
                headers={"x-forwarded-for": chain},
            ).status_code
            for chain in forwarded_for
        ]


def _address() -> str:
    """A documentation address (TEST-NET-3) no other test of this module uses."""
    return f"203.0.113.{secrets.randbelow(250) + 1}"


def test_without_trusted_proxies_forged_headers_leave_the_device_login_cap_on_the_peer(
    replicas: Replicas,
) -> None:
    """Outside ``--dev`` with no ``--trusted-proxy``, 127.0.0.1 is the client, whatever it says.

    Believed, each forged address would have had its own cap, and the flood
    would never be refused.
    """
    forged = [
        {"x-forwarded-for": f"198.18.{n}.{n}", "x-forwarded-proto": "https"}
        for n in range(1, MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS + 4)
    ]
    answers = _device_starts(replicas.no_proxy, forged)
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS + [429] * 3, statuses
    # Nor is the forged scheme believed: the links stay on what the peer used.
    assert answers[0].json()["verification_uri"] == f"{replicas.no_proxy}/device"


def test_an_untrusted_peers_forged_addresses_all_count_against_it_at_sign_in(
    replicas: Replicas,
) -> None:
    """``--trusted-proxy`` not naming the peer: the password throttle locks the real peer."""
    victim = f"nobody-{secrets.token_hex(4)}"  # unknown accounts are throttled alike
    forged = [f"198.18.0.{n}" for n in range(1, PAIR_LIMIT + 3)]
    statuses = _guesses(replicas.other_proxy, victim, forged)
    assert statuses == [401] * PAIR_LIMIT + [429, 429], statuses


def test_a_trusted_proxys_forwarded_address_is_the_client(replicas: Replicas) -> None:
    """From a trusted peer the header is believed: the named address is throttled, not the peer."""
    victim = f"nobody-{secrets.token_hex(4)}"
    client, other = _address(), f"198.51.{secrets.randbelow(99) + 1}.1"
    statuses = _guesses(replicas.chain_dev, victim, [client] * (PAIR_LIMIT + 1))
    assert statuses == [401] * PAIR_LIMIT + [429], statuses
    # Another client behind the same proxy has a bucket of its own.
    assert _guesses(replicas.chain_dev, victim, [f"192.0.2.{secrets.randbelow(250) + 1}"]) == [401]
    # 198.51.100.0/24 is a trusted proxy too, but 198.51.<n>.1 outside it is a client.
    assert _guesses(replicas.chain_dev, victim, [other]) == [401]


def test_a_chain_is_read_from_the_right_past_trusted_proxies_only(replicas: Replicas) -> None:
    """The client prepends what it likes; the rightmost untrusted address is the one counted.

    ``spoof, client, 198.51.100.9`` reaching the replica from 127.0.0.1: the
    load balancer (198.51.100.9) and the ingress (127.0.0.1) are trusted, so
    the client is the address the load balancer saw, however the spoofed
    part changes.
    """
    victim = f"nobody-{secrets.token_hex(4)}"
    client = _address()
    chains = [f"10.{n}.0.1, {client}, 198.51.100.9" for n in range(PAIR_LIMIT + 1)]
    statuses = _guesses(replicas.chain_dev, victim, chains)
    assert statuses == [401] * PAIR_LIMIT + [429], statuses
    # The same spoof in front of another client changes nothing for that one.
    another = f"192.0.2.{secrets.randbelow(250) + 1}"
    assert _guesses(replicas.chain_dev, victim, [f"10.0.0.1, {another}, 198.51.100.9"]) == [401]


def test_an_ipv6_chain_is_read_the_same_way(replicas: Replicas) -> None:
    """IPv6 proxies (a CIDR) and an IPv6 client: the client's /64 is counted, not the spoof."""
    victim = f"nobody-{secrets.token_hex(4)}"
    client = f"2001:db8:{secrets.randbelow(0xFFFE):x}::1"
    chains = [f"fd00::{n:x}, {client}, 2001:db8:ffff::7" for n in range(1, PAIR_LIMIT + 2)]
    statuses = _guesses(replicas.chain_dev, victim, chains)
    assert statuses == [401] * PAIR_LIMIT + [429], statuses


def test_a_trusted_proxys_forwarded_scheme_and_address_reach_the_device_login(
    replicas: Replicas,
) -> None:
    """Outside ``--dev``, a trusted proxy's ``X-Forwarded-Proto`` and chain are believed."""
    client = _address()
    chain = {"x-forwarded-for": f"10.9.9.9, {client}, 198.51.100.9", "x-forwarded-proto": "https"}
    answers = _device_starts(replicas.chain, [chain] * (MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS + 1))
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * MAX_PENDING_DEVICE_LOGINS_PER_ADDRESS + [429], statuses
    assert answers[0].json()["verification_uri"].startswith("https://127.0.0.1:")
    # The cap is the client's, not the proxy's: another client still starts one.
    elsewhere = {"x-forwarded-for": f"192.0.2.{secrets.randbelow(250) + 1}, 198.51.100.9"}
    assert [a.status_code for a in _device_starts(replicas.chain, [elsewhere])] == [200]
