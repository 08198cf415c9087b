"""Managing hotlists, saved searches and components: rename, delete, edit, archive."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, csrf_of, sign_in

from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_core.list_columns import DEFAULT_COLUMNS
from bugless_proto import v1
from bugless_web import result_columns


async def _hotlist(model: v1.ModelStub, world: World, hotlist_id: int) -> v1.Hotlist:
    return await call(
        model.get_hotlist, v1.GetHotlistRequest(caller=world.admin, hotlist_id=hotlist_id)
    )


async def test_hotlist_rename_by_its_owner_and_not_by_others(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    hotlist = await call(
        model.create_hotlist, v1.CreateHotlistRequest(caller=world.caller("bob"), name="Old name")
    )
    token = await sign_in(client, "carol")
    refused = await client.post(
        f"/hotlists/{hotlist.id}/edit",
        data={"_csrf": token, "name": "Carol's now", "version": str(hotlist.version)},
    )
    assert refused.status_code == 403
    assert "owner or editor" in refused.text
    token = await sign_in(client, "bob")
    page = await client.get(f"/hotlists/{hotlist.id}")
    assert f'action="/hotlists/{hotlist.id}/edit"' in page.text
    renamed = await client.post(
        f"/hotlists/{hotlist.id}/edit",
        data={
            "_csrf": token,
            "name": "New name",
            "description": "Now described",
            "version": str(hotlist.version),
        },
        follow_redirects=False,
    )
    assert renamed.status_code == 303
    stored = await _hotlist(model, world, hotlist.id)
    assert (stored.name, stored.description) == ("New name", "Now described")
    stale = await client.post(
        f"/hotlists/{hotlist.id}/edit",
        data={"_csrf": token, "name": "Lost update", "version": str(hotlist.version)},
    )
    assert stale.status_code == 409
    assert (await _hotlist(model, world, hotlist.id)).name == "New name"


async def test_a_rename_drawn_before_a_colleagues_re_rank_is_saved_and_one_before_a_rename_is_not(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Items changing move a hotlist's version (ec84b392); they do not make a rename stale.

    The page draws its rows again in place (a colleague's re-rank shows
    within 10 s) while its rename form keeps the version it was drawn at:
    refusing that form as stale refused every rename of a hotlist under
    triage, though nothing it overwrites had changed.
    """
    bob = world.caller("bob")
    hotlist = await call(model.create_hotlist, v1.CreateHotlistRequest(caller=bob, name="Triage"))
    first = await create_issue(model, world, "Triaged first")
    second = await create_issue(model, world, "Triaged second")
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=bob, hotlist_id=hotlist.id, issue_ids=[first.id, second.id], position=-1
        ),
    )
    token = await sign_in(client, "bob")
    page = await client.get(f"/hotlists/{hotlist.id}")
    drawn = {
        field: re.search(rf'name="{field}" value="([^"]*)"', page.text).group(1)  # type: ignore[union-attr]
        for field in ("version", "shown_name", "shown_description")
    }
    assert (drawn["shown_name"], drawn["shown_description"]) == ("Triage", "")
    await call(
        model.rank_hotlist_item,
        v1.RankHotlistItemRequest(
            caller=bob, hotlist_id=hotlist.id, issue_id=second.id, position=0
        ),
    )
    await call(
        model.set_hotlist_item_note,
        v1.SetHotlistItemNoteRequest(
            caller=bob, hotlist_id=hotlist.id, issue_id=first.id, note="after the release"
        ),
    )
    assert (await _hotlist(model, world, hotlist.id)).version > int(drawn["version"])
    renamed = await client.post(
        f"/hotlists/{hotlist.id}/edit",
        data={"_csrf": token, **drawn, "name": "Release triage", "description": "Blockers"},
        follow_redirects=False,
    )
    assert renamed.status_code == 303
    stored = await _hotlist(model, world, hotlist.id)
    assert (stored.name, stored.description) == ("Release triage", "Blockers")
    # A form drawn before that rename would overwrite it: refused as ever.
    stale = await client.post(
        f"/hotlists/{hotlist.id}/edit",
        data={"_csrf": token, **drawn, "name": "Lost update"},
    )
    assert stale.status_code == 409
    assert (await _hotlist(model, world, hotlist.id)).name == "Release triage"


