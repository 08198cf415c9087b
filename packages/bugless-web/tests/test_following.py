"""Stars, subscriptions, mutes and notification settings through the web pages."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from web_support import World, create_issue, sign_in

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
        assert "and its subtree" in page.text
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
