"""Stars, subscriptions and mutes through the issue, component and saved-search pages.

The notification settings page, where what one follows is listed, is in
test_notification_settings_page.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import (
    World,
    create_issue,
    delete_saved_searches,
    form_posting_to,
    muted_issue_ids,
    new_saved_search,
    sign_in,
    subscriptions_of,
    unfollow_everything,
)

from bugless_core.clients import call
from bugless_proto import v1


async def test_the_star_toggle_counts_and_is_starred_finds_it(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Starred through the page")
    csrf = await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert f'action="/issues/{issue.id}/star"' in page.text
    assert 'aria-pressed="false"' in page.text
    response = await client.post(
        f"/issues/{issue.id}/star", data={"_csrf": csrf, "starred": "1"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    page = await client.get(f"/issues/{issue.id}")
    assert 'aria-pressed="true"' in page.text
    assert '<span class="star-count">1</span>' in page.text
    found = await client.get("/search", params={"q": f"id:{issue.id} is:starred"})
    assert "Starred through the page" in found.text
    await client.post(
        f"/issues/{issue.id}/star", data={"_csrf": csrf, "starred": "0"}, follow_redirects=False
    )
    seen = await call(model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id))
    assert seen.star_count == 0


async def test_the_issue_page_mutes_and_unmutes_for_the_viewer_only(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "Muted through the page")
    action = f"/issues/{issue.id}/mute"
    try:
        signed_out = await client.get(f"/issues/{issue.id}", follow_redirects=False)
        assert signed_out.status_code in (303, 401), signed_out.status_code
        assert action not in signed_out.text
        csrf = await sign_in(client, "bob")
        form = form_posting_to((await client.get(f"/issues/{issue.id}")).text, action)
        assert 'name="muted" value="1"' in form
        # Its label says what it does; a toggle state as well would read
        # "Unmute, pressed" (a toggle button's label must not change).
        assert "aria-pressed" not in form
        assert ">Mute</button>" in form
        response = await client.post(
            action, data={"_csrf": csrf, "muted": "1"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].endswith(f"/issues/{issue.id}")
        page = (await client.get(f"/issues/{issue.id}")).text
        assert "Muted." in page
        form = form_posting_to(page, action)
        assert 'name="muted" value="0"' in form
        assert "aria-pressed" not in form
        assert ">Unmute</button>" in form
        # The star is its own: muting did not star.
        assert 'aria-pressed="false"' in form_posting_to(page, f"/issues/{issue.id}/star")
        assert await muted_issue_ids(model, world, "bob") == [issue.id]
        # Another person's page does not show bob's mute.
        client.cookies.clear()
        await sign_in(client, "carol")
        assert ">Mute</button>" in form_posting_to(
            (await client.get(f"/issues/{issue.id}")).text, action
        )
        client.cookies.clear()
        csrf = await sign_in(client, "bob")
        response = await client.post(
            action, data={"_csrf": csrf, "muted": "0"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        page = (await client.get(f"/issues/{issue.id}")).text
        assert "Unmuted." in page
        assert ">Mute</button>" in form_posting_to(page, action)
        assert await muted_issue_ids(model, world, "bob") == []
    finally:
        await unfollow_everything(model, world, "bob")


async def test_muting_what_one_cannot_see_is_a_page_with_the_reason_and_mutes_nothing(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    hidden = await create_issue(model, world, "Hidden from bob", by="alice", component="Secret")
    csrf = await sign_in(client, "bob")
    response = await client.post(
        f"/issues/{hidden.id}/mute", data={"_csrf": csrf, "muted": "1"}, follow_redirects=False
    )
    assert response.status_code == 404, response.text
    assert str(hidden.id) in response.text
    response = await client.post(
        "/issues/twelve/mute", data={"_csrf": csrf, "muted": "1"}, follow_redirects=False
    )
    assert response.status_code == 404, response.text
    assert "there is no such page" in response.text
    response = await client.post(
        f"/components/{world.components['Secret']}/subscribe",
        data={"_csrf": csrf, "subscribed": "1"},
        follow_redirects=False,
    )
    assert response.status_code == 404, response.text
    assert await muted_issue_ids(model, world, "bob") == []
    assert await subscriptions_of(model, world, "bob") == v1.Subscriptions()


async def test_the_component_page_subscribes_and_unsubscribes_by_state(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = world.components["Platform>Storage"]
    action = f"/components/{component}/subscribe"
    try:
        csrf = await sign_in(client, "bob")
        form = form_posting_to((await client.get(f"/components/{component}")).text, action)
        assert ">Subscribe to notifications</button>" in form
        assert 'name="subtree" value="1"> include subcomponents' in form
        assert "Unsubscribe" not in form
        for subtree, state in (
            ("1", "Subscribed (with its subcomponents)"),
            ("0", "Subscribed</span>"),
        ):
            response = await client.post(
                action,
                data={"_csrf": csrf, "subscribed": "1", "subtree": subtree},
                follow_redirects=False,
            )
            assert response.status_code == 303, response.text
            assert response.headers["location"].endswith(f"/components/{component}")
            form = form_posting_to((await client.get(f"/components/{component}")).text, action)
            assert state in form
            assert 'name="subscribed" value="0"' in form
            assert ">Unsubscribe</button>" in form
            assert "include subcomponents" not in form
        held = await subscriptions_of(model, world, "bob")
        assert held.components == [v1.ComponentSubscription(component_id=component)]
        # Another component's page is not subscribed.
        other = form_posting_to(
            (await client.get(f"/components/{world.components['Platform']}")).text,
            f"/components/{world.components['Platform']}/subscribe",
        )
        assert ">Subscribe to notifications</button>" in other
        response = await client.post(
            action, data={"_csrf": csrf, "subscribed": "0"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        form = form_posting_to((await client.get(f"/components/{component}")).text, action)
        assert ">Subscribe to notifications</button>" in form
        assert await subscriptions_of(model, world, "bob") == v1.Subscriptions()
    finally:
        await unfollow_everything(model, world, "bob")


async def test_a_component_under_a_subscription_with_subcomponents_says_it_is_covered(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """It offered "Subscribe" again, as if its changes did not reach the viewer already."""
    parent, child = world.components["Platform"], world.components["Platform>Storage"]
    try:
        csrf = await sign_in(client, "bob")
        response = await client.post(
            f"/components/{parent}/subscribe",
            data={"_csrf": csrf, "subscribed": "1", "subtree": "1"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        page = (await client.get(f"/components/{child}")).text
        assert "Notified through your subscription to" in page
        assert f'<a href="/components/{parent}">Platform</a> with its subcomponents' in page
        assert f'action="/components/{child}/subscribe"' not in page
        # Without its subcomponents the parent's subscription covers nothing here.
        response = await client.post(
            f"/components/{parent}/subscribe",
            data={"_csrf": csrf, "subscribed": "1", "subtree": "0"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        page = (await client.get(f"/components/{child}")).text
        assert "Notified through" not in page
        assert ">Subscribe to notifications</button>" in form_posting_to(
            page, f"/components/{child}/subscribe"
        )
    finally:
        await unfollow_everything(model, world, "bob")


async def test_the_saved_searches_list_subscribes_and_unsubscribes_per_row(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    watched = await new_saved_search(model, world, "alice", "Watched")
    unwatched = await new_saved_search(model, world, "alice", "Unwatched")
    shared = await new_saved_search(model, world, "carol", "Shared with admins", ["admins"])
    try:
        csrf = await sign_in(client, "alice")
        response = await client.post(
            f"/searches/{watched.id}/subscribe",
            data={"_csrf": csrf, "subscribed": "1"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        page = (await client.get("/searches")).text
        assert ">Unsubscribe</button>" in form_posting_to(page, f"/searches/{watched.id}/subscribe")
        for other in (unwatched, shared):
            form = form_posting_to(page, f"/searches/{other.id}/subscribe")
            assert ">Subscribe</button>" in form
            assert 'name="subscribed" value="1"' in form
        response = await client.post(
            f"/searches/{shared.id}/subscribe",
            data={"_csrf": csrf, "subscribed": "1"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        response = await client.post(
            f"/searches/{watched.id}/subscribe",
            data={"_csrf": csrf, "subscribed": "0"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].endswith("/searches")
        page = (await client.get("/searches")).text
        assert ">Subscribe</button>" in form_posting_to(page, f"/searches/{watched.id}/subscribe")
        assert ">Unsubscribe</button>" in form_posting_to(page, f"/searches/{shared.id}/subscribe")
        held = await subscriptions_of(model, world, "alice")
        assert held.saved_search_ids == [shared.id]
    finally:
        await unfollow_everything(model, world, "alice")
        await delete_saved_searches(model, watched, unwatched, shared)


async def test_the_saved_searches_list_says_which_subscribed_search_no_longer_runs(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A subscription whose query the Model now refuses is silent: the list says so, and why.

    The notifier keeps such a search's matches and mails nothing for it,
    logging the refusal its subscriber never reads.
    """
    working = await new_saved_search(model, world, "alice", "Working")
    gone = await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller("alice"),
            name=f"Gone {secrets.token_hex(3)}",
            query="is:open componentid:999999",
        ),
    )
    unsubscribed = await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller("alice"),
            name=f"Not subscribed {secrets.token_hex(3)}",
            query="componentid:999998",
        ),
    )
    try:
        csrf = await sign_in(client, "alice")
        for saved in (working, gone):
            response = await client.post(
                f"/searches/{saved.id}/subscribe",
                data={"_csrf": csrf, "subscribed": "1"},
                follow_redirects=False,
            )
            assert response.status_code == 303, response.text
        page = (await client.get("/searches")).text
        notes = re.findall(r'<div class="error saved-search-broken">([^<]*)</div>', page)
        assert notes == [
            "This search no longer runs, so its mail has stopped: "
            "at column 21: there is no component 999999 that you may view"
        ], page
    finally:
        await unfollow_everything(model, world, "alice")
        await delete_saved_searches(model, working, gone, unsubscribed)
