"""The audit line of each change the web makes to a component, for the operators who read it.

Real web app, Authenticator and Model. Bob administers a component below
one he may not view, so every path the Model gives him is shortened
(``…>Net``): the line must still name the component.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from web_support import World, sign_in

from bugless_core.clients import call
from bugless_proto import v1


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.__dict__ for r in caplog.records if r.name == "bugless.web.audit"]


def _version(html: str) -> str:
    match = re.search(r'name="version" value="(\d+)"', html)
    assert match, "the page has no admin form"
    return match.group(1)


async def test_changes_to_a_component_below_a_hidden_one_are_logged_with_its_id(
    client: AsyncTestClient[Any],
    world: World,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its access list, template and archiving: each a line with its id, parent and version.

    Before, only archiving was logged, with the path as the admin sees it
    (``…>Net``) and the id only in the line's text, so an operator could
    not tell which component it was from the line's fields; access list
    and template changes left no line at all.
    """
    name = f"Net {secrets.token_hex(3)}"
    secret = world.components["Secret"]
    bob = world.users["bob"]
    net = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            parent_id=secret,
            name=name,
            acl=[v1.AclEntry(principal=v1.Principal(user=bob), role=v1.Role.ADMIN)],
        ),
    )
    token = await sign_in(client, "bob")
    page = await client.get(f"/components/{net.id}")
    assert page.status_code == 200, page.text
    assert f"…&gt;{name}" in page.text  # shortened for him

    with caplog.at_level(logging.INFO, logger="bugless.web.audit"):
        acl = await client.post(
            f"/components/{net.id}/acl",
            data={
                "_csrf": token,
                "version": _version(page.text),
                "principal": f"userid:{bob}",
                "role": "admin",
                "new_kind": "user",
                "new_name": "carol",
                "new_role": "viewer",
            },
            follow_redirects=False,
        )
        assert acl.status_code == 303, acl.text
        page = await client.get(f"/components/{net.id}")
        template = await client.post(
            f"/components/{net.id}/template",
            data={"_csrf": token, "version": _version(page.text), "title": "[net] "},
            follow_redirects=False,
        )
        assert template.status_code == 303, template.text
        page = await client.get(f"/components/{net.id}")
        archived = await client.post(
            f"/components/{net.id}/archive",
            data={"_csrf": token, "version": _version(page.text), "archived": "yes"},
            follow_redirects=False,
        )
        assert archived.status_code == 303, archived.text

    lines = _audit_lines(caplog)
    assert [line["action"] for line in lines] == [
        "changed the access list of",
        "changed the issue template of",
        "archived",
    ]
    stored = await call(
        model.get_component, v1.GetComponentRequest(caller=world.admin, component_id=net.id)
    )
    for line in lines:
        assert line["user_id"] == bob
        assert line["target"] == f"component {net.id}"
        assert line["audit_component_id"] == net.id
        assert line["audit_parent_id"] == secret
        assert line["audit_path"] == f"…>{name}"
    assert [line["audit_version"] for line in lines] == [
        net.version + 1,
        net.version + 2,
        stored.version,
    ]
    assert stored.version == net.version + 3
    assert lines[0]["audit_entries"] == 2


async def test_creating_a_component_is_logged_with_its_id_and_path(
    client: AsyncTestClient[Any], dora: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A new component's line names it by id, parent (none) and whole path."""
    name = f"Dora audit {secrets.token_hex(3)}"
    token = await sign_in(client, dora)
    with caplog.at_level(logging.INFO, logger="bugless.web.audit"):
        created = await client.post(
            "/components",
            data={"_csrf": token, "name": name, "description": "", "parent_id": "0"},
            follow_redirects=False,
        )
    assert created.status_code == 303, created.text
    component_id = int(created.headers["location"].rsplit("/", 1)[1])
    (line,) = _audit_lines(caplog)
    assert line["action"] == "created"
    assert line["target"] == f"component {component_id}"
    assert line["audit_component_id"] == component_id
    assert line["audit_parent_id"] == 0
    assert line["audit_path"] == name
    assert line["audit_version"] == 1
