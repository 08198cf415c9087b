"""The notification settings page: saving it, a stale form, and what one follows listed there."""

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
from bugless_proto.google.protobuf import FieldMask


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
        form = form_posting_to(response.text, "/settings/notifications")
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


async def test_the_settings_page_names_what_one_follows_and_stops_each(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    component = world.components["Platform>Storage"]
    saved = await new_saved_search(model, world, "bob", "Bob's watch")
    issue = await create_issue(model, world, "Too noisy to follow")
    moved = await create_issue(model, world, "Muted, then moved out of sight")
    hidden = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin, name=f"Followed, then hidden {secrets.token_hex(3)}"
        ),
    )
    bob = world.caller("bob")
    unshared = await call(
        model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=world.caller("alice"),
            name=f"Shared, then not {secrets.token_hex(3)}",
            query="is:open",
            readers=[v1.Principal(user=bob.user_id)],
        ),
    )
    try:
        await call(
            model.set_component_subscription,
            v1.SetComponentSubscriptionRequest(
                caller=bob, component_id=component, subscribed=True, include_subtree=True
            ),
        )
        # Subscribed while shared with bob, then alice stops sharing it: the
        # notifier mails him nothing more of it (bugless_notify._readable).
        await call(
            model.set_saved_search_subscription,
            v1.SetSavedSearchSubscriptionRequest(
                caller=bob, saved_search_id=unshared.id, subscribed=True
            ),
        )
        await call(
            model.update_saved_search,
            v1.UpdateSavedSearchRequest(
                caller=world.caller("alice"),
                saved_search=v1.SavedSearch(id=unshared.id),
                update_mask=FieldMask(paths=["readers"]),
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
        row = _row(page, "data-saved-search", unshared.id)
        assert "Shared, then not" not in row
        assert "(no longer shared with you: it mails you nothing)" in row
        row = _row(page, "data-issue", issue.id)
        assert f'<a href="/issues/{issue.id}">{issue.id}</a> Too noisy to follow' in row
        row = _row(page, "data-issue", moved.id)
        assert "Muted, then moved" not in row
        assert "(not visible to you)" in row
        for action, field in (
            (f"/components/{component}/subscribe", "subscribed"),
            (f"/components/{hidden.id}/subscribe", "subscribed"),
            (f"/searches/{saved.id}/subscribe", "subscribed"),
            (f"/searches/{unshared.id}/subscribe", "subscribed"),
            (f"/issues/{issue.id}/mute", "muted"),
            (f"/issues/{moved.id}/mute", "muted"),
        ):
            form = form_posting_to(page, action)
            assert f'name="{field}" value="0"' in form
            assert 'name="back" value="settings"' in form
            response = await client.post(
                action, data={"_csrf": csrf, field: "0", "back": "settings"}, follow_redirects=False
            )
            assert response.status_code == 303, response.text
            assert response.headers["location"].endswith("/settings/notifications")
            assert f'action="{action}"' not in (await client.get("/settings/notifications")).text
        assert await subscriptions_of(model, world, "bob") == v1.Subscriptions()
        assert await muted_issue_ids(model, world, "bob") == []
        page = (await client.get("/settings/notifications")).text
        assert "Nothing yet: subscribe from a component" in page
    finally:
        await unfollow_everything(model, world, "bob")
        await delete_saved_searches(model, saved, unshared)


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
        form = form_posting_to(page, f"/issues/{issue.id}/star")
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
