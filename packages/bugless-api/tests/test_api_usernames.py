"""Usernames with non-ASCII capitals, through the API, in any case.

A certificate (like an LDAP or OIDC sign-in) may bring a username such as
"Ölaf"; the API resolves the names a bot sends (person fields, search terms)
through the Authenticator and its own cache, all by ``username_key``.
"""

from __future__ import annotations

import secrets

from api_support import Bots, ConnectAs

from bugless_api.client import BuglessClient
from bugless_api.server import RunningApi


async def test_a_username_with_a_non_ascii_capital_is_named_in_any_case(
    api: RunningApi, bots: Bots, connect_as: ConnectAs
) -> None:
    tag = secrets.token_hex(3)
    olaf = f"Ölaf-{tag}"
    # The tls backend's mapping names the user; the CN (also a DNS name) is ASCII.
    files = bots.stack.pki.client_certificate_for(olaf, common_name=f"olaf-{tag}.bot")
    async with BuglessClient(
        f"127.0.0.1:{api.port}", cert=files.cert, key=files.key, ca=bots.stack.pki.ca_file
    ) as client:
        identity = await client.whoami()  # the user exists once signed in
    assert identity.user is not None
    assert identity.user.username == olaf
    robot = connect_as("robot")
    component = await robot.create_component(f"Names-{secrets.token_hex(3)}")

    issue = await robot.create_issue(
        "named in any case", component.id, assignee=olaf.upper(), cc=[olaf.lower()]
    )

    assert issue.assignee == olaf
    assert issue.cc == [olaf]
    for spelling in (olaf, olaf.lower(), olaf.upper()):
        found = await robot.search_issues(f"assignee:{spelling} c:{component.id}")
        assert [i.id for i in found.issues] == [issue.id], spelling