async def test_hotlist_delete_needs_the_owner_and_a_confirmation_and_leaves_history(
    client: AsyncTestClient[Any],
    world: World,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issue = await create_issue(model, world, "On a doomed hotlist")
    hotlist = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(
            caller=world.caller("bob"), name="Doomed", editors=[world.users["carol"]]
        ),
    )
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=world.caller("bob"), hotlist_id=hotlist.id, issue_ids=[issue.id], position=-1
        ),
    )
    hotlist = await _hotlist(model, world, hotlist.id)
    form = {"version": str(hotlist.version), "confirm": "yes"}
    token = await sign_in(client, "carol")  # an editor, not the owner
    page = await client.get(f"/hotlists/{hotlist.id}")
    assert "Delete this hotlist" not in page.text
    refused = await client.post(f"/hotlists/{hotlist.id}/delete", data={"_csrf": token, **form})
    assert refused.status_code == 403
    token = await sign_in(client, "bob")
    unconfirmed = await client.post(
        f"/hotlists/{hotlist.id}/delete", data={"_csrf": token, "version": form["version"]}
    )
    assert unconfirmed.status_code == 400
    assert "nothing was deleted" in unconfirmed.text
    await _hotlist(model, world, hotlist.id)  # still there
    with caplog.at_level(logging.INFO, logger="bugless.web.audit"):
        deleted = await client.post(
            f"/hotlists/{hotlist.id}/delete", data={"_csrf": token, **form}, follow_redirects=False
        )
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/hotlists"
    with pytest.raises(NotFound):
        await _hotlist(model, world, hotlist.id)
    assert any(
        r.name == "bugless.web.audit" and f"deleted hotlist {hotlist.id}" in r.getMessage()
        for r in caplog.records
    )
    history = await call(
        model.list_history, v1.ListHistoryRequest(caller=world.admin, issue_id=issue.id)
    )
    last = history.entries[-1]
    assert [(c.field, list(c.removed)) for c in last.changes] == [
        ("hotlist_ids", [str(hotlist.id)])
    ]


async def test_saved_search_edit_checks_the_query_and_the_owner(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    saved = await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller("bob"),
            name="Mine",
            query="is:open",
            readers=[v1.Principal(user=world.users["carol"])],
        ),
    )
    token = await sign_in(client, "bob")
    listing = await client.get("/searches")
    assert f'href="/searches/{saved.id}/edit"' in listing.text
    form_page = await client.get(f"/searches/{saved.id}/edit")
    assert 'value="is:open"' in form_page.text
    bad = await client.post(
        f"/searches/{saved.id}/edit",
        data={"_csrf": token, "version": str(saved.version), "name": "Mine", "query": "p<(("},
    )
    assert bad.status_code == 400
    query_field = re.search(r'<input name="query"[^>]*>', bad.text)
    assert query_field
    assert 'aria-invalid="true"' in query_field.group(0)
    edited = await client.post(
        f"/searches/{saved.id}/edit",
        data={
            "_csrf": token,
            "version": str(saved.version),
            "name": "My P0s",
            "query": "is:open p:p0",
            "share_with_groups": "oncall",
        },
        follow_redirects=False,
    )
    assert edited.status_code == 303
    stored = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("bob"), owned_only=True),
    )
    mine = next(s for s in stored.saved_searches if s.id == saved.id)
    assert (mine.name, mine.query) == ("My P0s", "is:open p:p0")
    assert [p.group for p in mine.readers] == ["oncall"]
    # Carol can read it no more (readers are now the group) and could never edit it.
    token = await sign_in(client, "carol")
    assert (await client.get(f"/searches/{saved.id}/edit")).status_code == 404
    refused = await client.post(
        f"/searches/{saved.id}/edit",
        data={"_csrf": token, "version": str(mine.version), "name": "Hers", "query": "is:open"},
    )
    assert refused.status_code in (403, 404)


