"""A hotlist page's rows as they are now (``/hotlists/N/rows``): what its script redraws with.

Real web app, Model and Authenticator. Re-ranks and notes change the
hotlist, not its issues, so no event announces them: the page asks for its
rows again, and the ``ETag`` makes that a 304 while nothing it shows changed.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
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
