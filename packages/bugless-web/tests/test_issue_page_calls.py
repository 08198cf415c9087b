"""What an issue page asks the Model, counted by a Model replica's own metrics.

A page load asks only for what may have changed since the last one: the
attachment list once per issue version (any upload, deletion or redaction
is a new version, so a change shows at once), and the search for the
issue's children and duplicates only when the issue says it has some.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import (
    SESSION_KEY,
    World,
    create_issue,
    grpc_calls,
    own_model_replica,
    sign_in,
    upload_attachment,
)

from bugless_core.clients import call
from bugless_core.model.backend import Capability
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web import WebSettings, create_app
from bugless_web.relations import RELATION_FLAGS


@pytest.fixture
async def counted_client(world: World) -> AsyncIterator[tuple[AsyncTestClient[Litestar], int]]:
    """A web client keeping what it may for ten minutes, on a Model replica of its own.

    The replica's metrics count the calls this client made (ten minutes, so
    that no assertion depends on the machine's speed).
    """
    async with own_model_replica(world.stack, "model-page-calls") as (address, metrics_port):
        settings = WebSettings(
            model=address,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=True,
            timeline_cache_seconds=600.0,
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
            yield c, metrics_port


async def test_attachments_are_asked_once_per_issue_version_and_changes_show_at_once(
    counted_client: tuple[AsyncTestClient[Litestar], int], world: World, model: v1.ModelStub
) -> None:
    client, metrics_port = counted_client
    issue = await create_issue(model, world, "Calls: attachments")
    csrf = await sign_in(client, "bob")

    async def listed() -> int:
        return await grpc_calls(metrics_port, "ListAttachments")

    start = await listed()
    assert (await client.get(f"/issues/{issue.id}")).status_code == 200
    assert await listed() == start + 1
    assert (await client.get(f"/issues/{issue.id}")).status_code == 200
    assert await listed() == start + 1  # the same version: the list is reused

    uploaded = await upload_attachment(client, csrf, issue.id, b"notes", "notes.txt")
    assert uploaded.status_code == 201, uploaded.text
    created = uploaded.json()
    page = (await client.get(f"/issues/{issue.id}")).text
    assert f'action="/attachments/{created["id"]}/delete"' in page  # a new version: asked
    assert await listed() == start + 2

    deleted = await client.post(
        f"/attachments/{created['id']}/delete", data={"_csrf": csrf}, follow_redirects=False
    )
    assert deleted.status_code == 303
    page = (await client.get(f"/issues/{issue.id}")).text
    assert f'action="/attachments/{created["id"]}/delete"' not in page
    assert "deleted attachment notes.txt" in page
    assert await listed() == start + 3


async def test_the_children_search_is_made_only_for_an_issue_that_has_some(
    counted_client: tuple[AsyncTestClient[Litestar], int], world: World, model: v1.ModelStub
) -> None:
    client, metrics_port = counted_client
    issue = await create_issue(model, world, "Calls: a parent to be")
    canonical = await create_issue(model, world, "Calls: said first")
    await sign_in(client, "bob")

    async def searched() -> int:
        return await grpc_calls(metrics_port, "SearchIssues")

    start = await searched()
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert 'data-relation="children"' not in page.text
    assert await searched() == start  # no child, no duplicate: no search

    child = await create_issue(model, world, "Calls: the child", parent_id=issue.id)
    page = await client.get(f"/issues/{issue.id}")
    assert 'data-relation="children"' in page.text
    assert "Calls: the child" in page.text
    assert await searched() == start + 1

    await create_issue(model, world, "Calls: said again", duplicate_of_id=canonical.id)
    page = await client.get(f"/issues/{canonical.id}")
    assert 'data-relation="duplicates"' in page.text
    assert "Calls: said again" in page.text
    assert await searched() == start + 2

    # The child leaves: the parent's version does not change, its page does.
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("bob"),
            issue_id=child.id,
            expected_version=child.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(parent_id=0),
                update_mask=FieldMask(paths=["parent_id"]),
            ),
        ),
    )
    page = await client.get(f"/issues/{issue.id}")
    assert "Calls: the child" not in page.text
    assert await searched() == start + 2


def test_the_capability_the_web_asks_for_is_the_models() -> None:
    assert Capability.RELATION_FLAGS.value == RELATION_FLAGS
