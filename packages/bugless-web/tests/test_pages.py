from __future__ import annotations

import html
import re
import secrets
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import PASSWORD, World, create_issue, csrf_of, sign_in
from xss_corpus import PAYLOADS, dangerous_markup

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web.frontend import CSRF_IN_STREAM
from bugless_web.routes.api_access import CSRF_EXEMPT
from bugless_web.routes.unsubscribe import PATH_PREFIX as UNSUBSCRIBE


async def test_component_tree_page_and_acl_only_for_admins(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    await create_issue(model, world, "Storage leak", component="Platform>Storage")
    await sign_in(client, "bob")
    tree = await client.get("/components")
    assert "Storage" in tree.text
    assert "Platform" in tree.text
    assert "Secret" not in tree.text
    page = await client.get(f"/components/{world.components['Platform>Storage']}")
    assert page.status_code == 200
    assert "Storage leak" in page.text
    assert "Access control" not in page.text  # bob is an editor (open component), not admin
    hidden = await client.get(f"/components/{world.components['Secret']}")
    assert hidden.status_code == 404


async def test_admin_sees_acl(client: AsyncTestClient[Any], world: World) -> None:
    await sign_in(client, "alice")
    page = await client.get(f"/components/{world.components['Secret']}")
    assert page.status_code == 200
    assert "Access control" in page.text
    assert "group <code>admins</code>" in page.text


async def test_hotlist_create_add_rerank_note_remove(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    first = await create_issue(model, world, "Rank one")
    second = await create_issue(model, world, "Rank two")
    third = await create_issue(model, world, "Rank three")
    token = await sign_in(client, "bob")
    created = await client.post(
        "/hotlists", data={"_csrf": token, "name": "Release blockers"}, follow_redirects=False
    )
    assert created.status_code == 303
    url = created.headers["location"]
    hotlist_id = int(url.rsplit("/", 1)[1])
    await client.post(
        f"{url}/items",
        data={"_csrf": token, "issue_ids": f"{first.id}, {second.id} {third.id}", "note": "n"},
    )
    missing = await client.post(f"{url}/items", data={"_csrf": token, "issue_ids": "999999"})
    assert missing.status_code == 404
    assert "issue 999999 not found" in missing.text
    # Back to the hotlist the form was on (before: only "Back to my issues").
    back = f'<a href="/hotlists/{hotlist_id}" class="button primary">'
    assert f"{back}Back to hotlist {hotlist_id}</a>" in missing.text
    page = await client.get(url)
    order = re.findall(r'data-issue="(\d+)"', page.text)
    assert order == [str(first.id), str(second.id), str(third.id)]
    await client.post(f"{url}/items/{third.id}/rank", data={"_csrf": token, "position": "1"})
    moved = await client.post(
        f"{url}/items/{first.id}/rank",
        data={"position": "3"},
        headers={"X-CSRF-Token": token, "X-Requested-With": "fetch"},
    )
    assert moved.status_code == 204
    await client.post(f"{url}/items/{second.id}/note", data={"_csrf": token, "note": "ship it"})
    page = await client.get(url)
    assert re.findall(r'data-issue="(\d+)"', page.text) == [
        str(third.id),
        str(second.id),
        str(first.id),
    ]
    assert 'value="ship it"' in page.text
    # Its issues are one link away from the search page's bulk edit and CSV export.
    link = f'<a href="/search?q=hotlistid%3A{hotlist_id}#bulk-edit" class="hotlist-search">'
    assert link in page.text
    listed = await client.get(f"/search?q=hotlistid%3A{hotlist_id}")
    assert set(re.findall(r'class="open-link">(\d+)<', listed.text)) == {
        str(first.id),
        str(second.id),
        str(third.id),
    }
    assert 'id="bulk"' in listed.text
    await client.post(f"{url}/items/{second.id}/remove", data={"_csrf": token})
    items = await call(
        model.list_hotlist_items,
        v1.ListHotlistItemsRequest(caller=world.admin, hotlist_id=hotlist_id),
    )
    assert [i.issue_id for i in items.items] == [third.id, first.id]
    # The bulk bar takes several issues off it at once.
    listed = await client.get(f"/search?q=hotlistid%3A{hotlist_id}")
    remove = re.search(r'<select name="hotlist_remove">(.*?)</select>', listed.text, re.S)
    assert remove
    assert f'<option value="{hotlist_id}">' in remove.group(1)
    rows = [
        await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=i))
        for i in (third.id, first.id)
    ]
    removed = await client.post(
        "/issues/bulk",
        data={
            "_csrf": token,
            "q": f"hotlistid:{hotlist_id}",
            "issue": [f"{i.id}:{i.version}" for i in rows],
            "hotlist_remove": str(hotlist_id),
        },
        follow_redirects=False,
    )
    assert removed.status_code == 303, removed.text
    items = await call(
        model.list_hotlist_items,
        v1.ListHotlistItemsRequest(caller=world.admin, hotlist_id=hotlist_id),
    )
    assert list(items.items) == []
    index = await client.get("/hotlists")
    assert "Release blockers" in index.text


