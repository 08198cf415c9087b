"""An API that cannot be reached is named by its address, in the client and the CLI.

Before, a unary call said "a backend service is unreachable: [Errno 111]
Connection refused" (the frontends' wording, where the backend is the Model
or the Authenticator); for a script the only service is the API it was
given, so the message names it and its address, as the streams did in part.
"""

from __future__ import annotations

import pytest
from api_support import Bots, bugless_cli

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_core.errors import Unavailable
from bugless_testing.ports import refused_port


def _robot_client(bots: Bots, address: str) -> BuglessClient:
    """The robot's client for ``address``, one attempt per call (no retry hides the refusal)."""
    robot = bots["robot"]
    return BuglessClient(
        address, robot.cert, robot.key, bots.stack.pki.ca_file, retry=RetryPolicy(attempts=1)
    )


async def test_calls_and_streams_name_the_unreachable_api(bots: Bots) -> None:
    with refused_port() as port:  # held unbound to others: no stranger answers on it
        said = rf"^the bugless API at 127\.0\.0\.1:{port} is unreachable: .*Connection refused"
        async with _robot_client(bots, f"127.0.0.1:{port}") as client:
            with pytest.raises(Unavailable, match=said):
                await client.whoami()
            with pytest.raises(Unavailable, match=said):
                async for _ in client.watch(query="is:open"):
                    pass


def test_the_cli_names_the_unreachable_api(served_api: dict[str, str]) -> None:
    with refused_port() as port:
        env = {**served_api, "BUGLESS_API": f"127.0.0.1:{port}"}
        done = bugless_cli(env, "whoami", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: the bugless API at 127.0.0.1:{port} is unreachable: ")


async def test_an_ipv6_api_is_named_in_brackets(bots: Bots) -> None:
    """``[::1]:port``, as the address is written to the client, not ``::1:port``.

    Before, the host and port were joined as given, and an IPv6 address read
    as one more group of the address.
    """
    with refused_port("::1") as port:
        said = rf"^the bugless API at \[::1\]:{port} is unreachable: "
        async with _robot_client(bots, f"[::1]:{port}") as client:
            with pytest.raises(Unavailable, match=said):
                await client.whoami()