async def test_saved_search_edit_keeps_the_people_it_is_shared_with(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """Readers named one by one (as the CLI and the API share, and now the save form) stay.

    The form had groups only: renaming a search shared with carol sent the
    groups as every reader, and carol lost it without a word.
    """
    token = await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "is:open"})
    assert 'name="share_with_people"' in page.text.split('class="save-search"', 1)[1]
    unknown = await client.post(
        "/searches",
        data={"_csrf": token, "name": "For carol", "query": "is:open", "share_with_people": "zed"},
    )
    assert unknown.status_code == 400
    assert "no user named &#39;zed&#39;" in unknown.text
    made = await client.post(
        "/searches",
        data={
            "_csrf": token,
            "name": "For carol",
            "query": "is:open",
            "share_with_groups": "oncall",
            "share_with_people": "carol",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    found = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("bob"), owned_only=True),
    )
    saved = next(s for s in found.saved_searches if s.name == "For carol")
    assert {(p.group or "", p.user or "") for p in saved.readers} == {
        ("oncall", ""),
        ("", world.users["carol"]),
    }
    listing = await client.get("/searches")
    rows = re.findall(r'<tr class="row".*?</tr>', listing.text, re.S)
    ours = next(r for r in rows if f'href="/searches/{saved.id}/edit"' in r)
    row = re.search(r'<td class="saved-readers">(.*?)</td>', ours, re.S)
    assert row
    assert "oncall" in row.group(1)
    assert 'href="/users/carol"' in row.group(1)
    form_page = await client.get(f"/searches/{saved.id}/edit")
    people = re.search(r'<input name="share_with_people"[^>]*>', form_page.text)
    assert people
    assert 'value="carol"' in people.group(0)
    unknown = await client.post(
        f"/searches/{saved.id}/edit",
        data={
            "_csrf": token,
            "version": str(saved.version),
            "name": "For carol",
            "query": "is:open",
            "share_with_groups": "oncall",
            "share_with_people": "carol nosuchperson",
        },
    )
    assert unknown.status_code == 400
    field = re.search(r'<input name="share_with_people"[^>]*>', unknown.text)
    assert field
    assert 'aria-invalid="true"' in field.group(0)
    assert "no user named &#39;nosuchperson&#39;" in unknown.text
    renamed = await client.post(
        f"/searches/{saved.id}/edit",
        data={
            "_csrf": token,
            "version": str(saved.version),
            "name": "For carol (renamed)",
            "query": "is:open",
            "share_with_groups": "oncall",
            "share_with_people": "carol",
        },
        follow_redirects=False,
    )
    assert renamed.status_code == 303, renamed.text
    stored = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("carol")),
    )
    hers = next(s for s in stored.saved_searches if s.id == saved.id)
    assert hers.name == "For carol (renamed)"
    assert {(p.group or "", p.user or "") for p in hers.readers} == {
        ("oncall", ""),
        ("", world.users["carol"]),
    }


async def test_saved_search_columns_are_saved_shown_and_checked(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    token = await sign_in(client, "bob")
    saved_response = await client.post(
        "/searches",
        data={
            "_csrf": token,
            "name": "With columns",
            "query": "is:open",
            "columns": "id,title,severity",
        },
        follow_redirects=False,
    )
    assert saved_response.status_code == 303
    stored = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("bob"), owned_only=True),
    )
    saved = next(s for s in stored.saved_searches if s.name == "With columns")
    assert saved.columns == ["id", "title", "severity"]
    listing = await client.get("/searches")
    assert "/search?q=is%3Aopen&amp;columns=id%2Ctitle%2Cseverity" in listing.text
    bad = await client.post(
        f"/searches/{saved.id}/edit",
        data={
            "_csrf": token,
            "version": str(saved.version),
            "name": "With columns",
            "query": "is:open",
            "columns": ["title", "titel"],
        },
    )
    assert bad.status_code == 400
    fieldset = re.search(r'<fieldset class="saved-columns"[^>]*>', bad.text)
    assert fieldset
    assert 'aria-invalid="true"' in fieldset.group(0)
    assert "&#39;titel&#39; is not a list column; use one of id, priority" in bad.text
    unchanged = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("bob"), owned_only=True),
    )
    assert next(s for s in unchanged.saved_searches if s.id == saved.id).version == saved.version


