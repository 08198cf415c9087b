"""The issue page shows its relations with status, title and assignee, at a fixed cost."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, grpc_calls, own_model_replica, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web import WebSettings, create_app


@pytest.fixture
async def counted_client(world: World) -> AsyncIterator[tuple[AsyncTestClient[Litestar], int]]:
    """A web client on a Model replica of its own, whose metrics count the calls it got."""
    async with own_model_replica(world.stack, "model-counted") as (address, metrics_port):
        settings = WebSettings(
            model=address, auth=world.stack.auth, session_keys=(SESSION_KEY,), dev=True
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
            yield c, metrics_port


def _rows(html: str, key: str) -> dict[int, str]:
    """The rows of one relation list, by issue id."""
    table = re.search(rf'<table[^>]*data-relation="{key}".*?</table>', html, re.S)
    assert table, f"no {key} list"
    rows = re.findall(r'<tr data-issue="(\d+)">(.*?)</tr>', table.group(0), re.S)
    return {int(i): body for i, body in rows}


async def test_relations_show_status_title_and_assignee_with_one_batch_call(
    counted_client: tuple[AsyncTestClient[Litestar], int], world: World, model: v1.ModelStub
) -> None:
    client, metrics_port = counted_client
    carol = world.users["carol"]
    epic = await create_issue(model, world, "Rel: the epic", status=v1.Status.FIXED)
    parent = await create_issue(model, world, "Rel: the parent", parent_id=epic.id)
    blockers = [
        await create_issue(model, world, f"Rel: blocker {n}", assignee=carol) for n in range(3)
    ]
    blocked = await create_issue(model, world, "Rel: waits for it", status=v1.Status.FIXED)
    canonical = await create_issue(model, world, "Rel: the original report")
    issue = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.caller("bob"),
            fields=v1.IssueFields(
                title="Rel: the issue",
                component_id=world.components["Platform"],
                parent_id=parent.id,
                duplicate_of_id=canonical.id,
            ),
            blocked_by_ids=[b.id for b in blockers],
            blocking_ids=[blocked.id],
            idempotency_key=secrets.token_hex(8),
        ),
    )
    children = [
        await create_issue(model, world, f"Rel: child {n}", parent_id=issue.id, assignee=carol)
        for n in range(2)
    ]
    duplicate = await create_issue(model, world, "Rel: said again", duplicate_of_id=issue.id)
    await sign_in(client, "bob")
    before = {
        m: await grpc_calls(metrics_port, m) for m in ("BatchGetIssues", "SearchIssues", "GetIssue")
    }
    page = await client.get(f"/issues/{issue.id}")
    after = {m: await grpc_calls(metrics_port, m) for m in before}
    assert page.status_code == 200
    html = page.text
    blocked_by = _rows(html, "blocked-by")
    assert sorted(blocked_by) == sorted(b.id for b in blockers)
    assert all("Carol Coder" in body and "Assigned" in body for body in blocked_by.values())
    assert "Rel: blocker 0" in blocked_by[blockers[0].id]
    # A closed one is shown closed, in its row and in the side panel.
    assert "Rel: waits for it" in _rows(html, "blocking")[blocked.id]
    assert "issue-ref closed" in _rows(html, "blocking")[blocked.id]
    assert "Fixed" in _rows(html, "blocking")[blocked.id]
    panel = re.search(
        r"<dt>Parent</dt><dd>(.*?)</dd>.*?<dt>Blocking</dt><dd>(.*?)</dd>", html, re.S
    )
    assert panel
    assert "Rel: the parent" in panel.group(1)
    assert "issue-ref closed" in panel.group(2)
    assert 'title="Fixed"' in panel.group(2)
    assert "Rel: waits for it" in panel.group(2)
    assert "Rel: the original report" in _rows(html, "duplicate-of")[canonical.id]
    kids = _rows(html, "children")
    assert sorted(kids) == sorted(c.id for c in children)
    assert "Rel: child 1" in kids[children[1].id]
    assert "Carol Coder" in kids[children[0].id]
    assert "Rel: said again" in _rows(html, "duplicates")[duplicate.id]
    crumbs = re.search(r'<nav class="crumbs parent-crumbs".*?</nav>', html, re.S)
    assert crumbs
    trail = re.findall(r'href="/issues/(\d+)"', crumbs.group(0))
    assert trail == [str(epic.id), str(parent.id)]
    assert f'<a href="/issues/{epic.id}" class="closed">{epic.id}: Rel: the epic</a>' in (
        crumbs.group(0)
    )
    # GetIssue for the issue; one batch for the ids the issue names, one search
    # for those naming it, and a batch of one for the ancestor above its parent
    # (batches, so that they ask for the fields shown only).
    assert after["GetIssue"] - before["GetIssue"] == 1
    assert after["BatchGetIssues"] - before["BatchGetIssues"] == 2
    assert after["SearchIssues"] - before["SearchIssues"] == 1


async def test_relations_the_viewer_may_not_see_are_numbers_only(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    secret = await create_issue(model, world, "Rel: secret blocker", by="alice", component="Secret")
    issue = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.admin,
            fields=v1.IssueFields(
                title="Rel: open issue", component_id=world.components["Platform"]
            ),
            blocked_by_ids=[secret.id],
            idempotency_key=secrets.token_hex(8),
        ),
    )
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    row = _rows(page.text, "blocked-by")[secret.id]
    assert "not visible to you" in row
    assert "Rel: secret blocker" not in page.text
