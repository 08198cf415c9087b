"""``bugless notify serve`` as a real process on the real Model and Authenticator.

The Model, the Authenticator and the notifier run as subprocesses through the
stack library (mutual TLS between them); mail goes to an aiosmtpd sink. The
test makes changes the way the web frontend does (its certificate, a caller
per person) and reads what arrives.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta

from notifier_process_support import People, addr, recipients, settle, until_notifier_seeded

from bugless_core.deltas import issue_delta
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_every_recipient_rule_settings_and_acls(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"notify-{secrets.token_hex(4)}")
    )
    hidden = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"hidden-{secrets.token_hex(4)}",
            acl=[
                v1.AclEntry(principal=v1.Principal(user=people.ids["alice"]), role=v1.Role.EDITOR)
            ],
        )
    )
    await model.set_component_subscription(
        v1.SetComponentSubscriptionRequest(
            caller=people.caller("eve"), component_id=component.id, subscribed=True
        )
    )
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=people.caller("mallory"),
            settings=v1.NotificationSettings(disabled_events=[v1.NotificationEvent.MENTIONED]),
        )
    )
    tag = people.ids["_tag"]
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(
                title="Disk full on build hosts",
                component_id=component.id,
                assignee=people.ids["bob"],
                verifier=people.ids["vic"],
            ),
            cc=[people.ids["carol"]],
            description=f"@frank{tag} and @mallory{tag}, please look (mail me at x@frank{tag})",
        )
    )
    created = await settle(smtp_sink, 5)
    assert recipients(created) == Counter(
        addr(people, n) for n in ("bob", "vic", "carol", "frank", "eve")
    ), "assignee, verifier, CC, mentioned, component subscriber; not the author, not mallory"
    reasons = {m.recipients[0]: m.message["X-Bugless-Reason"] for m in created}
    assert reasons[addr(people, "frank")] == "mentioned"
    assert reasons[addr(people, "eve")] == "component"
    first = created[0].message
    assert "Disk full on build hosts" in first["Subject"]
    body = first.get_body(("plain",))
    assert body is not None
    assert f"https://bugs.example.test/issues/{issue.id}" in body.get_content()

    smtp_sink.clear()
    await model.star_issue(
        v1.StarIssueRequest(caller=people.caller("dave"), issue_id=issue.id, starred=True)
    )
    await model.set_issue_mute(
        v1.SetIssueMuteRequest(caller=people.caller("carol"), issue_id=issue.id, muted=True)
    )
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=people.caller("vic"),
            settings=v1.NotificationSettings(disabled_events=[v1.NotificationEvent.MY_ISSUES]),
        )
    )
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version,
            comment="on it",
        )
    )
    commented = await settle(smtp_sink, 3)
    assert recipients(commented) == Counter(addr(people, n) for n in ("alice", "dave", "eve")), (
        "reporter, starrer and subscriber; not bob (author), carol (muted), vic (event off)"
    )

    smtp_sink.clear()
    await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(
                title="secret", component_id=hidden.id, assignee=people.ids["bob"]
            ),
            cc=[people.ids["carol"]],
            description=f"@frank{tag} look",
        )
    )
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("alice"),
            issue_id=issue.id,
            expected_version=issue.version + 1,
            comment="marker",
        )
    )
    after = await settle(smtp_sink, 3)
    assert recipients(after) == Counter(addr(people, n) for n in ("dave", "eve", "bob")), (
        "nobody hears of the hidden issue; the marker comment reaches bob, dave, eve"
    )
    assert all("secret" not in m.message["Subject"] for m in after)


async def test_people_a_change_removes_are_told_they_were_removed(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """A former assignee, verifier or CC is not told "you are the assignee".

    (vic is not the verifier here: an earlier test turns his MY_ISSUES off.)
    """
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"removed-{secrets.token_hex(4)}")
    )
    ids = people.ids
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(
                title="Flaky deploys",
                component_id=component.id,
                assignee=ids["bob"],
                verifier=ids["mallory"],
            ),
            cc=[ids["carol"], ids["dave"]],
        )
    )
    await settle(smtp_sink, 4)
    smtp_sink.clear()
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("alice"),
            issue_id=issue.id,
            expected_version=issue.version,
            delta=issue_delta(assignee=ids["frank"], verifier="", cc_remove=[ids["carol"]]),
        )
    )
    mails = await settle(smtp_sink, 5)
    why = {}
    for mail in mails:
        body = mail.message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        why[mail.recipients[0]] = (
            mail.message["X-Bugless-Reason"],
            text[text.index("You receive this because") :].splitlines()[0],
        )
    assert why == {
        addr(people, "frank"): ("assignee", "You receive this because you are the assignee."),
        addr(people, "bob"): (
            "assignee",
            "You receive this because you were the assignee until this change.",
        ),
        addr(people, "mallory"): (
            "verifier",
            "You receive this because you were the verifier until this change.",
        ),
        addr(people, "carol"): ("cc", "You receive this because this change removed you from CC."),
        addr(people, "dave"): ("cc", "You receive this because you are on CC."),
    }


async def test_what_the_change_did_to_a_person_is_their_reason_before_a_role_they_held(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """The reporter @mentioned hears "mentioned"; the reporter made verifier, "verifier".

    Before, the first standing role won: both mails said only "you reported
    this issue", and neither the mention nor the verifier duty was named.
    """
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"reasons-{secrets.token_hex(4)}")
    )
    ids, tag = people.ids, people.ids["_tag"]
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(title="Reasons", component_id=component.id, assignee=ids["bob"]),
            cc=[ids["dave"]],
        )
    )
    await settle(smtp_sink, 2)
    smtp_sink.clear()

    async def reasons() -> dict[str, tuple[str, str]]:
        mails = await settle(smtp_sink, 2)
        smtp_sink.clear()
        why = {}
        for mail in mails:
            body = mail.message.get_body(("plain",))
            assert body is not None
            text = body.get_content()
            line = text[text.index("You receive this because") :].splitlines()[0]
            why[mail.recipients[0]] = (mail.message["X-Bugless-Reason"], line)
        return why

    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version,
            comment=f"@alice{tag} can you reproduce?",
        )
    )
    assert await reasons() == {
        addr(people, "alice"): ("mentioned", "You receive this because you were mentioned."),
        addr(people, "dave"): ("cc", "You receive this because you are on CC."),
    }
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version + 1,
            delta=issue_delta(verifier=ids["alice"]),
        )
    )
    assert await reasons() == {
        addr(people, "alice"): ("verifier", "You receive this because you are the verifier."),
        addr(people, "dave"): ("cc", "You receive this because you are on CC."),
    }
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version + 2,
            comment="fixed",
        )
    )
    # Once held, a role ranks as before: the reporter is told as the reporter.
    assert await reasons() == {
        addr(people, "alice"): ("reporter", "You receive this because you reported this issue."),
        addr(people, "dave"): ("cc", "You receive this because you are on CC."),
    }


async def test_a_move_names_the_component_left_by_its_path(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """ "Component: Old>Path → New>Path", not "component 3 → New>Path".

    The notifier checked its recipients with a views request naming no entry,
    so the Model's answer held the issue's (new) component only.
    """
    tag = secrets.token_hex(4)
    left = await model.create_component(v1.CreateComponentRequest(caller=ADMIN, name=f"left-{tag}"))
    went = await model.create_component(v1.CreateComponentRequest(caller=ADMIN, name=f"went-{tag}"))
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(
                title="Moves house", component_id=left.id, assignee=people.ids["bob"]
            ),
        )
    )
    await settle(smtp_sink, 1)
    smtp_sink.clear()
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("alice"),
            issue_id=issue.id,
            expected_version=issue.version,
            delta=issue_delta(component_id=went.id),
        )
    )
    mails = await settle(smtp_sink, 1)
    assert [list(m.recipients) for m in mails] == [[addr(people, "bob")]]
    body = mails[0].message.get_body(("plain",))
    assert body is not None
    assert f"Component: {left.path} \u2192 {went.path}" in body.get_content()


async def test_a_subscriber_of_an_ancestor_is_told_which_component_they_subscribed_to(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """ "you subscribed to Infra (this issue is in Infra>Net)", not "to its component".

    Eve subscribed to the parent with its subtree, frank to the issue's own
    component: the Model says which subscription reaches each of them.
    """
    tag = secrets.token_hex(4)
    parent = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"infra-{tag}")
    )
    child = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"net-{tag}", parent_id=parent.id)
    )
    for name, component, subtree in (("eve", parent, True), ("frank", child, False)):
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=people.caller(name),
                component_id=component.id,
                subscribed=True,
                include_subtree=subtree,
            )
        )
    await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(title="Routing loop", component_id=child.id),
        )
    )
    mails = await settle(smtp_sink, 2)
    why = {}
    for mail in mails:
        body = mail.message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        why[mail.recipients[0]] = text[text.index("You receive this because") :].splitlines()[0]
    assert why == {
        addr(people, "eve"): (
            f"You receive this because you subscribed to {parent.path} "
            f"(this issue is in {child.path})."
        ),
        addr(people, "frank"): (
            f"You receive this because you subscribed to its component, {child.path}."
        ),
    }


async def test_an_imported_history_mails_nobody_and_later_changes_mail_as_usual(
    model: v1.ModelStub,
    bugless_stack: LocalStack,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """An import writes years of another tracker's history: none of it is news to anyone.

    Before, every imported creation, comment and attachment entry mailed its
    assignee, reporter, CCs and the people its old text @mentions, as if made
    now: a team moving in got one mail per imported entry (walk26: six for
    three Trac tickets). The first change made in bugless afterwards mails
    as any change does.
    """
    tag = secrets.token_hex(4)
    channel = bugless_stack.client_address("model", identity="import").channel()
    try:
        importer = bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
        caller = v1.Caller(user_id="test-admin", admin=True, import_issues=True)
        component = await importer.create_component(
            v1.CreateComponentRequest(caller=caller, name=f"moved-in-{tag}")
        )
        then = datetime(2023, 3, 1, 9, 0, tzinfo=UTC)
        imported = await importer.import_issue(
            v1.ImportIssueRequest(
                caller=caller,
                external_id=f"trac:{tag}",
                fields=v1.IssueFields(
                    title="Crash on save", component_id=component.id, assignee=people.ids["bob"]
                ),
                reporter=people.ids["alice"],
                description="Saving crashes.",
                cc=[people.ids["carol"]],
                created_at=then,
                history=[
                    v1.ImportedEntry(
                        author=people.ids["bob"],
                        created_at=then + timedelta(hours=2),
                        comment=f"Reproduced. @dave{people.ids['_tag']} knows this code.",
                    )
                ],
            )
        )
    finally:
        channel.close()
    assert imported.created
    assert imported.issue is not None
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("alice"),
            issue_id=imported.issue.id,
            expected_version=imported.issue.version,
            delta=issue_delta(),
            comment="Still happens after the move.",
        )
    )

    mails = await settle(smtp_sink, 2)
    assert recipients(mails) == Counter({addr(people, "bob"): 1, addr(people, "carol"): 1})
    for mail in mails:
        body = mail.message.get_body(("plain",))
        assert body is not None
        assert "Still happens after the move." in body.get_content()


async def test_a_mention_of_a_name_in_any_script_notifies_that_person(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """ "@O\u0308LAF…" (decomposed, upper case) reaches "Ölaf…"; "@t…josé" reaches "t…josé".

    Before, the mention grammar was ASCII: "@Ölaf" mentioned nobody, and
    "@t…josé" mentioned "t…jos", a user of its own here, who must hear nothing.
    Likewise "@d…._0_.0" reaches "d…._0_.0", not "d…": Markdown's emphasis
    ("_0_" beside ".") cut the name there before.
    """
    tag = secrets.token_hex(3)
    users = (
        (f"Ölaf{tag}", "olaf"),
        (f"t{tag}josé", "jose"),
        (f"t{tag}jos", "jos"),
        (f"d{tag}._0_.0", "dot"),
        (f"d{tag}", "cut"),
    )
    for name, mail in users:
        bugless_stack.add_user(
            name, "pw-" + secrets.token_hex(8), email=f"{mail}{tag}@example.test"
        )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"mention-{secrets.token_hex(4)}")
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=people.caller("alice"),
            fields=v1.IssueFields(title="Umlauts in names", component_id=component.id),
        )
    )
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=people.caller("alice"),
            issue_id=issue.id,
            expected_version=issue.version,
            comment=(
                f"@O\u0308LAF{tag}, see this (and @t{tag}josé), for @d{tag}._0_.0. "
                f"Not mail: x@t{tag}jos.x"
            ),
        )
    )
    mails = await settle(smtp_sink, 3)
    assert recipients(mails) == Counter(
        [f"olaf{tag}@example.test", f"jose{tag}@example.test", f"dot{tag}@example.test"]
    )
    assert {m.message["X-Bugless-Reason"] for m in mails} == {"mentioned"}


async def test_group_members_and_saved_search_subscribers_are_checked_as_themselves(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """The recipient check uses the recipient's real groups (their identity assertion).

    Gina and Sam see the component only through their group (the
    Authenticator's local store says so; nothing the notifier names): Gina,
    on CC, gets the mails; Sam hears when the issue newly matches his saved
    search (run as him). Otto, in no group, is on CC and subscribes to the
    same search: he gets nothing (the issue's author, Alice, neither).
    """
    tag = secrets.token_hex(3)
    team = f"team{tag}"
    ids = {}
    for name, groups in (("alice", ()), ("gina", (team,)), ("sam", (team,)), ("otto", ())):
        ids[name] = bugless_stack.add_user(
            f"{name}{tag}", "pw-" + secrets.token_hex(8), groups=groups,
            email=f"{name}{tag}@example.test",
        )["user_id"]  # fmt: skip
    alice, otto = v1.Caller(user_id=ids["alice"]), v1.Caller(user_id=ids["otto"])
    component = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"team-{tag}",
            acl=[
                v1.AclEntry(principal=v1.Principal(user=ids["alice"]), role=v1.Role.EDITOR),
                v1.AclEntry(principal=v1.Principal(group=team), role=v1.Role.VIEWER),
            ],
        )
    )
    for who in (v1.Caller(user_id=ids["sam"]), otto):
        search = await model.create_saved_search(
            # Its title word scopes the search to this test's issue: a search
            # that matched every P0 issue mailed its subscriber about other
            # tests' issues (test_saved_search_refusals, ci84).
            v1.CreateSavedSearchRequest(
                caller=who, name=f"p0-{tag}", query=f"p:p0 is:open title:team{tag}"
            )
        )
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=who, saved_search_id=search.id, subscribed=True
            )
        )
        await until_notifier_seeded(bugless_stack, notify_process[1], search.id, who.user_id)
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=alice,
            fields=v1.IssueFields(title=f"team{tag} only", component_id=component.id),
            cc=[ids["gina"], ids["otto"]],
        )
    )
    created = await settle(smtp_sink, 1)
    assert recipients(created) == Counter([f"gina{tag}@example.test"]), (
        "gina via her group; not otto"
    )
    assert created[0].message["X-Bugless-Reason"] == "cc"

    smtp_sink.clear()
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=issue_delta(priority=v1.Priority.P0),
        )
    )
    mails = await settle(smtp_sink, 2)
    reasons = {m.recipients[0]: m.message["X-Bugless-Reason"] for m in mails}
    assert len(mails) == 2
    assert reasons == {
        f"gina{tag}@example.test": "cc",
        f"sam{tag}@example.test": "saved_search",
    }, "P0 reaches gina (CC) and sam (newly matching, as himself); otto nothing"
