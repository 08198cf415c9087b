"""Stars, mutes, subscriptions and notification settings from the command line.

Run as ``bugless`` subprocesses against real services, as cli-bot (a person
scripting as themselves would run them the same way); data is made and
checked through the Python client.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pytest
from api_support import ConnectAs, acl, bugless_cli, cli_json, signed_in

from bugless_api.cli._common import EXIT_OK, emit
from bugless_api.cli.following import _Action, _each, _Outcome, _Row
from bugless_api.cli.notifications import CHANNELS, DIGESTS, EVENTS
from bugless_api.client import BuglessClient
from bugless_api.client._notifications import SETTINGS_ATTEMPTS
from bugless_core.cli import EXIT_CONFLICT, EXIT_ERROR, EXIT_NOT_FOUND, exit_status_of
from bugless_core.errors import Conflict, InvalidArgument, NotFound, Unavailable
from bugless_proto import v1

MISSING = 8_999_999_999_999


@pytest.fixture
async def follower(cli_bot: BuglessClient) -> BuglessClient:
    """cli-bot's client (the conftest's), its notification settings back at the defaults.

    The tests before may have changed them (all run as cli-bot, whom the
    ``bugless`` subprocesses act as); a name of its own, not the conftest's
    ``cli_bot`` shadowed, so a reader finds one definition of each.
    """
    await cli_bot.update_notification_settings()
    return cli_bot


async def _issues(client: BuglessClient, count: int) -> list[v1.Issue]:
    component = await client.create_component(f"Follow-{secrets.token_hex(3)}")
    return [await client.create_issue(f"followed {n}", component.id) for n in range(count)]


@dataclass(frozen=True)
class _SoonHidden:
    """boss's issue, which cli-bot sees (as a viewer of its component) until :meth:`hide`."""

    boss: BuglessClient
    component: v1.Component
    issue: v1.Issue

    async def hide(self) -> None:
        """Take cli-bot off the component's ACL: the issue is hidden from it from now on."""
        self.component.acl = [acl(v1.Principal(user="boss"), v1.Role.ADMIN)]
        await self.boss.update_component(self.component, ["acl"])


async def _soon_hidden(connect_as: ConnectAs) -> _SoonHidden:
    (boss,) = await signed_in(connect_as, "boss")
    viewers = [
        acl(v1.Principal(user="boss"), v1.Role.ADMIN),
        acl(v1.Principal(user="cli-bot"), v1.Role.VIEWER),
    ]
    component = await boss.create_component(f"Closing-{secrets.token_hex(3)}", acl=viewers)
    return _SoonHidden(boss, component, await boss.create_issue("soon hidden", component.id))


def test_the_flags_name_every_event_digest_and_channel() -> None:
    assert tuple(e.name.lower() for e in v1.NotificationEvent if e.value) == EVENTS
    assert tuple(d.name.lower() for d in v1.DigestMode if d.value) == DIGESTS
    assert set(CHANNELS) == {"email", "none"}


