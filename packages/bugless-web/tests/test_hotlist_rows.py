"""A hotlist page's rows as they are now (``/hotlists/N/rows``): what its script redraws with.

Real web app, Model and Authenticator. Re-ranks and notes change the
hotlist, not its issues, so no event announces them: the page asks for its
rows again, and the ``ETag`` makes that a 304 while nothing it shows changed.
"""

from __future__ import annotations

import json
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
from bugless_proto.google.protobuf import FieldMask
from bugless_web import WebSettings, create_app
from bugless_web.display import iso_instant
from bugless_web.routes.hotlists import HOTLIST_HEADER

_ROW_IDS = re.compile(r'<tr class="row" data-href="/issues/(\d+)"')


async def test_the_rows_are_the_pages_in_rank_order_with_notes_and_304_while_unchanged(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    tag = secrets.token_hex(3)
    alice = world.caller("alice")
    first = await create_issue(model, world, f"Rows {tag} first", by="alice")
    second = await create_issue(model, world, f"Rows {tag} second", by="alice")
    hidden = await create_issue(model, world, f"Rows {tag} secret", by="alice", component="Secret")
    hotlist = await call(
        model.create_hotlist, v1.CreateHotlistRequest(caller=alice, name=f"Rows {tag}")
    )
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=alice,
            hotlist_id=hotlist.id,
            issue_ids=[first.id, hidden.id, second.id],
            position=-1,
        ),
    )
    await sign_in(client, "bob")
    url = f"/hotlists/{hotlist.id}/rows"

    drawn = await client.get(url)

    assert drawn.status_code == 200, drawn.text
    assert _ROW_IDS.findall(drawn.text) == [str(first.id), str(second.id)]  # not Secret's
    assert "<html" not in drawn.text
    assert 'name="note"' not in drawn.text  # bob may not edit alice's hotlist
    etag = drawn.headers["etag"]
    assert drawn.headers["cache-control"] == "private, no-store"
    unchanged = await client.get(url, headers={"if-none-match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    await call(
        model.rank_hotlist_item,
        v1.RankHotlistItemRequest(
            caller=alice, hotlist_id=hotlist.id, issue_id=second.id, position=0
        ),
    )
    reranked = await client.get(url, headers={"if-none-match": etag})
    assert reranked.status_code == 200
    assert _ROW_IDS.findall(reranked.text) == [str(second.id), str(first.id)]
    await call(
        model.set_hotlist_item_note,
        v1.SetHotlistItemNoteRequest(
            caller=alice, hotlist_id=hotlist.id, issue_id=first.id, note="Blocks <the> launch"
        ),
    )
    noted = await client.get(url, headers={"if-none-match": reranked.headers["etag"]})
    assert noted.status_code == 200
    assert "Blocks &lt;the&gt; launch" in noted.text


async def test_the_rows_of_a_hotlist_the_viewer_may_not_see_are_a_404(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    hotlist = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(
            caller=world.caller("alice"), name=f"Private {secrets.token_hex(3)}", private=True
        ),
    )
    await sign_in(client, "bob")

    refused = await client.get(f"/hotlists/{hotlist.id}/rows")

    assert refused.status_code == 404
    assert str(hotlist.id) in refused.text
    assert "Traceback" not in refused.text


async def test_the_rows_carry_the_hotlist_as_its_forms_know_it_and_a_rename_is_no_304(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The page's script brings its forms' version up to date from this header.

    A rename changes no row, so with an ETag of the rows alone it was a 304
    and the page never heard the version or name it needs to judge whether
    its rename and delete forms may follow.
    """
    tag = secrets.token_hex(3)
    alice = world.caller("alice")
    issue = await create_issue(model, world, f"Header {tag}", by="alice")
    hotlist = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(caller=alice, name=f"Header {tag} é", description="<why>"),
    )
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=alice, hotlist_id=hotlist.id, issue_ids=[issue.id], position=-1
        ),
    )
    added = await call(model.get_hotlist, v1.GetHotlistRequest(caller=alice, hotlist_id=hotlist.id))
    assert added.modified_at is not None
    await sign_in(client, "bob")
    url = f"/hotlists/{hotlist.id}/rows"

    drawn = await client.get(url)

    assert drawn.status_code == 200, drawn.text
    assert json.loads(drawn.headers[HOTLIST_HEADER]) == {
        "version": hotlist.version + 1,
        "name": f"Header {tag} é",
        "description": "<why>",
        "item_count": 1,
        "modified_at": iso_instant(added.modified_at),  # the page's "last changed"
    }
    renamed = await call(
        model.update_hotlist,
        v1.UpdateHotlistRequest(
            caller=alice,
            hotlist=v1.Hotlist(id=hotlist.id, name=f"Renamed {tag}"),
            update_mask=FieldMask(paths=["name"]),
            expected_version=hotlist.version + 1,
        ),
    )
    after = await client.get(url, headers={"if-none-match": drawn.headers["etag"]})
    assert after.status_code == 200
    assert after.text == drawn.text  # the same rows
    assert json.loads(after.headers[HOTLIST_HEADER])["version"] == renamed.version
    assert json.loads(after.headers[HOTLIST_HEADER])["name"] == f"Renamed {tag}"
    assert renamed.modified_at is not None
    assert json.loads(after.headers[HOTLIST_HEADER])["modified_at"] == iso_instant(
        renamed.modified_at
    )
    unchanged = await client.get(url, headers={"if-none-match": after.headers["etag"]})
    assert unchanged.status_code == 304


@pytest.fixture
async def counted_client(world: World) -> AsyncIterator[tuple[AsyncTestClient[Litestar], int]]:
    """A web client on a Model replica of its own, whose metrics count the calls it got."""
    async with own_model_replica(world.stack, "model-rows") as (address, metrics_port):
        settings = WebSettings(
            model=address, auth=world.stack.auth, session_keys=(SESSION_KEY,), dev=True
        )
        async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as c:
            yield c, metrics_port


_READS = ("GetHotlist", "ListHotlistItems")


async def _reads(metrics_port: int) -> dict[str, int]:
    return {m: await grpc_calls(metrics_port, m) for m in _READS}


async def test_a_poll_while_nothing_changed_reads_the_hotlist_alone_and_changes_still_show(
    counted_client: tuple[AsyncTestClient[Litestar], int], world: World, model: v1.ModelStub
) -> None:
    """A 304 costs one GetHotlist; an item change is still drawn at the next poll.

    Every open hotlist page asks for its rows every 10 s; each 304 read the
    hotlist, all its items with their issues and people, and rendered them,
    only to compare a digest. The ``ETag`` is now the hotlist's version as
    this session sees it (item changes move it), so a poll reads the
    hotlist alone, and an issue's own change is drawn by the ask its event
    makes, which sends no ``If-None-Match``.
    """
    client, metrics_port = counted_client
    tag = secrets.token_hex(3)
    alice = world.caller("alice")
    first = await create_issue(model, world, f"Poll {tag} first", by="alice")
    second = await create_issue(model, world, f"Poll {tag} second", by="alice")
    hotlist = await call(
        model.create_hotlist, v1.CreateHotlistRequest(caller=alice, name=f"Poll {tag}")
    )
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=alice, hotlist_id=hotlist.id, issue_ids=[first.id, second.id], position=-1
        ),
    )
    await sign_in(client, "bob")
    url = f"/hotlists/{hotlist.id}/rows"
    drawn = await client.get(url)
    assert drawn.status_code == 200, drawn.text
    etag = drawn.headers["etag"]

    before = await _reads(metrics_port)
    unchanged = await client.get(url, headers={"if-none-match": etag})
    assert unchanged.status_code == 304
    assert await _reads(metrics_port) == {
        "GetHotlist": before["GetHotlist"] + 1,
        "ListHotlistItems": before["ListHotlistItems"],
    }

    # An issue of it changes: its event's ask (no If-None-Match) draws it.
    now = await call(model.get_issue, v1.GetIssueRequest(caller=alice, issue_id=first.id))
    changed = await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=first.id,
            expected_version=now.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(title=f"Poll {tag} retitled"),
                update_mask=FieldMask(paths=["title"]),
            ),
        ),
    )
    assert changed.issue is not None
    redrawn = await client.get(url)
    assert redrawn.status_code == 200
    assert f"Poll {tag} retitled" in redrawn.text
    assert redrawn.headers["etag"] == etag  # the hotlist did not move

    # A colleague's item change moves the version: the next poll draws it.
    await call(
        model.remove_hotlist_items,
        v1.RemoveHotlistItemsRequest(caller=alice, hotlist_id=hotlist.id, issue_ids=[second.id]),
    )
    polled = await client.get(url, headers={"if-none-match": etag})
    assert polled.status_code == 200
    assert _ROW_IDS.findall(polled.text) == [str(first.id)]
    assert polled.headers["etag"] != etag

    # Another session of bob's (its own forms' token) is not given these rows as current.
    current = polled.headers["etag"]
    client.cookies.clear()
    await sign_in(client, "bob")
    elsewhere = await client.get(url, headers={"if-none-match": current})
    assert elsewhere.status_code == 200
    assert elsewhere.headers["etag"] != current
