"""Custom field tests' seeding: a fresh component, a field defined by form, an issue in it.

The custom field pages, their list columns and the page caches all define
fields on a component of their own and file issues there; shared here rather
than one test module importing them from another's.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World

from bugless_core.clients import call
from bugless_proto import v1


async def fresh_component(
    model: v1.ModelStub, world: World, parent: str = "Platform"
) -> v1.Component:
    """A fresh component (so fields defined in one test apply to no other test's issues)."""
    return await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            parent_id=world.components[parent],
            name=f"CF{secrets.token_hex(4)}",
        ),
    )


async def define_field(
    client: AsyncTestClient[Any], csrf: str, component_id: int, **form: str
) -> int:
    """Define a field on ``component_id`` with the fields page's form (``form``); its id."""
    response = await client.post(
        f"/components/{component_id}/fields", data={"_csrf": csrf, **form}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    match = re.search(r"#field-(\d+)$", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


async def file_issue(
    model: v1.ModelStub, world: World, component_id: int, title: str, by: str = "bob"
) -> v1.Issue:
    """An issue ``title`` in ``component_id``, filed by ``by`` through the Model."""
    return await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.caller(by),
            fields=v1.IssueFields(title=title, component_id=component_id),
            idempotency_key=secrets.token_hex(8),
        ),
    )
