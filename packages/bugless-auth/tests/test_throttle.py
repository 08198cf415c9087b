"""Failed-password throttling: trips, says when to retry, recovers."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from auth_support import PASSWORD, AuthServer, StartAuth, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.settings import ThrottleSettings
from bugless_auth.throttle import address_key
from bugless_core.errors import ResourceExhausted, from_grpc_error
from bugless_proto import v1

#: The window of the one test that waits it out: long enough to outlast its
#: failed attempts (each hashes a password) on a loaded machine.
WINDOW_SECONDS = 10.0
#: Every other test's window: they never wait it out, so it only has to
#: outlast their attempts whatever the machine's load (CI's parallel sessions
#: have stretched five attempts and a user's creation past 6 s).
LONG_WINDOW_SECONDS = 120.0
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def _settings(window_seconds: float) -> ThrottleSettings:
    return ThrottleSettings(
        per_user_address_limit=2,
        per_user_limit=3,
        per_address_limit=5,
        window_seconds=window_seconds,
    )


@pytest.fixture
async def throttled(start_auth_server: StartAuth) -> AuthServer:
    return await start_auth_server(throttle=_settings(LONG_WINDOW_SECONDS))


@pytest.fixture
async def briefly_throttled(start_auth_server: StartAuth) -> AuthServer:
    return await start_auth_server(throttle=_settings(WINDOW_SECONDS))


async def attempt(
    server: AuthServer, username: str, password: str, address: str
) -> v1.AuthenticationResult:
    return await server.stub.authenticate_password(
        v1.AuthenticatePasswordRequest(username=username, password=password, client_address=address)
    )


async def test_user_throttle_trips_then_recovers(briefly_throttled: AuthServer) -> None:
    name = unique("guess")
    await briefly_throttled.add_user(name)
    for i in range(3):
        await expect_status(
            attempt(briefly_throttled, name, f"g{i}", f"10.0.0.{i}"), Status.UNAUTHENTICATED
        )

    error = await expect_status(
        attempt(briefly_throttled, name, PASSWORD, "10.0.1.1"), Status.RESOURCE_EXHAUSTED
    )
    converted = from_grpc_error(error)
    assert isinstance(converted, ResourceExhausted)
    assert converted.retry_after is not None
    assert 0 < converted.retry_after <= WINDOW_SECONDS + 0.01

    await asyncio.sleep(converted.retry_after + 0.05)
    assert (await attempt(briefly_throttled, name, PASSWORD, "10.0.1.1")).identity is not None


async def test_unknown_users_are_throttled_alike(throttled: AuthServer) -> None:
    name = unique("ghost")
    for i in range(3):
        await expect_status(attempt(throttled, name, "x", f"10.0.2.{i}"), Status.UNAUTHENTICATED)
    await expect_status(attempt(throttled, name, "x", "10.0.2.9"), Status.RESOURCE_EXHAUSTED)


async def test_address_throttle_stops_spraying_many_accounts(throttled: AuthServer) -> None:
    for _ in range(5):
        await expect_status(
            attempt(throttled, unique("spray"), "Summer2026!", "192.0.2.7"), Status.UNAUTHENTICATED
        )
    name = unique("victim")
    await throttled.add_user(name)
    await expect_status(attempt(throttled, name, PASSWORD, "192.0.2.7"), Status.RESOURCE_EXHAUSTED)
    assert (await attempt(throttled, name, PASSWORD, "192.0.2.8")).identity is not None


async def test_spraying_from_many_addresses_of_one_ipv6_64_is_one_address(
    throttled: AuthServer,
) -> None:
    for n in range(5):
        address = f"2001:db8:77:1:{n + 1:x}::{n + 9:x}"
        await expect_status(
            attempt(throttled, unique("spray6"), "Summer2026!", address), Status.UNAUTHENTICATED
        )
    name = unique("victim6")
    await throttled.add_user(name)
    # Any address of that /64 is refused; the next /64 and an IPv4 client are not.
    await expect_status(
        attempt(throttled, name, PASSWORD, "2001:db8:77:1:ffff::1"), Status.RESOURCE_EXHAUSTED
    )
    assert (await attempt(throttled, name, PASSWORD, "2001:db8:77:2::1")).identity is not None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::7", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("192.0.2.1", "192.0.2.1"),
        ("proxy.internal", "proxy.internal"),
        ("", ""),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key(address) == key


async def test_successes_do_not_count(throttled: AuthServer) -> None:
    name = unique("ok")
    await throttled.add_user(name)
    for _ in range(6):
        await attempt(throttled, name, PASSWORD, "10.0.3.1")


async def test_retry_after_travels_as_trailer_and_error_info(start_auth_server: StartAuth) -> None:
    # A long window: starting grpcurl on a loaded machine can take longer than
    # a short window, and the throttle must still be closed when it asks.
    throttled = await start_auth_server(throttle=_settings(LONG_WINDOW_SECONDS))
    name = unique("trail")
    for address in ("10.0.4.1", "10.0.4.1", "10.0.4.2"):
        await expect_status(attempt(throttled, name, "x", address), Status.UNAUTHENTICATED)

    process = await asyncio.create_subprocess_exec(
        GRPCURL,
        "-plaintext",
        "-v",
        "-format-error",
        "-d",
        json.dumps({"username": name, "password": "x"}),
        f"127.0.0.1:{throttled.runner.port}",
        "bugless.v1.Authenticator/AuthenticatePassword",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        stdout, stderr = await process.communicate()
    output = (stdout + stderr).decode()

    assert "ResourceExhausted" in output or "RESOURCE_EXHAUSTED" in output, output
    # Whole seconds until the bucket refills (up to the window).
    assert re.search(r"retry-after: [1-9]\d*\b", output), output
    assert '"retry_after"' in output, output
