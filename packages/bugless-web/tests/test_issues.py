from __future__ import annotations

import asyncio
import html
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, issue_form_of, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


async def test_search_shows_count_columns_and_people(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(
        model, world, "Search finds disk alarms", assignee=world.users["carol"]
    )
    await sign_in(client, "carol")
    page = await client.get("/search", params={"q": "is:open assignee:me disk"})
    assert page.status_code == 200
    assert f'href="/issues/{issue.id}"' in page.text
    assert "Carol Coder" in page.text
    assert re.search(r'class="count">\d+ issues?<', page.text)
    home = await client.get("/")
    assert f'href="/issues/{issue.id}"' in home.text


async def test_query_syntax_error_is_a_400_with_the_position(client: AsyncTestClient[Any]) -> None:
    await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "status: foo("})
    assert page.status_code == 400
    assert "at column 8" in page.text
    assert "status: foo(\n       ^" in page.text
    assert "<mark>" in page.text
    assert "<h1>That query does not parse</h1>" in page.text


async def test_unknown_username_in_query_is_reported_with_position(
    client: AsyncTestClient[Any],
) -> None:
    await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "assignee:nobody_here"})
    assert page.status_code == 400
    assert "nobody_here" in page.text
    # Good syntax naming nobody: not "does not parse" (the CSV export says the same).
    assert "<h1>That query cannot be run</h1>" in page.text
    assert "does not parse" not in page.text
    export = await client.get("/search.csv", params={"q": "assignee:nobody_here"})
    assert export.status_code == 400
    assert "That query cannot be run" in export.text


async def test_a_component_is_searched_by_its_name_or_path_in_any_case(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """``component:Name`` (``+``: and below), as the issue page shows its component's path."""
    word = f"byname{secrets.token_hex(3)}"
    top = await create_issue(model, world, f"{word} top")
    disk = await create_issue(model, world, f"{word} disk", component="Platform>Storage")
    await sign_in(client, "bob")
    for query, expected in (
        (f"{word} component:platform", [top.id]),
        (f"{word} component:PLATFORM+", [disk.id, top.id]),
        (f'{word} component:"Platform > Storage"', [disk.id]),
    ):
        page = await client.get("/search", params={"q": query})
        assert page.status_code == 200, page.text
        shown = [int(i) for i in re.findall(r'class="open-link">(\d+)<', page.text)]
        assert shown == expected, query


async def test_what_the_model_refuses_in_a_query_is_shown_at_its_term_with_the_query_kept(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """An unknown custom field, a value its type refuses, a component or hotlist no one may name.

    The search page, not a bare 400.
    """
    name = f"Build {secrets.token_hex(3)}"
    build = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=world.admin,
            component_id=world.components["Platform"],
            name=name,
            type=v1.CustomFieldType.INTEGER,
        ),
    )
    await sign_in(client, "bob")
    for query, fault, says in (
        ('is:open "Fuond In":4.2', '"Fuond In":4.2', "there is no custom field named 'Fuond In'"),
        (f'is:open "{name}">abc', f'"{name}">abc', "takes a whole number, not 'abc'"),
        ("is:open sort:customfield999999", "customfield999999", "no custom field 999999"),
        # No such component or hotlist, or none bob may see: the id is marked.
        ("is:open c:999999", "999999", "there is no component 999999 that you may view"),
        ("is:open (p:p1 OR -h:999999)", "999999", "there is no hotlist 999999 that you may view"),
        # A component by a name none has: the name is marked, the close ones offered.
        (
            "is:open component:Platfrom+",
            "Platfrom",
            "there is no component named 'Platfrom', nor one below it, that you may view; "
            "did you mean 'Platform'",
        ),
    ):
        page = await client.get("/search", params={"q": query})
        assert page.status_code == 400, query
        assert "<h1>That query cannot be run</h1>" in page.text
        assert says in html.unescape(page.text), page.text
        assert "query.filter" not in page.text
        # The search box still holds the query, and the term is marked in it.
        assert re.search(r'<input[^>]*name="q"[^>]*value="[^"]*is:open', page.text), page.text
        assert f"at column {query.index(fault) + 1}:" in page.text
        assert re.search(r"<mark>[^<]*</mark>", page.text), page.text
        marked = re.findall(r"<mark>([^<]*)</mark>", page.text)[0]
        assert html.unescape(marked) == fault
    assert build.id