async def test_a_search_saved_with_the_default_columns_follows_the_defaults(
    client: AsyncTestClient[Any],
    world: World,
    model: v1.ModelStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defaults shown when saving are stored as none, and shown as the defaults of the day.

    Before, "Save this search" on a list in the default columns stored them
    one by one, so a release changing the defaults never reached the search.
    A search that chose other columns keeps them.
    """
    token = await sign_in(client, "bob")
    tag = secrets.token_hex(3)
    for name, columns in (
        ("Defaults", ",".join(DEFAULT_COLUMNS)),
        ("Plain", ""),
        ("Chosen", "id,title"),
    ):
        saved_response = await client.post(
            "/searches",
            data={
                "_csrf": token,
                "name": f"{name} {tag}",
                "query": f"is:open {name}{tag}",
                "columns": columns,
            },
            follow_redirects=False,
        )
        assert saved_response.status_code == 303
    stored = await _saved_by_name(model, world)
    assert stored[f"Defaults {tag}"].columns == []
    assert stored[f"Plain {tag}"].columns == []
    assert stored[f"Chosen {tag}"].columns == ["id", "title"]
    # Its edit form ticks today's defaults; saved with them ticked, it still stores none.
    defaults = stored[f"Defaults {tag}"]
    form_page = await client.get(f"/searches/{defaults.id}/edit")
    ticked = re.findall(r'name="columns" value="([^"]+)" checked', form_page.text)
    assert tuple(ticked) == DEFAULT_COLUMNS
    edited = await client.post(
        f"/searches/{defaults.id}/edit",
        data={
            "_csrf": token,
            "version": str(defaults.version),
            "name": defaults.name,
            "query": f"is:open p:p0 Defaults{tag}",
            "columns": list(DEFAULT_COLUMNS),
        },
        follow_redirects=False,
    )
    assert edited.status_code == 303
    again = (await _saved_by_name(model, world))[defaults.name]
    assert (again.query, again.columns) == (f"is:open p:p0 Defaults{tag}", [])
    # A release that changes the default columns reaches it, not the chosen one.
    changed = ("id", "title", "status")
    monkeypatch.setattr(result_columns, "DEFAULT_COLUMNS", changed)
    listing = (await client.get("/searches")).text
    hrefs = re.findall(r'<a href="/search\?q=is%3Aopen[^"]*' + tag + '[^"]*">', listing)
    assert sorted(hrefs) == [
        f'<a href="/search?q=is%3Aopen+Chosen{tag}&amp;columns=id%2Ctitle">',
        f'<a href="/search?q=is%3Aopen+Plain{tag}&amp;columns=id%2Ctitle%2Cstatus">',
        f'<a href="/search?q=is%3Aopen+p%3Ap0+Defaults{tag}&amp;columns=id%2Ctitle%2Cstatus">',
    ]
    opened = await client.get(
        "/search", params={"q": f"is:open p:p0 Defaults{tag}", "columns": ",".join(changed)}
    )
    assert 'class="col-status' in opened.text
    assert 'class="col-priority' not in opened.text
    form_page = await client.get(f"/searches/{defaults.id}/edit")
    ticked = re.findall(r'name="columns" value="([^"]+)" checked', form_page.text)
    assert tuple(ticked) == changed


async def _saved_by_name(model: v1.ModelStub, world: World) -> dict[str, v1.SavedSearch]:
    stored = await call(
        model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=world.caller("bob"), owned_only=True),
    )
    return {s.name: s for s in stored.saved_searches}


async def test_component_archive_and_unarchive_by_its_admins_only(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = await call(
        model.create_component,
        v1.CreateComponentRequest(caller=world.admin, name="Retiring", description="old stuff"),
    )
    token = await sign_in(client, "bob")  # an editor there (no ACL), not an admin
    page = await client.get(f"/components/{component.id}")
    assert "/archive" not in page.text
    refused = await client.post(
        f"/components/{component.id}/archive",
        data={"_csrf": token, "archived": "yes", "version": str(component.version)},
    )
    assert refused.status_code == 403
    token = await sign_in(client, "alice")
    page = await client.get(f"/components/{component.id}")
    assert f'action="/components/{component.id}/archive"' in page.text
    archived = await client.post(
        f"/components/{component.id}/archive",
        data={"_csrf": token, "archived": "yes", "version": str(component.version)},
        follow_redirects=False,
    )
    assert archived.status_code == 303
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component.id),
    )
    assert stored.archived
    # Out of the create form's picker, still in the tree (marked) so it can be unarchived.
    form_page = await client.get("/issues/new")
    assert f'<option value="{component.id}">' not in form_page.text
    tree = await client.get("/components")
    assert re.search(
        rf'href="/components/{component.id}">Retiring</a>\s*<span class="pill">archived', tree.text
    )
    page = await client.get(f"/components/{component.id}")
    assert csrf_of(page.text)
    assert "Unarchive Retiring" in page.text
    restored = await client.post(
        f"/components/{component.id}/archive",
        data={"_csrf": token, "archived": "no", "version": str(stored.version)},
        follow_redirects=False,
    )
    assert restored.status_code == 303
    again = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component.id),
    )
    assert not again.archived
    assert again.version == stored.version + 1


async def test_the_issue_forms_picker_keeps_only_the_issues_own_archived_component(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    # The picker is made once per cached component tree (Backends.from_components):
    # archiving through this replica drops the tree, and with it every picker made from it.
    component = await call(
        model.create_component, v1.CreateComponentRequest(caller=world.admin, name="Sunset")
    )
    inside = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.admin,
            fields=v1.IssueFields(title="In the sunset", component_id=component.id),
            idempotency_key="sunset-1",
        ),
    )
    elsewhere = await create_issue(model, world, "Somewhere else")
    token = await sign_in(client, "alice")
    option = f'<option value="{component.id}">Sunset</option>'
    assert option in (await client.get(f"/issues/{elsewhere.id}")).text  # made, then kept
    archived = await client.post(
        f"/components/{component.id}/archive",
        data={"_csrf": token, "archived": "yes", "version": str(component.version)},
        follow_redirects=False,
    )
    assert archived.status_code == 303
    after = (await client.get(f"/issues/{elsewhere.id}")).text
    assert f'<option value="{component.id}"' not in after
    own = (await client.get(f"/issues/{inside.id}")).text
    assert f'<option value="{component.id}" selected>Sunset</option>' in own
