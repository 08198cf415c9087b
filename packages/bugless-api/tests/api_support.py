"""Shared helpers of the bugless-api tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from bugless_api.client import BuglessClient
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import ApiSettings, RateLimitSettings
from bugless_core.grpc import TransferServerSettings
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.pki import CertificateFiles
    from bugless_dev.stack import LocalStack

#: username -> (groups, admin)
BOTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "robot": (("component-creators", "triage"), False),
    "boss": ((), True),
    "viewer": (("secret-viewers",), False),
    "outsider": ((), False),
    "greedy": ((), False),
    "cli-bot": (("component-creators",), False),
}

#: An unknown field (number 100) upb refuses to parse and betterproto2 keeps:
#: groups nested 150 deep, past upb's recursion limit (100). Appended to a
#: Model's real reply (no real reply can hold it: its messages nest a few
#: levels), it makes the reply the API reads with betterproto2 instead.
UPB_REFUSES = b"\xa3\x06" * 150 + b"\xa4\x06" * 150


@dataclass(frozen=True)
class Bots:
    stack: LocalStack
    certificates: dict[str, CertificateFiles]

    def __getitem__(self, username: str) -> CertificateFiles:
        return self.certificates[username]


def api_settings(stack: LocalStack, **options: Any) -> ApiSettings:
    """An API frontend on ``stack``'s Model and Authenticator (``options`` may name others)."""
    backends = {
        "model": stack.client_address("model", "api"),
        "auth": stack.client_address("auth", "api"),
    }
    return ApiSettings(
        grpc=TransferServerSettings(
            tls_cert=stack.server.cert,
            tls_key=stack.server.key,
            client_ca=stack.pki.ca_file,
            drain_seconds=0.0,
            grace_seconds=1.0,
        ),
        **{**backends, **options},
    )


@contextlib.asynccontextmanager
async def extra_api(bots: Bots, **options: Any) -> AsyncIterator[RunningApi]:
    """Another API frontend on the stack, rate limit as generous as ``api``'s, then closed.

    ``options``: the ApiSettings that set it apart (say, batching off for the
    reference answers a batching test compares with).
    """
    settings = api_settings(
        bots.stack, rate_limit=RateLimitSettings(rate=10_000.0, burst=10_000), **options
    )
    running = await start_api(settings, metrics_registry=CollectorRegistry())
    try:
        yield running
    finally:
        await running.close()


def acl(principal: v1.Principal, role: v1.Role) -> v1.AclEntry:
    """One entry of a component's ACL."""
    return v1.AclEntry(principal=principal, role=role)


ConnectAs = Callable[..., BuglessClient]


async def signed_in(connect_as: ConnectAs, *usernames: str) -> list[BuglessClient]:
    """Clients of the given bots, each having made one call.

    A certificate user is created by the Authenticator on its first
    authentication, so a bot is only known by username (as an assignee, cc,
    editor, reader...) once it has called the API; this makes sure it has.
    """
    clients = [connect_as(username) for username in usernames]
    for client in clients:
        await client.whoami()
    return clients


async def new_component(client: BuglessClient, prefix: str) -> v1.Component:
    """A component of its own (``PREFIX-xxxxxx``), so tests sharing a database do not meet."""
    return await client.create_component(f"{prefix}-{secrets.token_hex(3)}")


async def new_issues(client: BuglessClient, component: v1.Component, count: int) -> list[v1.Issue]:
    """``count`` issues titled ``cli 0``, ``cli 1``... in ``component``."""
    return [await client.create_issue(f"cli {n}", component.id) for n in range(count)]


def bugless_cli(
    env: dict[str, str], *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``bugless ARGS`` as a script would (stdin no terminal); assert success if ``check``."""
    result = subprocess.run(
        [*BUGLESS_COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=False,
        input=input or "",
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``bugless ARGS --json``, parsed."""
    data = json.loads(bugless_cli(env, *args, "--json").stdout)
    assert isinstance(data, dict)
    return data