async def test_sort_link_toggles_direction_and_paging_uses_tokens(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    for n in range(3):
        await create_issue(model, world, f"Paging sample {n} zebra")
    await sign_in(client, "bob")
    page = await client.get("/search", params={"q": "zebra", "page_size": "25"})
    assert "sort%3Apriority" in page.text or "sort:priority" in page.text
    sorted_page = await client.get("/search", params={"q": "zebra sort:priority"})
    assert "sort%3A-priority" in sorted_page.text
    assert 'aria-sort="ascending"' in sorted_page.text
    # keyset pagination: page size 25 is the smallest offered; make more issues to page
    for n in range(27):
        await create_issue(model, world, f"Paging bulk {n} yak")
    first = await client.get("/search", params={"q": "yak", "page_size": "25"})
    token = re.search(r'page_token=([^"&]+)"', first.text)
    assert token, "a next-page link"
    second = await client.get(
        "/search?q=yak&page_size=25&page_token=" + token.group(1).replace("&amp;", "&")
    )
    assert second.status_code == 200
    ids_first = set(re.findall(r'class="open-link">(\d+)<', first.text))
    ids_second = set(re.findall(r'class="open-link">(\d+)<', second.text))
    assert len(ids_first) == 25
    assert len(ids_second) == 0 or ids_first.isdisjoint(ids_second)
    assert len(ids_first | ids_second) == 25 + len(ids_second)


async def test_issue_page_shows_fields_relations_hotlists_and_timeline(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    parent = await create_issue(model, world, "Parent epic")
    blocker = await create_issue(model, world, "Blocker bug")
    hotlist = await call(
        model.create_hotlist, v1.CreateHotlistRequest(caller=world.caller("bob"), name="Launch")
    )
    issue = await create_issue(
        model,
        world,
        "Child task",
        description="First **bold** words",
        parent_id=parent.id,
        assignee=world.users["carol"],
    )
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("bob"),
            issue_id=issue.id,
            expected_version=1,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(priority=v1.Priority.P0),
                update_mask=FieldMask(paths=["priority"]),
                blocked_by_add=[blocker.id],
                hotlist_add=[hotlist.id],
                cc_add=[world.users["alice"]],
            ),
            comment="Escalating",
        ),
    )
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    html = page.text
    assert "Child task" in html
    assert f'href="/issues/{parent.id}"' in html
    assert "Parent epic" in html
    assert f'href="/issues/{blocker.id}"' in html
    assert "Blocker bug" in html
    assert f'href="/hotlists/{hotlist.id}"' in html
    assert "Launch" in html
    assert "<strong>bold</strong>" in html
    assert "Escalating" in html
    assert "Alice Admin" in html
    assert "Carol Coder" in html
    assert "Bob Builder" in html
    assert 'class="old"><span class="value">P2</span>' in html
    assert "Platform" in html


async def test_the_timeline_names_no_hotlist_its_viewer_may_not_see(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """carol's private hotlist is carol's: bob's timeline shows neither it nor its entry."""
    issue = await create_issue(model, world, "Quietly tracked")
    secret = await call(
        model.create_hotlist,
        v1.CreateHotlistRequest(caller=world.caller("carol"), name="Carol secret", private=True),
    )
    await call(
        model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=world.caller("carol"), hotlist_id=secret.id, issue_ids=[issue.id]
        ),
    )
    await sign_in(client, "carol")
    own = (await client.get(f"/issues/{issue.id}")).text
    assert 'id="entry-2"' in own
    assert f'href="/hotlists/{secret.id}"' in own
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert 'id="entry-2"' not in page.text
    assert f"hotlist {secret.id}" not in page.text
    assert f"/hotlists/{secret.id}" not in page.text
    assert "Carol secret" not in page.text


