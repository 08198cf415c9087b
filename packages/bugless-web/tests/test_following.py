"""Stars, subscriptions, mutes and notification settings through the web pages."""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

from bugless_core.clients import call
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


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


async def test_settings_page_saves_and_subscriptions_are_listed(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    # carol's settings are the session's (test_web_dead_letters needs her mails
    # sent at once): put back whatever the test changed, pass or fail.
    try:
        csrf = await sign_in(client, "carol")
        component = world.components["Platform"]
        response = await client.post(
            f"/components/{component}/subscribe",
            data={"_csrf": csrf, "subscribed": "1", "subtree": "1"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        response = await client.post(
            "/settings/notifications",
            data={"_csrf": csrf, "event": ["1", "2"], "channel": "email", "digest": "daily"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        page = await client.get("/settings/notifications")
        assert f'href="/components/{component}"' in page.text
        assert "and its subcomponents" in page.text
        saved = await call(
            model.get_notification_settings,
            v1.GetNotificationSettingsRequest(caller=world.caller("carol")),
        )
        assert saved.settings[0].digest == v1.DigestMode.DAILY
        assert set(saved.settings[0].disabled_events) == {
            v1.NotificationEvent.MY_ISSUES,
            v1.NotificationEvent.STARRED,
            v1.NotificationEvent.SUBSCRIPTIONS,
        }
    finally:
        await call(
            model.update_notification_settings,
            v1.UpdateNotificationSettingsRequest(
                caller=world.caller("carol"), settings=v1.NotificationSettings(channel="email")
            ),
        )
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(
                caller=world.caller("carol"),
                component_id=world.components["Platform"],
                subscribed=False,
            ),
        )


async def test_a_stale_settings_form_is_409_with_the_current_values_and_saves_nothing(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    csrf = await sign_in(client, "mallory")
    mallory = world.caller("mallory")
    page = (await client.get("/settings/notifications")).text
    version = int(re.findall(r'<input type="hidden" name="version" value="(\d+)">', page)[0])
    meanwhile = await call(
        model.update_notification_settings,
        v1.UpdateNotificationSettingsRequest(
            caller=mallory,
            settings=v1.NotificationSettings(channel="none", notify_own_changes=True),
            expected_version=version,
        ),
    )
    try:
        response = await client.post(
            "/settings/notifications",
            data={
                "_csrf": csrf,
                "version": str(version),
                "event": ["1"],
                "channel": "email",
                "digest": "daily",
            },
            follow_redirects=False,
        )
        assert response.status_code == 409, response.text
        assert "your notification settings were changed elsewhere" in response.text
        assert "Below are the settings as they are now" in response.text
        form = _form(response.text, "/settings/notifications")
        assert f'name="version" value="{meanwhile.version}"' in form
        assert '<option value="none" selected>' in form
        assert 'name="own" value="1" checked' in form
        assert '<option value="immediate" selected>' in form
        now = await call(
            model.get_notification_settings, v1.GetNotificationSettingsRequest(caller=mallory)
        )
        assert now.settings[0] == meanwhile
        response = await client.post(
            "/settings/notifications",
            data={
                "_csrf": csrf,
                "version": str(meanwhile.version),
                "event": ["1"],
                "channel": "email",
                "digest": "daily",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        now = await call(
            model.get_notification_settings, v1.GetNotificationSettingsRequest(caller=mallory)
        )
        assert (now.settings[0].channel, now.settings[0].digest) == ("email", v1.DigestMode.DAILY)
        assert now.settings[0].version == meanwhile.version + 1
    finally:
        await call(
            model.update_notification_settings,
            v1.UpdateNotificationSettingsRequest(
                caller=mallory, settings=v1.NotificationSettings(channel="email")
            ),
        )


def _form(html: str, action: str) -> str:
    """The one form posting to ``action`` on the page, as HTML."""
    forms: list[str] = re.findall(rf'<form action="{re.escape(action)}".*?</form>', html, re.S)
    assert len(forms) == 1, (action, forms)
    return forms[0]


async def _muted_ids(model: v1.ModelStub, world: World, username: str) -> list[int]:
    answer = await call(
        model.get_notification_settings,
        v1.GetNotificationSettingsRequest(caller=world.caller(username)),
    )
    return list(answer.settings[0].muted_issue_ids)


async def _subscriptions(model: v1.ModelStub, world: World, username: str) -> v1.Subscriptions:
    return await call(
        model.list_subscriptions, v1.ListSubscriptionsRequest(caller=world.caller(username))
    )


async def _unfollow_everything(model: v1.ModelStub, world: World, username: str) -> None:
    """Put back the person's subscriptions and mutes (the session's people are shared)."""
    caller = world.caller(username)
    held = await _subscriptions(model, world, username)
    for c in held.components:
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(
                caller=caller, component_id=c.component_id, subscribed=False
            ),
        )
    for saved_search_id in held.saved_search_ids:
        await call(
            model.set_saved_search_subscription,
            v1.SetSavedSearchSubscriptionRequest(
                caller=caller, saved_search_id=saved_search_id, subscribed=False
            ),
        )
    for issue_id in await _muted_ids(model, world, username):
        await call(
            model.set_issue_mute,
            v1.SetIssueMuteRequest(caller=caller, issue_id=issue_id, muted=False),
        )


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
        form = _form((await client.get(f"/issues/{issue.id}")).text, action)
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
        form = _form(page, action)
        assert 'name="muted" value="0"' in form
        assert "aria-pressed" not in form
        assert ">Unmute</button>" in form
        # The star is its own: muting did not star.
        assert 'aria-pressed="false"' in _form(page, f"/issues/{issue.id}/star")
        assert await _muted_ids(model, world, "bob") == [issue.id]
        # Another person's page does not show bob's mute.
        client.cookies.clear()
        await sign_in(client, "carol")
        assert ">Mute</button>" in _form((await client.get(f"/issues/{issue.id}")).text, action)
        client.cookies.clear()
        csrf = await sign_in(client, "bob")
        response = await client.post(
            action, data={"_csrf": csrf, "muted": "0"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        page = (await client.get(f"/issues/{issue.id}")).text
        assert "Unmuted." in page
        assert ">Mute</button>" in _form(page, action)
        assert await _muted_ids(model, world, "bob") == []
    finally:
        await _unfollow_everything(model, world, "bob")


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
    assert await _muted_ids(model, world, "bob") == []
    assert await _subscriptions(model, world, "bob") == v1.Subscriptions()


async def test_the_component_page_subscribes_and_unsubscribes_by_state(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = world.components["Platform>Storage"]
    action = f"/components/{component}/subscribe"
    try:
        csrf = await sign_in(client, "bob")
        form = _form((await client.get(f"/components/{component}")).text, action)
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
            form = _form((await client.get(f"/components/{component}")).text, action)
            assert state in form
            assert 'name="subscribed" value="0"' in form
            assert ">Unsubscribe</button>" in form
            assert "include subcomponents" not in form
        held = await _subscriptions(model, world, "bob")
        assert held.components == [v1.ComponentSubscription(component_id=component)]
        # Another component's page is not subscribed.
        other = _form(
            (await client.get(f"/components/{world.components['Platform']}")).text,
            f"/components/{world.components['Platform']}/subscribe",
        )
        assert ">Subscribe to notifications</button>" in other
        response = await client.post(
            action, data={"_csrf": csrf, "subscribed": "0"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        form = _form((await client.get(f"/components/{component}")).text, action)
        assert ">Subscribe to notifications</button>" in form
        assert await _subscriptions(model, world, "bob") == v1.Subscriptions()
    finally:
        await _unfollow_everything(model, world, "bob")


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
        assert ">Subscribe to notifications</button>" in _form(
            page, f"/components/{child}/subscribe"
        )
    finally:
        await _unfollow_everything(model, world, "bob")


async def _saved_search(
    model: v1.ModelStub, world: World, owner: str, name: str, readers: list[str] | None = None
) -> v1.SavedSearch:
    return await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller(owner),
            name=f"{name} {secrets.token_hex(3)}",
            query="is:open",
            readers=[v1.Principal(group=g) for g in readers or []],
        ),
    )


async def _delete_saved_searches(model: v1.ModelStub, *searches: v1.SavedSearch) -> None:
    """Delete the test's saved searches (the session's people list them on other pages)."""
    for saved in searches:
        await call(
            model.delete_saved_search,
            v1.DeleteSavedSearchRequest(
                caller=v1.Caller(user_id=saved.owner), saved_search_id=saved.id
            ),
        )


async def test_the_saved_searches_list_subscribes_and_unsubscribes_per_row(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    watched = await _saved_search(model, world, "alice", "Watched")
    unwatched = await _saved_search(model, world, "alice", "Unwatched")
    shared = await _saved_search(model, world, "carol", "Shared with admins", ["admins"])
    try:
        csrf = await sign_in(client, "alice")
        response = await client.post(
            f"/searches/{watched.id}/subscribe",
            data={"_csrf": csrf, "subscribed": "1"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        page = (await client.get("/searches")).text
        assert ">Unsubscribe</button>" in _form(page, f"/searches/{watched.id}/subscribe")
        for other in (unwatched, shared):
            form = _form(page, f"/searches/{other.id}/subscribe")
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
        assert ">Subscribe</button>" in _form(page, f"/searches/{watched.id}/subscribe")
        assert ">Unsubscribe</button>" in _form(page, f"/searches/{shared.id}/subscribe")
        held = await _subscriptions(model, world, "alice")
        assert held.saved_search_ids == [shared.id]
    finally:
        await _unfollow_everything(model, world, "alice")
        await _delete_saved_searches(model, watched, unwatched, shared)


async def test_the_settings_page_names_what_one_follows_and_stops_each(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = world.components["Platform>Storage"]
    saved = await _saved_search(model, world, "bob", "Bob's watch")
    issue = await create_issue(model, world, "Too noisy to follow")
    moved = await create_issue(model, world, "Muted, then moved out of sight")
    hidden = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin, name=f"Followed, then hidden {secrets.token_hex(3)}"
        ),
    )
    bob = world.caller("bob")
    try:
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(
                caller=bob, component_id=component, subscribed=True, include_subtree=True
            ),
        )
        await call(
            model.set_saved_search_subscription,
            v1.SetSavedSearchSubscriptionRequest(
                caller=bob, saved_search_id=saved.id, subscribed=True
            ),
        )
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(caller=bob, component_id=hidden.id, subscribed=True),
        )
        await call(
            model.update_component,
            v1.UpdateComponentRequest(
                caller=world.admin,
                component=v1.Component(
                    id=hidden.id,
                    acl=[v1.AclEntry(principal=v1.Principal(group="admins"), role=v1.Role.ADMIN)],
                ),
                update_mask=FieldMask(paths=["acl"]),
            ),
        )
        for muted in (issue, moved):
            await call(
                model.set_issue_mute,
                v1.SetIssueMuteRequest(caller=bob, issue_id=muted.id, muted=True),
            )
        # Signed in after the component is hidden: the web keeps each
        # person's component tree for component_cache_seconds.
        csrf = await sign_in(client, "bob")
        await call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=world.admin,
                issue_id=moved.id,
                expected_version=moved.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(component_id=world.components["Secret"]),
                    update_mask=FieldMask(paths=["component_id"]),
                ),
            ),
        )
        page = (await client.get("/settings/notifications")).text
        assert "Nothing yet" not in page
        row = _row(page, "data-component", component)
        assert f'<a href="/components/{component}">Platform&gt;Storage</a>' in row
        assert "and its subcomponents" in row
        row = _row(page, "data-component", hidden.id)
        assert "Followed, then hidden" not in row
        assert "(no longer visible to you)" in row
        row = _row(page, "data-saved-search", saved.id)
        assert f">{saved.name.replace(chr(39), '&#39;')}</a>" in row
        row = _row(page, "data-issue", issue.id)
        assert f'<a href="/issues/{issue.id}">{issue.id}</a> Too noisy to follow' in row
        row = _row(page, "data-issue", moved.id)
        assert "Muted, then moved" not in row
        assert "(not visible to you)" in row
        for action, field in (
            (f"/components/{component}/subscribe", "subscribed"),
            (f"/components/{hidden.id}/subscribe", "subscribed"),
            (f"/searches/{saved.id}/subscribe", "subscribed"),
            (f"/issues/{issue.id}/mute", "muted"),
            (f"/issues/{moved.id}/mute", "muted"),
        ):
            form = _form(page, action)
            assert f'name="{field}" value="0"' in form
            assert 'name="back" value="settings"' in form
            response = await client.post(
                action, data={"_csrf": csrf, field: "0", "back": "settings"}, follow_redirects=False
            )
            assert response.status_code == 303, response.text
            assert response.headers["location"].endswith("/settings/notifications")
            assert f'action="{action}"' not in (await client.get("/settings/notifications")).text
        assert await _subscriptions(model, world, "bob") == v1.Subscriptions()
        assert await _muted_ids(model, world, "bob") == []
        page = (await client.get("/settings/notifications")).text
        assert "Nothing yet: subscribe from a component" in page
    finally:
        await _unfollow_everything(model, world, "bob")
        await _delete_saved_searches(model, saved)


async def test_starred_issues_are_listed_with_what_one_follows_and_unstarred_there(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A person who starred issues is not told "Nothing yet"; each has its Unstar.

    The page listed components, saved searches and mutes only, while stars
    notify too and ``bugless notifications show`` lists them.
    """
    issue = await create_issue(model, world, "Starred, so followed")
    csrf = await sign_in(client, "carol")
    await call(
        model.star_issue,
        v1.StarIssueRequest(caller=world.caller("carol"), issue_id=issue.id, starred=True),
    )
    try:
        page = (await client.get("/settings/notifications")).text
        assert "Nothing yet" not in page
        row = _row(page, "data-issue", issue.id)
        assert 'class="followed-starred"' in row
        assert f'<a href="/issues/{issue.id}">{issue.id}</a> Starred, so followed' in row
        form = _form(page, f"/issues/{issue.id}/star")
        assert 'name="starred" value="0"' in form
        assert 'name="back" value="settings"' in form
        response = await client.post(
            f"/issues/{issue.id}/star",
            data={"_csrf": csrf, "starred": "0", "back": "settings"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].endswith("/settings/notifications")
        seen = await call(
            model.get_issue, v1.GetIssueRequest(caller=world.admin, issue_id=issue.id)
        )
        assert seen.star_count == 0
        page = (await client.get("/settings/notifications")).text
        assert f'data-issue="{issue.id}"' not in page
        # Other tests of the module may leave carol following something: the
        # empty line shows exactly when nothing else is listed.
        empty = "Nothing yet: subscribe from a component's or a saved search's page" in page
        assert empty == (re.search(r'<li class="followed-', page) is None), page
    finally:
        await call(
            model.star_issue,
            v1.StarIssueRequest(caller=world.caller("carol"), issue_id=issue.id, starred=False),
        )


def _row(html: str, attribute: str, value: int) -> str:
    """The "What I follow" row whose ``attribute`` is ``value``."""
    rows: list[str] = re.findall(
        rf'<li class="followed-[a-z]+" {attribute}="{value}">.*?</li>', html, re.S
    )
    assert len(rows) == 1, (attribute, value, rows)
    return rows[0]


async def test_the_saved_searches_list_says_which_subscribed_search_no_longer_runs(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """A subscription whose query the Model now refuses is silent: the list says so, and why.

    The notifier keeps such a search's matches and mails nothing for it,
    logging the refusal its subscriber never reads.
    """
    working = await _saved_search(model, world, "alice", "Working")
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
        await _unfollow_everything(model, world, "alice")
        await _delete_saved_searches(model, working, gone, unsubscribed)