async def test_an_issue_failing_after_the_check_is_its_rows_and_the_rest_are_done(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The race the first read cannot close: an issue hidden between the check and its star."""
    calls: list[int] = []
    failures = {2: NotFound("issue 2 not found"), 4: Unavailable("the API went away")}

    async def star(issue_id: int) -> _Row:
        calls.append(issue_id)
        if issue_id in failures:
            raise failures[issue_id]
        return _Row(issue_id, f"t{issue_id}", "starred", True, 1)

    titles = {1: "t1", 2: "t2", 3: "t3", 4: "t4"}
    rows = await _each([1, 2, 3], star, titles)
    outcome = _Outcome(_Action("starred", True), rows)
    assert calls == [1, 2, 3]
    assert [(r.result, r.state) for r in rows] == [
        ("starred", True),
        ("failed: issue 2 not found", None),
        ("starred", True),
    ]
    assert outcome.exit_code == EXIT_NOT_FOUND
    emit(outcome.table(), as_json=False)
    assert capsys.readouterr().out.splitlines()[-1] == "starred 2 of 3"
    emit(outcome.table(), as_json=True)
    failed = json.loads(capsys.readouterr().out)["results"][1]
    assert (failed["starred"], failed["error"]) == (None, "issue 2 not found")

    mixed = _Outcome(_Action("muted", False), await _each([2, 4], star, titles))
    assert mixed.exit_code == EXIT_ERROR  # not all "not found": a server error
    assert _Outcome(_Action("muted", True), await _each([1], star, titles)).exit_code == EXIT_OK


async def test_star_and_unstar_say_per_issue_what_happened(
    served_api: dict[str, str], follower: BuglessClient
) -> None:
    first, second = await _issues(follower, 2)
    ids = [str(first.id), str(second.id)]
    await follower.star_issue(second.id)

    starred = cli_json(served_api, "issue", "star", *ids)
    assert [
        (r["issue_id"], r["result"], r["starred"], r["star_count"]) for r in starred["results"]
    ] == [
        (ids[0], "starred", True, 1),
        (ids[1], "already starred", True, 1),
    ]
    assert starred["results"][0]["title"] == "followed 0"
    found = await follower.search_issues(f"c:{first.component_id} is:starred")
    assert sorted(i.id for i in found.issues) == sorted([first.id, second.id])

    table = bugless_cli(served_api, "issue", "unstar", ids[0], ids[0]).stdout.splitlines()
    assert table[0].split() == ["ID", "RESULT", "STARS", "TITLE"]
    assert table[1].split() == [ids[0], "unstarred", "0", "followed", "0"]
    assert len(table) == 2  # an id given twice is done once
    again = cli_json(served_api, "issue", "unstar", ids[0])
    assert again["results"][0]["result"] == "was not starred"
    assert (await follower.get_issue(first.id)).starred is False


async def test_a_missing_or_hidden_issue_stars_and_mutes_none(
    served_api: dict[str, str], follower: BuglessClient, connect_as: ConnectAs
) -> None:
    (issue,) = await _issues(follower, 1)
    (boss,) = await signed_in(connect_as, "boss")
    secret = await boss.create_component(
        f"Hidden-{secrets.token_hex(3)}", acl=[acl(v1.Principal(user="boss"), v1.Role.ADMIN)]
    )
    hidden = await boss.create_issue("not for cli-bot", secret.id)

    for command, done in (("star", "starred"), ("mute", "muted")):
        refused = bugless_cli(
            served_api, "issue", command, str(issue.id), str(MISSING), str(hidden.id), check=False
        )
        assert refused.returncode == 3, refused.stderr
        assert f"issues {MISSING}, {hidden.id} not found (or not visible to you)" in refused.stderr
        assert f"nothing was {done}" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert (await follower.get_issue(issue.id)).starred is False
    assert (await follower.get_notification_settings()).muted_issue_ids == []

    bad_id = bugless_cli(served_api, "issue", "star", "12x", check=False)
    assert bad_id.returncode == 2
    assert "12x" in bad_id.stderr


async def test_an_issue_starred_then_hidden_can_still_be_unstarred(
    served_api: dict[str, str], follower: BuglessClient, connect_as: ConnectAs
) -> None:
    hidden = await _soon_hidden(connect_as)
    boss, component, issue = hidden.boss, hidden.component, hidden.issue
    (visible,) = await _issues(follower, 1)
    starred = cli_json(served_api, "issue", "star", str(issue.id), str(visible.id))
    assert [r["result"] for r in starred["results"]] == ["starred", "starred"]
    await hidden.hide()
    with pytest.raises(NotFound):
        await follower.get_issue(issue.id)

    unstarred = cli_json(served_api, "issue", "unstar", str(issue.id), str(visible.id))
    assert [
        (r["issue_id"], r["result"], r["starred"], r["title"]) for r in unstarred["results"]
    ] == [
        (str(issue.id), "not starred now", False, "(not visible to you)"),
        (str(visible.id), "unstarred", False, "followed 0"),
    ]
    seen = await boss.get_issue(issue.id)
    assert seen.star_count == 0
    found = await boss.search_issues(f"c:{component.id} star:cli-bot")
    assert found.issues == []
    # The Model answers an id that never existed as it answers a hidden one
    # (it tells nothing of issues one may not see): the same row, nothing changed.
    table = bugless_cli(served_api, "issue", "unstar", str(MISSING)).stdout.splitlines()
    assert table[1].split() == [
        str(MISSING),
        "not",
        "starred",
        "now",
        "(not",
        "visible",
        "to",
        "you)",
    ]
    refused = bugless_cli(served_api, "issue", "star", str(issue.id), check=False)
    assert refused.returncode == EXIT_NOT_FOUND, refused.stderr  # starring still needs sight


async def test_mute_and_unmute_and_show_lists_the_mutes_by_title(
    served_api: dict[str, str], follower: BuglessClient
) -> None:
    first, second = await _issues(follower, 2)
    muted = cli_json(served_api, "issue", "mute", str(first.id), str(second.id))
    assert [(r["result"], r["muted"]) for r in muted["results"]] == [
        ("muted", True),
        ("muted", True),
    ]
    assert sorted((await follower.get_notification_settings()).muted_issue_ids) == sorted(
        [first.id, second.id]
    )
    shown = cli_json(served_api, "notifications", "show")
    assert {(m["issue_id"], m["title"]) for m in shown["muted_issues"]} >= {
        (str(first.id), "followed 0"),
        (str(second.id), "followed 1"),
    }
    text = bugless_cli(served_api, "notifications", "show").stdout
    assert f"{first.id}  followed 0" in text

    unmuted = cli_json(served_api, "issue", "unmute", str(first.id))
    assert unmuted["results"][0]["result"] == "unmuted"
    again = cli_json(served_api, "issue", "unmute", str(first.id))
    assert (again["results"][0]["result"], again["results"][0]["muted"]) == (
        "was not muted",
        False,
    )
    assert (await follower.get_notification_settings()).muted_issue_ids == [second.id]
    await follower.mute_issue(second.id, muted=False)


async def test_an_issue_muted_then_hidden_can_still_be_unmuted(
    served_api: dict[str, str], follower: BuglessClient, connect_as: ConnectAs
) -> None:
    hidden = await _soon_hidden(connect_as)
    issue = hidden.issue
    cli_json(served_api, "issue", "mute", str(issue.id))
    await hidden.hide()

    shown = cli_json(served_api, "notifications", "show")
    assert {"issue_id": str(issue.id), "title": "", "visible": False} in shown["muted_issues"]
    assert "(not visible to you)" in bugless_cli(served_api, "notifications", "show").stdout
    unmuted = cli_json(served_api, "issue", "unmute", str(issue.id))
    assert unmuted["results"][0]["result"] == "unmuted"
    assert (await follower.get_notification_settings()).muted_issue_ids == []
    refused = bugless_cli(served_api, "issue", "unmute", str(issue.id), check=False)
    assert refused.returncode == 3, refused.stderr  # no longer muted, and not visible


async def test_component_subscriptions_by_path_with_and_without_subtree(
    served_api: dict[str, str], follower: BuglessClient
) -> None:
    admin = [acl(v1.Principal(user="cli-bot"), v1.Role.ADMIN)]
    parent = await follower.create_component(f"Subs-{secrets.token_hex(3)}", acl=admin)
    child = await follower.create_component("Child", parent_id=parent.id)

    done = bugless_cli(served_api, "component", "subscribe", parent.path, "--subtree").stdout
    assert done.strip() == f"subscribed to {parent.path} and its subtree"
    subs = (await follower.list_subscriptions()).components
    assert v1.ComponentSubscription(component_id=parent.id, include_subtree=True) in subs
    again = bugless_cli(served_api, "component", "subscribe", parent.path, "--subtree").stdout
    assert again.strip() == f"already subscribed to {parent.path} and its subtree"
    narrowed = cli_json(served_api, "component", "subscribe", str(parent.id))
    assert (narrowed["include_subtree"], narrowed["changed"]) == (False, True)
    cli_json(served_api, "component", "subscribe", child.path)

    shown = cli_json(served_api, "notifications", "show")
    mine = {c["path"]: c["include_subtree"] for c in shown["components"]}
    assert (mine[parent.path], mine[child.path]) == (False, False)
    assert f"{child.path}" in bugless_cli(served_api, "notifications", "show").stdout

    gone = cli_json(served_api, "component", "unsubscribe", parent.path)
    assert (gone["subscribed"], gone["changed"]) == (False, True)
    text = bugless_cli(served_api, "component", "unsubscribe", parent.path).stdout
    assert text.strip() == f"was not subscribed to {parent.path}"
    before = await follower.list_subscriptions()
    unknown = bugless_cli(
        served_api, "component", "subscribe", f"{parent.path}>Nope", "--subtree", check=False
    )
    assert unknown.returncode == 3, unknown.stderr
    assert "Nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert await follower.list_subscriptions() == before


async def test_saved_search_subscriptions_are_for_searches_you_may_read(
    served_api: dict[str, str], follower: BuglessClient, connect_as: ConnectAs
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    mine = await follower.create_saved_search(f"mine-{secrets.token_hex(3)}", "is:open")
    shared = await robot.create_saved_search(
        f"shared-{secrets.token_hex(3)}", "is:open", readers=[v1.Principal(user="cli-bot")]
    )
    private = await robot.create_saved_search(f"private-{secrets.token_hex(3)}", "is:open")

    done = bugless_cli(served_api, "saved-search", "subscribe", str(mine.id)).stdout
    assert done.strip() == f"subscribed to saved search {mine.name!r} ({mine.id})"
    data = cli_json(served_api, "saved-search", "subscribe", str(shared.id))
    assert (data["name"], data["subscribed"], data["changed"]) == (shared.name, True, True)
    shown = cli_json(served_api, "notifications", "show")
    assert {"saved_search_id": str(shared.id), "name": shared.name} in shown["saved_searches"]

    before = await follower.list_subscriptions()
    refused = bugless_cli(served_api, "saved-search", "subscribe", str(private.id), check=False)
    assert refused.returncode == 3, refused.stderr
    assert f"saved search {private.id} not found" in refused.stderr
    assert await follower.list_subscriptions() == before

    gone = cli_json(served_api, "saved-search", "unsubscribe", str(mine.id))
    assert (gone["subscribed"], gone["changed"]) == (False, True)
    assert mine.id not in (await follower.list_subscriptions()).saved_search_ids
    await follower.subscribe_saved_search(shared.id, subscribed=False)


async def test_set_changes_the_named_settings_and_keeps_the_others(
    served_api: dict[str, str], follower: BuglessClient
) -> None:
    await follower.update_notification_settings(
        disabled_events=[v1.NotificationEvent.MENTIONED], digest=v1.DigestMode.DAILY
    )
    changed = cli_json(served_api, "notifications", "set", "--disable", "starred", "--own")
    assert changed["settings"] == {
        "enabled_events": ["assigned", "my_issues", "subscriptions"],
        "disabled_events": ["mentioned", "starred"],
        "channel": "email",
        "digest": "daily",
        "notify_own_changes": True,
    }
    assert changed["changed"] == ["disabled_events", "notify_own_changes"]
    saved = await follower.get_notification_settings()
    assert set(saved.disabled_events) == {
        v1.NotificationEvent.MENTIONED,
        v1.NotificationEvent.STARRED,
    }
    assert (saved.digest, saved.notify_own_changes) == (v1.DigestMode.DAILY, True)

    text = bugless_cli(
        served_api, "notifications", "set", "--enable", "MENTIONED", "--digest", "immediate"
    ).stdout
    assert "changed          disabled_events,digest" in text
    unchanged = cli_json(served_api, "notifications", "set", "--channel", "email")
    assert unchanged["changed"] == []
    off = cli_json(served_api, "notifications", "set", "--channel", "none", "--no-own")
    assert off["settings"]["channel"] == "none"
    assert off["settings"]["disabled_events"] == ["starred"]
    assert "none (notifications off)" in bugless_cli(served_api, "notifications", "show").stdout


async def test_bad_settings_exit_2_and_change_nothing(
    served_api: dict[str, str], follower: BuglessClient
) -> None:
    await follower.update_notification_settings(digest=v1.DigestMode.DAILY)
    before = await follower.get_notification_settings()
    cases = {
        ("--digest", "weekly"): "'weekly' is not one of 'immediate', 'daily'",
        ("--channel", "pigeon"): "'pigeon' is not one of 'email', 'none'",
        ("--disable", "lunch"): "'lunch' is not one of 'assigned'",
        ("--enable", "starred", "--disable", "starred"): "both --enable and --disable starred",
        (): "nothing to change",
    }
    for args, message in cases.items():
        refused = bugless_cli(served_api, "notifications", "set", *args, check=False)
        assert refused.returncode == 2, (args, refused.stderr)
        assert message in refused.stderr, (args, refused.stderr)
    assert await follower.get_notification_settings() == before


async def test_the_client_changes_named_settings_only(connect_as: ConnectAs) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    await robot.update_notification_settings(channel="none", notify_own_changes=True)
    before, after = await robot.change_notification_settings(
        disable_events=["my-issues"], digest="daily"
    )
    assert (before.digest, before.disabled_events) == (v1.DigestMode.IMMEDIATE, [])
    assert after.disabled_events == [v1.NotificationEvent.MY_ISSUES]
    assert (after.channel, after.digest, after.notify_own_changes) == (
        "none",
        v1.DigestMode.DAILY,
        True,
    )
    same_before, same_after = await robot.change_notification_settings(digest="daily")
    assert same_before == same_after == after
    with pytest.raises(InvalidArgument, match="both enabled and disabled: starred") as caught:
        await robot.change_notification_settings(
            enable_events=["starred"], disable_events=["STARRED"]
        )
    assert caught.value.metadata["origin"] == "client"
    await robot.update_notification_settings()


async def test_the_client_reapplies_its_change_to_settings_changed_meanwhile(
    connect_as: ConnectAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change made elsewhere between the client's read and its write is kept.

    The other writer is a second connection of the same person (the web page
    in another tab, say), writing for real right after the client's first
    read: the client's write, made at the version it read, is refused, and
    it reads again and applies only what it was asked to.
    """
    robot, elsewhere = await signed_in(connect_as, "outsider", "outsider")
    await robot.update_notification_settings()
    real_read = robot.get_notification_settings
    reads: list[v1.NotificationSettings] = []

    async def read_then_changed_elsewhere() -> v1.NotificationSettings:
        read = await real_read()
        reads.append(read)
        if len(reads) == 1:
            await elsewhere.update_notification_settings(
                channel="none", digest=v1.DigestMode.DAILY, expected_version=read.version
            )
        return read

    monkeypatch.setattr(robot, "get_notification_settings", read_then_changed_elsewhere)
    before, after = await robot.change_notification_settings(
        disable_events=["starred"], notify_own_changes=True
    )
    assert len(reads) == 2
    assert before == reads[1]
    assert (before.channel, before.digest) == ("none", v1.DigestMode.DAILY)
    assert after.disabled_events == [v1.NotificationEvent.STARRED]
    assert (after.channel, after.digest, after.notify_own_changes) == (
        "none",
        v1.DigestMode.DAILY,
        True,
    )
    assert after.version == before.version + 1
    assert await elsewhere.get_notification_settings() == after
    await elsewhere.update_notification_settings()


async def test_settings_that_keep_changing_fail_the_client_and_keep_the_others_change(
    connect_as: ConnectAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    robot, elsewhere = await signed_in(connect_as, "outsider", "outsider")
    await robot.update_notification_settings()
    real_read = robot.get_notification_settings
    reads = 0

    async def read_then_changed_elsewhere() -> v1.NotificationSettings:
        nonlocal reads
        read = await real_read()
        reads += 1
        await elsewhere.update_notification_settings(
            digest=v1.DigestMode.DAILY if reads % 2 else v1.DigestMode.IMMEDIATE,
            expected_version=read.version,
        )
        return read

    monkeypatch.setattr(robot, "get_notification_settings", read_then_changed_elsewhere)
    with pytest.raises(Conflict) as caught:
        await robot.change_notification_settings(channel="none")
    assert reads == SETTINGS_ATTEMPTS
    assert "changed elsewhere while this change was being applied (3 times)" in str(caught.value)
    assert "nothing of it was saved: run it again" in str(caught.value)
    assert caught.value.reason == "VERSION_CONFLICT"
    assert exit_status_of(caught.value, answered_by_service=True) == EXIT_CONFLICT
    now = await elsewhere.get_notification_settings()
    assert (now.channel, now.digest) == ("email", v1.DigestMode.DAILY)
    await elsewhere.update_notification_settings()
