"""Stars, subscriptions and notification settings through the API."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs, signed_in

from bugless_core.errors import Conflict, InvalidArgument, NotFound
from bugless_proto import v1


async def test_stars_count_per_person_and_search_with_is_starred(connect_as: ConnectAs) -> None:
    robot, boss = await signed_in(connect_as, "robot", "boss")
    component = await robot.create_component(f"Stars-{secrets.token_hex(3)}")
    starred = await robot.create_issue("starred", component.id)
    await robot.create_issue("not starred", component.id)

    assert (await robot.star_issue(starred.id)).star_count == 1
    assert (await boss.star_issue(starred.id)).star_count == 2
    assert (await robot.star_issue(starred.id)).star_count == 2
    seen = await robot.get_issue(starred.id)
    assert (seen.star_count, seen.starred) == (2, True)

    found = await robot.search_issues(f"c:{component.id} is:starred")
    assert [i.id for i in found.issues] == [starred.id]
    found = await boss.search_issues(f"c:{component.id} star:robot")
    assert [i.id for i in found.issues] == [starred.id]
    assert (await robot.star_issue(starred.id, starred=False)).star_count == 1
    found = await robot.search_issues(f"c:{component.id} is:starred")
    assert found.issues == []


async def test_subscriptions_and_settings_are_ones_own(connect_as: ConnectAs) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Subs-{secrets.token_hex(3)}")
    subs = await robot.subscribe_component(component.id, include_subtree=True)
    assert v1.ComponentSubscription(component_id=component.id, include_subtree=True) in (
        subs.components
    )
    search = await robot.create_saved_search(f"s-{secrets.token_hex(3)}", "is:open")
    subs = await robot.subscribe_saved_search(search.id)
    assert search.id in subs.saved_search_ids
    assert await robot.list_subscriptions() == subs

    settings = await robot.update_notification_settings(
        disabled_events=[v1.NotificationEvent.STARRED], digest=v1.DigestMode.DAILY
    )
    assert settings.digest == v1.DigestMode.DAILY
    issue = await robot.create_issue("noisy", component.id)
    muted = await robot.mute_issue(issue.id)
    assert issue.id in muted.muted_issue_ids
    assert (await robot.get_notification_settings()).muted_issue_ids == [issue.id]
    with pytest.raises(NotFound):
        await robot.star_issue(8_999_999_999_999)
    with pytest.raises(InvalidArgument):
        await robot.update_notification_settings(channel="pigeon")


async def test_a_settings_update_at_a_stale_version_is_a_conflict_through_the_api(
    connect_as: ConnectAs,
) -> None:
    (robot,) = await signed_in(connect_as, "outsider")
    start = await robot.update_notification_settings()
    saved = await robot.update_notification_settings(
        digest=v1.DigestMode.DAILY, expected_version=start.version
    )
    assert saved.version == start.version + 1
    with pytest.raises(Conflict) as caught:
        await robot.update_notification_settings(channel="none", expected_version=start.version)
    assert caught.value.reason == "VERSION_CONFLICT"
    assert caught.value.metadata["current_version"] == str(saved.version)
    assert f"at version {saved.version}, not {start.version}" in caught.value.message
    assert await robot.get_notification_settings() == saved
    with pytest.raises(InvalidArgument, match="'webhook' is not one of email, none"):
        await robot.update_notification_settings(channel="webhook", expected_version=saved.version)
    assert await robot.get_notification_settings() == saved
    await robot.update_notification_settings()