async def test_edit_fields_and_comment_is_one_history_entry(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Edit me")
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    form = issue_form_of(page.text)
    form.update(
        {
            "status": "ACCEPTED",
            "priority": "P1",
            "assignee": "carol",
            "cc": "alice",
            "comment": "Taking it",
        }
    )
    response = await client.post(f"/issues/{issue.id}", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/issues/{issue.id}#entry-2"
    history = await call(
        model.list_history,
        v1.ListHistoryRequest(caller=world.admin, issue_id=issue.id),
    )
    assert len(history.entries) == 2
    entry = history.entries[1]
    assert entry.comment == "Taking it"
    assert {c.field for c in entry.changes} == {"status", "priority", "assignee", "cc"}
    after = await client.get(f"/issues/{issue.id}")
    assert "Taking it" in after.text


async def test_setting_duplicate_of_in_the_form_closes_the_issue_as_duplicate(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    original = await create_issue(model, world, "The first report")
    issue = await create_issue(model, world, "The same, again")
    await sign_in(client, "bob")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    form["duplicate_of_id"] = str(original.id)
    marked = await client.post(f"/issues/{issue.id}", data=form, follow_redirects=False)
    assert marked.status_code == 303, marked.text
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert (now.status, now.duplicate_of_id) == (v1.Status.DUPLICATE, original.id)
    page = (await client.get(f"/issues/{issue.id}")).text
    assert '<option value="DUPLICATE" selected' in page

    # Reopening it in the form ends the link.
    form = issue_form_of(page)
    form["status"] = "NEW"
    reopened = await client.post(f"/issues/{issue.id}", data=form, follow_redirects=False)
    assert reopened.status_code == 303, reopened.text
    now = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert (now.status, now.duplicate_of_id) == (v1.Status.NEW, 0)


async def test_comment_only_and_empty_submission(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Comment me")
    await sign_in(client, "bob")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    empty = await client.post(f"/issues/{issue.id}", data=form)
    assert "Nothing to save" in empty.text
    form["comment"] = "Just a note"
    await client.post(f"/issues/{issue.id}", data=form)
    current = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert current.version == 2
    assert current.comment_count == 1


async def test_stale_edit_shows_changes_meanwhile_and_can_be_reapplied(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Contested")
    await sign_in(client, "bob")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("carol"),
            issue_id=issue.id,
            expected_version=1,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(title="Contested (renamed by Carol)"),
                update_mask=FieldMask(paths=["title"]),
            ),
            comment="Carol was here",
        ),
    )
    form.update({"priority": "P0", "comment": "Bob's take"})
    conflict = await client.post(f"/issues/{issue.id}", data=form)
    assert conflict.status_code == 409
    assert "changed this issue while you were editing" in conflict.text
    assert "Carol was here" in conflict.text
    assert "Bob&#39;s take" in conflict.text  # the user's comment is kept in the form
    current = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert current.version == 2
    assert current.priority == v1.Priority.P2  # nothing overwritten
    reapply = issue_form_of(conflict.text)
    assert reapply["version"] == "2"
    assert reapply["priority"] == "P0"  # Bob's change kept
    assert reapply["title"] == "Contested (renamed by Carol)"  # Carol's kept too
    reapply["comment"] = "Bob's take"
    done = await client.post(f"/issues/{issue.id}", data=reapply, follow_redirects=False)
    assert done.status_code == 303
    final = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert final.version == 3
    assert final.priority == v1.Priority.P0
    assert final.title == "Contested (renamed by Carol)"


async def test_unknown_assignee_is_a_400_naming_it(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Assign me")
    await sign_in(client, "bob")
    form = issue_form_of((await client.get(f"/issues/{issue.id}")).text)
    form["assignee"] = "ghost"
    response = await client.post(f"/issues/{issue.id}", data=form)
    assert response.status_code == 400
    assert "no user named &#39;ghost&#39;" in response.text


async def test_issue_in_a_component_i_cannot_see_is_404(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    secret = await create_issue(model, world, "Top secret", by="alice", component="Secret")
    await sign_in(client, "bob")
    response = await client.get(f"/issues/{secret.id}")
    assert response.status_code == 404
    assert f"issue {secret.id} not found" in response.text
    missing = await client.get("/issues/999999999")
    assert missing.status_code == 404


async def test_a_viewer_gets_no_edit_form_but_the_reason_and_keeps_star_and_mute(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """The Model refuses a viewer's comment, change or upload: the page offers none of them."""
    name = f"Read-only {secrets.token_hex(3)}"
    created = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            name=name,
            acl=[
                v1.AclEntry(principal=v1.Principal(user=world.users["carol"]), role=v1.Role.VIEWER),
                v1.AclEntry(principal=v1.Principal(user=world.users["bob"]), role=v1.Role.EDITOR),
            ],
        ),
    )
    issue = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.caller("bob"),
            fields=v1.IssueFields(title="Readable only", component_id=created.id),
            idempotency_key=secrets.token_hex(8),
        ),
    )
    await sign_in(client, "carol")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert 'id="issue-form"' not in page.text
    assert 'class="attach-form"' not in page.text
    assert "needs the editor role on" in page.text
    assert f'<a href="/components/{created.id}">{name}</a>; its admins can give it to you.' in (
        page.text
    )
    assert f'action="/issues/{issue.id}/star"' in page.text
    assert f'action="/issues/{issue.id}/mute"' in page.text
    # Filing there needs the editor role too: no "New issue" link, not in the picker.
    new_here = f'href="/issues/new?component={created.id}"'
    assert new_here not in (await client.get(f"/components/{created.id}")).text
    assert new_here not in (await client.get("/components")).text
    assert f'<option value="{created.id}"' not in (await client.get("/issues/new")).text
    # A link to file there says why the form has no component chosen.
    linked = await client.get(f"/issues/new?component={created.id}")
    assert linked.status_code == 200
    assert (
        f'<span class="field-error" id="component-picker-error">filing issues in {name} '
        "needs the editor role on it (you can read it; its admins can give it): choose "
        "another component</span>"
    ) in linked.text
    unseen = await client.get("/issues/new?component=999999999")
    assert "there is no component 999999999 you can see" in unseen.text

    await sign_in(client, "bob")
    editable = await client.get(f"/issues/{issue.id}")
    assert 'id="issue-form"' in editable.text
    assert 'class="attach-form"' in editable.text
    assert "needs the editor role on" not in editable.text
    assert new_here in (await client.get(f"/components/{created.id}")).text
    assert new_here in (await client.get("/components")).text
    assert f'<option value="{created.id}"' in (await client.get("/issues/new")).text
    chosen = (await client.get(f"/issues/new?component={created.id}")).text
    assert f'<option value="{created.id}" selected' in chosen
    assert "component-picker-error" not in chosen


async def test_create_issue_from_component_template(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    token = await sign_in(client, "bob")
    storage = world.components["Platform>Storage"]
    form_page = await client.get(f"/issues/new?component={storage}")
    assert "[storage] " in form_page.text
    assert "## Steps to reproduce" in form_page.text
    assert '<option value="P1" selected>' in form_page.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form_page.text)
    assert key
    data = {
        "_csrf": token,
        "idempotency_key": key.group(1),
        "component_id": str(storage),
        "title": "[storage] Disk full on db-3",
        "priority": "P1",
        "severity": "S2",
        "type": "BUG",
        "assignee": "carol",
        "cc": "alice",
        "description": "It filled up.",
    }
    first = await client.post("/issues/new", data=data, follow_redirects=False)
    assert first.status_code == 303
    again = await client.post("/issues/new", data=data, follow_redirects=False)
    assert again.headers["location"] == first.headers["location"]  # idempotent
    issue_id = int(first.headers["location"].rsplit("/", 1)[1])
    issue = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue_id))
    assert issue.assignee == world.users["carol"]
    assert issue.status == v1.Status.ASSIGNED
    assert issue.component_id == storage


