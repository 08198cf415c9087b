"""The home page: the lists people work from every day."""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import PASSWORD, World, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


def _section(html: str, key: str) -> str:
    match = re.search(rf'<section class="home-section" id="section-{key}".*?</section>', html, re.S)
    assert match, f"no {key} section"
    return match.group(0)


def _ids(section: str) -> set[int]:
    return {int(i) for i in re.findall(r'href="/issues/(\d+)"', section)}


async def test_home_page_has_the_everyday_sections(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    bob = world.users["bob"]
    assigned = await create_issue(model, world, "Home: mine to do", by="carol", assignee=bob)
    to_verify = await create_issue(model, world, "Home: check my fix", by="carol", verifier=bob)
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("carol"),
            issue_id=to_verify.id,
            expected_version=to_verify.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(status=v1.Status.FIXED),
                update_mask=FieldMask(paths=["status"]),
            ),
        ),
    )
    reported = await create_issue(model, world, "Home: I saw this", by="bob")
    cc = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.caller("carol"),
            fields=v1.IssueFields(
                title="Home: keep me posted", component_id=world.components["Platform"]
            ),
            cc=[bob],
            idempotency_key=secrets.token_hex(8),
        ),
    )
    corner = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            name="Bob's corner",
            acl=[v1.AclEntry(principal=v1.Principal(user=bob), role=v1.Role.EDITOR)],
        ),
    )
    elsewhere = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.admin,
            fields=v1.IssueFields(title="Home: changed in bob's corner", component_id=corner.id),
            idempotency_key=secrets.token_hex(8),
        ),
    )
    await sign_in(client, "bob")
    home = await client.get("/")
    assert home.status_code == 200
    sections = {
        k: _ids(_section(home.text, k))
        for k in ("assigned", "verify", "reported", "cc", "components")
    }
    assert assigned.id in sections["assigned"]
    assert to_verify.id in sections["verify"]
    assert to_verify.id not in sections["assigned"]
    assert reported.id in sections["reported"]
    assert cc.id in sections["cc"]
    assert cc.id not in sections["reported"]
    # Bob is on the ACL of his corner, so changes there show though he is in none of them.
    assert elsewhere.id in sections["components"]
    # Each section links to its whole search.
    assert 'href="/search?q=verifier%3Ame+status%3Afixed' in home.text


async def test_home_without_components_of_ones_own_says_so(
    client: AsyncTestClient[Any], world: World
) -> None:
    world.stack.add_user("newcomer", PASSWORD, display_name="New Comer")
    await sign_in(client, "newcomer")
    home = await client.get("/")
    assert home.status_code == 200
    assert "No components are yours yet" in _section(home.text, "components")