async def test_saved_search_save_list_run_delete(client: AsyncTestClient[Any]) -> None:
    token = await sign_in(client, "carol")
    saved = await client.post(
        "/searches",
        data={"_csrf": token, "name": "My P0s", "query": "is:open p:p0", "share_with_groups": ""},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = await client.get("/searches")
    assert "My P0s" in page.text
    assert "is:open p:p0" in page.text
    search_id = re.search(r"/searches/(\d+)/delete", page.text)
    assert search_id
    await client.post(f"/searches/{search_id.group(1)}/delete", data={"_csrf": token})
    assert "My P0s" not in (await client.get("/searches")).text


async def test_user_page_lists_their_open_issues(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Carol's chore", assignee=world.users["carol"])
    await sign_in(client, "bob")
    page = await client.get("/users/carol")
    assert page.status_code == 200
    assert "Carol Coder" in page.text
    assert f'href="/issues/{issue.id}"' in page.text
    assert (await client.get("/users/nobody_at_all")).status_code == 404


async def test_an_imported_persons_page_says_they_cannot_sign_in_and_how_to_merge_them(
    client: AsyncTestClient[Any], world: World
) -> None:
    """A placeholder from ``bugless import`` (``cyd@trac``) looked like any member.

    Their page now says where they came from and that they cannot sign in;
    an administrator also reads the command that merges them into their
    account (walk26).
    """
    tag = secrets.token_hex(3)
    world.stack.add_user(f"importer{tag}", PASSWORD, groups=["importers"])
    web = world.stack.client_address("auth", identity="web").channel()
    importer = world.stack.client_address("auth", identity="import").channel()
    try:
        signed_in = await call(
            v1.AuthenticatorStub(web).authenticate_password,
            v1.AuthenticatePasswordRequest(username=f"importer{tag}", password=PASSWORD),
        )
        matched = await call(
            v1.AuthenticatorStub(importer).match_import_users,
            v1.MatchImportUsersRequest(
                token=signed_in.token,
                source="trac",
                people=[
                    v1.SourcePerson(key=f"cyd{tag}", username=f"cyd{tag}", display_name="Cyd Lee")
                ],
                create_placeholders=True,
            ),
        )
    finally:
        web.close()
        importer.close()
    placeholder = matched.matches[0].user
    assert placeholder is not None
    assert placeholder.username == f"cyd{tag}@trac"

    await sign_in(client, "bob")
    page = html.unescape((await client.get(f"/users/cyd{tag}@trac")).text)
    assert (
        "Cyd Lee came with an import from another tracker: what they did there is kept under "
        "this name, and they cannot sign in." in page
    )
    assert "bugless auth user merge" not in page, "only an administrator can merge"
    await sign_in(client, "alice")
    page = html.unescape((await client.get(f"/users/cyd{tag}@trac")).text)
    assert f"<code>bugless auth user merge cyd{tag}@trac USERNAME</code>" in page
    # A permanent note, not the one-shot notice base.html draws after an action:
    # `.banner.notice` must find only that notice.
    assert '<p class="banner placeholder-note">' in page
    assert not re.search(r'class="[^"]*\bbanner notice\b', page)
    assert "placeholder-note" not in (await client.get("/users/carol")).text


async def test_every_state_changing_route_refuses_a_missing_csrf_token(
    client: AsyncTestClient[Any], app: Litestar
) -> None:
    await sign_in(client, "alice")
    posts = sorted(
        {route.path for route in app.routes if "POST" in getattr(route, "methods", set())}
    )
    assert len(posts) >= 10
    # The device-login endpoints `bugless login` calls read no cookie (a poll is
    # authorised by its secret device code alone), so they need no CSRF token.
    posts = [p for p in posts if p not in CSRF_EXEMPT]
    assert set(CSRF_EXEMPT) <= {route.path for route in app.routes}
    # A mail's one-click unsubscribe link is posted by mail clients with no
    # session: its signed token is the authority (test_unsubscribe_link.py
    # shows a forged one changes nothing).
    assert [p for p in posts if p.startswith(UNSUBSCRIBE)] == ["/unsubscribe/{token:str}"]
    posts = [p for p in posts if not p.startswith(UNSUBSCRIBE)]
    # A streamed form's route (its token the body's first field) refuses any
    # body but multipart unread, 400 (test_create_form): it is sent multipart.
    streamed = {
        route.path
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if handler.opt.get(CSRF_IN_STREAM)
    }
    assert "/issues/new/with-files" in streamed
    for path in posts:
        concrete = re.sub(r"\{[^}]+:int\}", "1", re.sub(r"\{[^}]+:str\}", "x", path))
        file = {"file": ("x.txt", b"x", "text/plain")} if path in streamed else None
        response = await client.post(concrete, data={"comment": "x", "name": "x"}, files=file)
        assert response.status_code == 403, (path, response.status_code)
        wrong = await client.post(concrete, data={"_csrf": "forged"}, files=file)
        assert wrong.status_code == 403, path
    cross = await client.post(
        "/signout",
        data={"_csrf": csrf_of((await client.get("/")).text)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403


async def test_security_headers_on_pages_errors_and_assets(client: AsyncTestClient[Any]) -> None:
    for path in ("/signin", "/no/such/page", "/healthz"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/no/such/page")).status_code == 404
    page = await client.get("/signin")
    css = re.search(r'href="(/static/app\.[0-9a-f]{12}\.css)"', page.text)
    assert css
    asset = await client.get(css.group(1))
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert asset.headers["content-type"] == "text/css; charset=utf-8"  # one charset, not two
    script = re.search(r'src="(/static/app\.[0-9a-f]{12}\.js)"', page.text)
    assert script
    code = await client.get(script.group(1))
    assert code.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/static/app.000000000000.css")).status_code == 404
    assert "<script>" not in page.text.replace('<script src="', "")


async def test_session_cookie_flags(world: World) -> None:
    from web_support import SESSION_KEY

    from bugless_web import WebSettings, create_app

    settings = WebSettings(
        model=world.stack.model, auth=world.stack.auth, session_keys=(SESSION_KEY,), dev=False
    )
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        page = await c.get("/signin")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("__Host-bugless=")
        for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"):
            assert flag in cookie
        assert "strict-transport-security" in page.headers
        assert "bugless" not in (c.cookies.get("__Host-bugless") or "")  # sealed, not readable


async def test_session_keys_rotate_without_signing_out(world: World) -> None:
    from web_support import SESSION_KEY

    from bugless_web import WebSettings, create_app

    def settings(*keys: str) -> WebSettings:
        return WebSettings(
            model=world.stack.model, auth=world.stack.auth, session_keys=keys, dev=True
        )

    async with AsyncTestClient(create_app(settings(SESSION_KEY))) as old:
        await sign_in(old, "bob")
        cookie = old.cookies["bugless_session"]
    rotated = settings("a-brand-new-session-key-1234", SESSION_KEY)
    async with AsyncTestClient(create_app(rotated)) as new:
        new.cookies.set("bugless_session", cookie)
        assert (await new.get("/", follow_redirects=False)).status_code == 200
    retired = settings("a-brand-new-session-key-1234")
    async with AsyncTestClient(create_app(retired)) as gone:
        gone.cookies.set("bugless_session", cookie)
        assert (await gone.get("/", follow_redirects=False)).status_code == 303


async def test_backend_down_is_a_503_page_not_a_traceback(world: World) -> None:
    import dataclasses

    from web_support import SESSION_KEY

    from bugless_testing.ports import refused_port
    from bugless_web import WebSettings, create_app

    with refused_port() as model_port:
        settings = WebSettings(
            model=dataclasses.replace(world.stack.model, port=model_port),
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=True,
            call_timeout_seconds=2.0,
        )
        async with AsyncTestClient(create_app(settings)) as c:
            await c.get("/signin")
            token = csrf_of((await c.get("/signin")).text)
            await c.post(
                "/signin",
                data={
                    "username": "bob",
                    "password": "correct horse battery staple",
                    "_csrf": token,
                },
            )
            page = await c.get("/search?q=is:open")
            assert page.status_code == 503
            assert "not answering" in page.text
            assert "Traceback" not in page.text
            assert (await c.get("/readyz")).status_code == 503
            assert (await c.get("/healthz")).status_code == 200


async def test_health_readiness_and_drain_steering(world: World) -> None:
    from web_support import SESSION_KEY

    from bugless_web import WebSettings, create_app

    settings = WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        steer_to="https://other.example",
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as c:
        token = await sign_in(c, "alice")
        assert (await c.get("/readyz")).status_code == 200
        assert _sentence_of(await c.get("/admin"), "Serving.") == (
            "Serving. Draining makes /readyz fail and steers new page loads to "
            "https://other.example."
        )
        drained = await c.post("/admin/drain", data={"_csrf": token, "action": "start"})
        assert drained.status_code == 200
        assert "<title>Operations &middot; bugless</title>" in drained.text
        assert re.search(r"Draining for \d+ s \(admin alice\)", drained.text), drained.text
        assert _sentence_of(drained, "Draining for").endswith(
            "Readiness fails; page loads go to https://other.example."
        )
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert "draining" in ready.text
        assert (await c.get("/healthz")).status_code == 200
        steered = await c.get("/search?q=is:open", follow_redirects=False)
        assert steered.status_code == 303
        assert steered.headers["location"] == "https://other.example/search?q=is:open"
        # in-flight work (a form post) is still served
        stop = await c.post(
            "/admin/drain", data={"_csrf": token, "action": "stop"}, follow_redirects=False
        )
        assert stop.status_code == 303
        assert stop.headers["location"] == "/admin"
        assert (await c.get("/readyz")).status_code == 200


def _sentence_of(page: Any, start: str) -> str:
    """The text of the paragraph of ``page`` that begins with ``start``, tags removed."""
    found = re.search(r"<p[^>]*>(" + re.escape(start) + r".*?)</p>", page.text, re.S)
    assert found, page.text
    return re.sub(r"<[^>]+>", "", found.group(1))


async def test_the_operations_page_says_what_a_drain_does_without_steer_to(
    client: AsyncTestClient[Any],
) -> None:
    """No --steer-to: the page says page loads stay here, in a sentence that reads right."""
    token = await sign_in(client, "alice")
    assert _sentence_of(await client.get("/admin"), "Serving.") == (
        "Serving. Draining makes /readyz fail; page loads that still arrive are served "
        "here, as no --steer-to is set."
    )
    drained = await client.post("/admin/drain", data={"_csrf": token, "action": "start"})
    assert _sentence_of(drained, "Draining for").endswith(
        "Readiness fails; page loads are still served here, as no --steer-to is set."
    )
    assert (await client.get("/search?q=is:open", follow_redirects=False)).status_code == 200
    await client.post("/admin/drain", data={"_csrf": token, "action": "stop"})


async def test_non_admin_cannot_drain(client: AsyncTestClient[Any]) -> None:
    token = await sign_in(client, "bob")
    response = await client.post("/admin/drain", data={"_csrf": token, "action": "start"})
    assert response.status_code == 403


async def test_only_admins_see_the_operations_link_in_the_top_bar(
    client: AsyncTestClient[Any],
) -> None:
    """The admin page (drain, failed notifications) is reachable without knowing its URL."""
    link = '<a href="/admin" title="Drain this replica; failed notifications">Operations</a>'
    await sign_in(client, "alice")
    home = await client.get("/")
    assert link in home.text
    admin = await client.get("/admin")
    assert admin.status_code == 200
    assert 'href="/admin/notifications"' in admin.text
    await sign_in(client, "bob")
    assert link not in (await client.get("/")).text
    assert (await client.get("/admin")).status_code == 403


async def test_xss_corpus_in_titles_comments_and_names_stays_inert(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    token = await sign_in(client, "mallory")
    ids = []
    for payload in PAYLOADS:
        response = await client.post(
            "/issues/new",
            data={
                "_csrf": token,
                "component_id": str(world.components["Platform"]),
                "title": payload[:200],
                "description": payload,
                "priority": "P2",
                "severity": "S2",
                "type": "BUG",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        ids.append(int(response.headers["location"].rsplit("/", 1)[1]))
    pages = [await client.get(f"/issues/{i}") for i in ids]
    pages.append(await client.get("/search", params={"q": "reporter:me"}))
    for page in pages:
        assert dangerous_markup(page.text) == [], page.url
    assert "Mallory &lt;script&gt;" in pages[0].text
