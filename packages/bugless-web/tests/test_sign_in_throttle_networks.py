"""One IPv6 host cannot outguess the sign-in throttle by changing addresses in its /64.

The lockout policy (SECURITY.md) allows 10 failed passwords per (username,
address) and 100 per username over all addresses, "so one remote address
cannot lock anybody out". Keyed by the exact address, one IPv6 host, which
holds a whole /64, got 10 guesses per address it chose: it could guess on
past the pair limit, and alone empty a person's per-user bucket and hold
them out. The Authenticator now counts an IPv6 address by its /64.

Real processes: the session's Authenticator behind a ``--dev`` web replica
of this module's own, which believes ``X-Forwarded-For`` from 127.0.0.1 (as
a replica believes its ingress).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
from web_support import World

from bugless_dev.stack import RunningService

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture(scope="module")
def web(world: World) -> Iterator[RunningService]:
    """A web replica of this module's own (its client addresses come from X-Forwarded-For)."""
    server = world.stack.start_web(name="web-throttle-networks")
    try:
        yield server
    finally:
        world.stack.stop_service(server)


def _guesses(web: RunningService, username: str, addresses: list[str]) -> list[int]:
    """One wrong password for ``username`` from each address, in order; the statuses."""
    assert web.url is not None
    with httpx.Client(base_url=web.url, timeout=30) as http:
        token = _CSRF.search(http.get("/signin").text)
        assert token is not None
        return [
            http.post(
                "/signin",
                data={"username": username, "password": "wrong", "_csrf": token.group(1)},
                headers={"x-forwarded-for": address},
            ).status_code
            for address in addresses
        ]


def test_guesses_from_many_addresses_of_one_ipv6_64_count_as_one_address(
    web: RunningService,
) -> None:
    network = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    victim = f"nobody-{secrets.token_hex(4)}"  # unknown accounts are throttled alike
    # Each guess from a new address of the same /64 (the pair limit is 10).
    statuses = _guesses(web, victim, [f"{network}:{n:x}::1" for n in range(1, 13)])
    assert statuses == [401] * 10 + [429, 429], statuses
    # Another network is a different party: its own pair bucket is full.
    elsewhere = f"2001:db8:{secrets.randbelow(0xFFFF):x}:ffff::1"
    assert _guesses(web, victim, [elsewhere]) == [401]


def test_ipv4_addresses_are_still_counted_one_by_one(web: RunningService) -> None:
    victim = f"nobody-{secrets.token_hex(4)}"
    base = f"198.51.{secrets.randbelow(250)}"
    statuses = _guesses(web, victim, [f"{base}.{n}" for n in range(1, 13)])
    assert statuses == [401] * 12, statuses
