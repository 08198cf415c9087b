"""Contract: a person's notification settings, their version and their channel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.errors import Conflict, from_grpc_error
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    BOB,
    expect_error,
    fresh_caller,
    make_component,
    make_issue,
)

#: Concurrent UpdateNotificationSettings calls racing on one version.
SETTINGS_WRITERS = 12


async def _settings(model: v1.ModelStub, caller: v1.Caller) -> v1.NotificationSettings:
    answer = await model.get_notification_settings(v1.GetNotificationSettingsRequest(caller=caller))
    return answer.settings[0]


def _save(
    model: v1.ModelStub,
    caller: v1.Caller,
    expected_version: int,
    *,
    channel: str = "email",
    digest: v1.DigestMode = v1.DigestMode.IMMEDIATE,
    notify_own_changes: bool = False,
    disabled_events: list[v1.NotificationEvent] | None = None,
) -> Awaitable[v1.NotificationSettings]:
    return model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=caller,
            settings=v1.NotificationSettings(
                channel=channel,
                digest=digest,
                notify_own_changes=notify_own_changes,
                disabled_events=disabled_events or [],
            ),
            expected_version=expected_version,
        )
    )


async def _save_or_conflict(
    model: v1.ModelStub,
    caller: v1.Caller,
    expected_version: int,
    disabled_events: list[v1.NotificationEvent],
    n: int,
) -> v1.NotificationSettings | Conflict:
    try:
        return await _save(
            model,
            caller,
            expected_version,
            disabled_events=disabled_events,
            notify_own_changes=n % 2 == 1,
        )
    except GRPCError as exc:
        if exc.status is not Status.ABORTED:
            raise
        conflict = from_grpc_error(exc)
    if not isinstance(conflict, Conflict) or conflict.reason != "VERSION_CONFLICT":
        raise AssertionError(f"ABORTED without a version conflict: {conflict}")
    return conflict


def _current_version(error: GRPCError) -> int:
    """The ``current_version`` an ABORTED answer names (ErrorInfo metadata)."""
    return int(from_grpc_error(error).metadata["current_version"])


class NotificationSettingsContract:
    """A person's notification settings.

    Pins down: settings default to everything on (e-mail, at once, not
    about one's own changes) at version 1, are the person's own (an admin
    reads anyone's); an update names the version it was made from: a stale
    one is ABORTED (``VERSION_CONFLICT`` with ``current_version``) and
    writes nothing, of concurrent updates from one version exactly one
    wins, 0 names none (the last writer wins), and mutes leave the version
    alone; ``webhook`` is no person's channel (the notifier has none to
    deliver to), refused naming the channels there are.
    """

    async def test_settings_default_to_everything_and_are_ones_own(
        self, model: v1.ModelStub
    ) -> None:
        person = fresh_caller("settings")
        got = await model.get_notification_settings(
            v1.GetNotificationSettingsRequest(caller=person)
        )
        assert got.settings == [
            v1.NotificationSettings(
                user_id=person.user_id, channel="email", digest=v1.DigestMode.IMMEDIATE, version=1
            )
        ]
        saved = await model.update_notification_settings(
            v1.UpdateNotificationSettingsRequest(
                caller=person,
                settings=v1.NotificationSettings(
                    disabled_events=[v1.NotificationEvent.STARRED],
                    channel="none",
                    digest=v1.DigestMode.DAILY,
                    notify_own_changes=True,
                ),
            )
        )
        assert saved.disabled_events == [v1.NotificationEvent.STARRED]
        assert (saved.channel, saved.digest, saved.notify_own_changes) == (
            "none",
            v1.DigestMode.DAILY,
            True,
        )
        await expect_error(
            model.get_notification_settings(
                v1.GetNotificationSettingsRequest(caller=BOB, user_ids=[person.user_id])
            ),
            Status.PERMISSION_DENIED,
        )
        by_admin = await model.get_notification_settings(
            v1.GetNotificationSettingsRequest(caller=ADMIN, user_ids=[person.user_id, "nobody"])
        )
        assert [s.user_id for s in by_admin.settings] == [person.user_id, "nobody"]
        assert by_admin.settings[0] == saved
        await expect_error(
            model.update_notification_settings(
                v1.UpdateNotificationSettingsRequest(
                    caller=person, settings=v1.NotificationSettings(channel="pigeon")
                )
            ),
            Status.INVALID_ARGUMENT,
            "settings.channel",
        )

    async def test_webhook_is_no_persons_channel_and_the_refusal_names_the_allowed_ones(
        self, model: v1.ModelStub
    ) -> None:
        person = fresh_caller("webhook")
        await expect_error(
            model.update_notification_settings(
                v1.UpdateNotificationSettingsRequest(
                    caller=person, settings=v1.NotificationSettings(channel="webhook")
                )
            ),
            Status.INVALID_ARGUMENT,
            "settings.channel",
            "'webhook' is not one of email, none",
        )
        assert await _settings(model, person) == v1.NotificationSettings(
            user_id=person.user_id, channel="email", digest=v1.DigestMode.IMMEDIATE, version=1
        )

    async def test_a_stale_settings_version_is_aborted_and_changes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        person = fresh_caller("stale")
        assert (await _settings(model, person)).version == 1
        # No row yet: a version other than 1 is stale, and nothing is stored.
        error = await expect_error(
            _save(model, person, 7, channel="none"), Status.ABORTED, "version 1, not 7"
        )
        assert _current_version(error) == 1
        assert (await _settings(model, person)).channel == "email"
        first = await _save(model, person, 1, channel="none")
        assert (first.channel, first.version) == ("none", 2)
        error = await expect_error(
            _save(model, person, 1, digest=v1.DigestMode.DAILY),
            Status.ABORTED,
            "version 2, not 1",
            "changed elsewhere",
        )
        assert _current_version(error) == 2
        assert await _settings(model, person) == first
        await expect_error(_save(model, person, -1), Status.INVALID_ARGUMENT, "expected_version")
        # Mutes are not what an update replaces: they leave the version alone.
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        muted = await model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=person, issue_id=issue.id, muted=True)
        )
        assert (muted.muted_issue_ids, muted.version) == ([issue.id], 2)
        second = await _save(model, person, 2, digest=v1.DigestMode.DAILY)
        assert (second.channel, second.digest, second.version) == ("email", v1.DigestMode.DAILY, 3)
        assert second.muted_issue_ids == [issue.id]
        # No expected version (clients older than the field): the last writer wins.
        unconditional = await _save(model, person, 0, notify_own_changes=True)
        assert (unconditional.notify_own_changes, unconditional.version) == (True, 4)

    async def test_concurrent_settings_updates_from_one_version_exactly_one_wins(
        self, model: v1.ModelStub
    ) -> None:
        person = fresh_caller("racing")
        events = [e for e in v1.NotificationEvent if e != v1.NotificationEvent.UNSPECIFIED]
        for version in (1, 2):  # the first save of a person (no row yet), then a row's
            outcomes = await asyncio.gather(
                *(
                    _save_or_conflict(model, person, version, [events[n % len(events)]], n)
                    for n in range(SETTINGS_WRITERS)
                )
            )
            winners = [o for o in outcomes if isinstance(o, v1.NotificationSettings)]
            losers = [o for o in outcomes if isinstance(o, Conflict)]
            assert len(winners) == 1, [str(o) for o in outcomes]
            assert len(losers) == SETTINGS_WRITERS - 1
            assert {c.metadata["current_version"] for c in losers} == {str(version + 1)}
            assert winners[0].version == version + 1
            assert await _settings(model, person) == winners[0]
