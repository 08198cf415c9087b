"""A real stack (PostgreSQL, Model, Authenticator) and an API frontend on it.

Bots are certificate users of the Authenticator's ``tls`` backend; tests talk
to the API frontend over real mutual TLS with the bot's certificate.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from api_support import BOTS, Bots, ConnectAs, api_settings, signed_in
from prometheus_client import CollectorRegistry

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]


@pytest.fixture(scope="session")
def bots(bugless_stack: LocalStack) -> Bots:
    certificates = {
        name: bugless_stack.add_bot(name, groups=groups, admin=admin)
        for name, (groups, admin) in BOTS.items()
    }
    return Bots(bugless_stack, certificates)


@pytest.fixture(scope="session")
async def api(bots: Bots) -> AsyncIterator[RunningApi]:
    """The API frontend most tests use (a generous rate limit)."""
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=10_000.0, burst=10_000))
    running = await start_api(settings, metrics_registry=CollectorRegistry())
    # A certificate user exists once it has authenticated: sign every bot in,
    # so that tests may name any of them (cc, assignee, editor) in any order.
    for name in BOTS:
        async with BuglessClient(
            f"127.0.0.1:{running.port}",
            cert=bots[name].cert,
            key=bots[name].key,
            ca=bots.stack.pki.ca_file,
            timeout=30,
        ) as client:
            await client.whoami()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def connect_as(api: RunningApi, bots: Bots) -> AsyncIterator[ConnectAs]:
    """Open clients as a bot to ``api`` (or another frontend); close them afterwards."""
    opened: list[BuglessClient] = []

    def connect(
        username: str, *, port: int | None = None, retry: RetryPolicy | None = None
    ) -> BuglessClient:
        files = bots[username]
        client = BuglessClient(
            f"127.0.0.1:{port or api.port}",
            cert=files.cert,
            key=files.key,
            ca=bots.stack.pki.ca_file,
            timeout=30,
            retry=retry or RetryPolicy(attempts=1),
        )
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


@pytest.fixture
async def cli_bot(connect_as: ConnectAs) -> BuglessClient:
    """cli-bot's client (the bot ``served_api``'s environment acts as), known by its first call."""
    (client,) = await signed_in(connect_as, "cli-bot")
    return client


@pytest.fixture(scope="module")
def served_api(bots: Bots, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`bugless api serve` configured by variables alone; yields cli-bot's client environment."""
    stack = bots.stack
    pki = stack.pki
    api = stack.start(
        "api",
        ["api", "serve", "--port", "0"],
        name="api-by-env",
        env={
            "BUGLESS_API_MODEL": f"127.0.0.1:{stack.model.port}",
            "BUGLESS_API_AUTH": f"127.0.0.1:{stack.auth.port}",
            "BUGLESS_API_TLS_CERT": str(stack.server.cert),
            "BUGLESS_API_TLS_KEY": str(stack.server.key),
            "BUGLESS_API_CLIENT_CA": str(pki.ca_file),
        },
    )
    files = bots["cli-bot"]
    client_env = {
        **os.environ,
        "BUGLESS_API": f"127.0.0.1:{api.port}",
        "BUGLESS_CERT": str(files.cert),
        "BUGLESS_KEY": str(files.key),
        "BUGLESS_CA": str(pki.ca_file),
        "BUGLESS_CLIENT_CONFIG": str(tmp_path_factory.mktemp("cli") / "absent.toml"),
    }
    try:
        yield client_env
    finally:
        stack.stop_service(api)
        assert api.process.returncode == 0, api.process.output()