async def test_create_issue_requires_title_and_component(client: AsyncTestClient[Any]) -> None:
    token = await sign_in(client, "bob")
    response = await client.post("/issues/new", data={"_csrf": token, "title": " "})
    assert response.status_code == 400
    assert "an issue needs a title" in response.text
    assert "choose the component" in response.text


async def test_an_imported_issue_shows_its_source_and_marks_imported_entries(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    # An import job's user: the test policy's `importers` hold admin and import_issues.
    created = await asyncio.to_thread(
        world.stack.add_user, f"importer-{secrets.token_hex(3)}", groups=["importers"]
    )
    importer = v1.Caller(user_id=created["user_id"], admin=True, import_issues=True)
    external_id = "github:org/webrepo#56"
    # Only the import job's identity (--import-identities) may call ImportIssue.
    channel = world.stack.client_address("model", "import").channel()
    try:
        response = await call(
            world.stack.acting_model(v1.ModelStub(channel)).import_issue,
            v1.ImportIssueRequest(
                caller=importer,
                external_id=external_id,
                fields=v1.IssueFields(
                    title="Imported crash", component_id=next(iter(world.components.values()))
                ),
                reporter=world.users["carol"],
                description="From the old tracker",
                created_at=datetime(2018, 5, 6, 7, 8, tzinfo=UTC),
                history=[
                    v1.ImportedEntry(
                        author=world.users["bob"],
                        created_at=datetime(2018, 5, 7, tzinfo=UTC),
                        comment="Seen it too",
                    )
                ],
            ),
        )
    finally:
        channel.close()
    assert response.issue is not None
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{response.issue.id}")
    assert page.status_code == 200
    assert f"<code>{external_id}</code>" in page.text
    assert page.text.count(f"imported from {external_id}") == 2
    found = await client.get("/search", params={"q": f'externalid:"{external_id}"'})
    assert f'href="/issues/{response.issue.id}"' in found.text


async def test_an_imported_relation_change_shows_as_a_change_on_both_issues(
    client: AsyncTestClient[Any], world: World
) -> None:
    """An imported history's blocking change reads like one made here, on both issues."""
    created = await asyncio.to_thread(
        world.stack.add_user, f"importer-{secrets.token_hex(3)}", groups=["importers"]
    )
    importer = v1.Caller(user_id=created["user_id"], admin=True, import_issues=True)
    source = f"trac:web{secrets.token_hex(3)}"
    component = next(iter(world.components.values()))

    def request(number: int, *history: v1.ImportedEntry) -> v1.ImportIssueRequest:
        return v1.ImportIssueRequest(
            caller=importer,
            external_id=f"{source}#{number}",
            fields=v1.IssueFields(title=f"Ticket {number}", component_id=component),
            reporter=world.users["carol"],
            created_at=datetime(2018, 5, 6, tzinfo=UTC),
            history=list(history),
        )

    channel = world.stack.client_address("model", "import").channel()
    try:
        model = world.stack.acting_model(v1.ModelStub(channel))
        blocker = await call(model.import_issue, request(1))
        blocked = await call(
            model.import_issue,
            request(
                2,
                v1.ImportedEntry(
                    author=world.users["bob"],
                    created_at=datetime(2018, 5, 7, tzinfo=UTC),
                    blocked_by_add=[f"{source}#1"],
                ),
            ),
        )
    finally:
        channel.close()
    assert blocker.issue is not None
    assert blocked.issue is not None
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{blocked.issue.id}")
    link = f'<span class="added">+ <a href="/issues/{blocker.issue.id}" class="issue-ref">'
    assert link in page.text
    assert page.text.count(f"imported from {source}#2") == 2
    other = await client.get(f"/issues/{blocker.issue.id}")
    assert f'changed it through <a href="/issues/{blocked.issue.id}">' in other.text
    assert f'<span class="added">+ <a href="/issues/{blocked.issue.id}" class="issue-ref">' in (
        other.text
    )
    assert f"imported from {source}#2" in other.text
