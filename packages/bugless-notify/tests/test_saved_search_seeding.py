"""Subscribing to a saved search mails what newly matches, not what already did.

The notifier remembers each subscription's matches (``saved_search_matches``)
to tell a new match from an old one. A new subscription started with none,
so the first change to each issue that matched before someone subscribed
was mailed to them as a new match (walk27: bob's subscription to
``componentid:3+ is:open p<=p1`` mailed him about b/285 and b/280 on alice's
bulk edit, though both had matched all along). The notifier now seeds a
subscription when it first sees it, at the start of a round, before it
reads the feed: so a batch is judged only against a seeded subscription,
and a bulk edit in the batch after subscribing mails only what starts
matching (09486aed seeded inside that batch and judged its own issues
against no earlier match, mailing an issue that matched all along).
"""

from __future__ import annotations

import asyncio
import secrets

from notifier_process_support import until_notifier_seeded

from bugless_core.deltas import issue_delta
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import ReceivedMail, SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


def _told(mails: list[ReceivedMail]) -> list[tuple[str, str, str]]:
    return sorted(
        (m.recipients[0].split("@")[0], m.message["X-Bugless-Reason"], m.message["Subject"])
        for m in mails
    )


async def test_issues_that_matched_before_subscribing_are_not_mailed_as_new_matches(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    tag = secrets.token_hex(3)
    ids = {
        name: bugless_stack.add_user(
            f"{name}{tag}", "pw-" + secrets.token_hex(8), email=f"{name}{tag}@example.test"
        )["user_id"]
        for name in ("alice", "sam", "cora")
    }
    alice, sam = v1.Caller(user_id=ids["alice"]), v1.Caller(user_id=ids["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"seed-{tag}")
    )

    async def create(title: str) -> v1.Issue:
        return await model.create_issue(
            v1.CreateIssueRequest(
                caller=alice,
                fields=v1.IssueFields(
                    title=f"{title} {tag}", component_id=component.id, priority=v1.Priority.P1
                ),
                cc=[ids["cora"]],
            )
        )

    old, other = await create("old"), await create("other")
    await smtp_sink.wait_for_async(2, 60)  # cora's mails: both created before sam subscribes
    smtp_sink.clear()
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam, name=f"p1-{tag}", query=f"componentid:{component.id} p:p1"
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    await until_notifier_seeded(bugless_stack, notify_process[1], search.id, sam.user_id)

    new = await create("new")
    mails = await smtp_sink.wait_for_async(2, 60)
    assert _told(mails) == [
        ("cora" + tag, "cc", f"[bugless] b/{new.id}: new {tag}"),
        ("sam" + tag, "saved_search", f"[bugless] b/{new.id}: new {tag}"),
    ], "a real new match is mailed"
    smtp_sink.clear()

    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice, issue_id=old.id, expected_version=old.version, comment="still here"
        )
    )
    await smtp_sink.wait_for_async(1, 60)  # cora's mail: the batch is done
    await asyncio.sleep(3.0)  # sam's would go with it
    assert _told(smtp_sink.mails) == [("cora" + tag, "cc", f"[bugless] b/{old.id}: old {tag}")], (
        "sam is not told of an issue that matched before he subscribed"
    )
    smtp_sink.clear()

    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=other.id,
            expected_version=other.version,
            delta=issue_delta(priority=v1.Priority.P2),
        )
    )
    mails = await smtp_sink.wait_for_async(2, 60)
    assert _told(mails) == [
        ("cora" + tag, "cc", f"[bugless] b/{other.id}: other {tag}"),
        ("sam" + tag, "saved_search", f"[bugless] b/{other.id}: other {tag}"),
    ], "an issue seeded as matching is mailed when it stops matching"


async def test_a_bulk_edit_after_subscribing_mails_only_the_issue_that_starts_matching(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    """One feed change raises two issues to P0: only the one that did not match is news to sam.

    ``kept`` (P1) matched sam's search before he subscribed, ``raised`` (P2)
    did not. The first batch after subscribing is one BatchChangeIssues
    (atomic: one feed change). Before, that batch was the one that first
    saw the subscription: it seeded it with every match beyond the batch and
    judged the batch's own issues against no earlier match, so ``kept``
    was mailed to sam as newly matching too.
    """
    tag = secrets.token_hex(3)
    ids = {
        name: bugless_stack.add_user(
            f"{name}{tag}", "pw-" + secrets.token_hex(8), email=f"{name}{tag}@example.test"
        )["user_id"]
        for name in ("alice", "sam", "cora")
    }
    alice, sam = v1.Caller(user_id=ids["alice"]), v1.Caller(user_id=ids["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"bulk-{tag}")
    )
    issues = [
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=alice,
                fields=v1.IssueFields(
                    title=f"{title} {tag}", component_id=component.id, priority=priority
                ),
                cc=[ids["cora"]],
            )
        )
        for title, priority in (("kept", v1.Priority.P1), ("raised", v1.Priority.P2))
    ]
    kept, raised = issues
    await smtp_sink.wait_for_async(2, 60)  # cora's mails of the creations
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam, name=f"urgent-{tag}", query=f"componentid:{component.id} (p:p0 OR p:p1)"
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    await until_notifier_seeded(bugless_stack, notify_process[1], search.id, sam.user_id)
    smtp_sink.clear()

    await model.batch_change_issues(
        v1.BatchChangeIssuesRequest(
            caller=alice,
            issues=[v1.IssueVersion(issue_id=i.id, expected_version=i.version) for i in issues],
            delta=issue_delta(priority=v1.Priority.P0),
            atomic=True,
        )
    )
    await smtp_sink.wait_for_async(3, 60)  # cora's two and sam's one
    await asyncio.sleep(3.0)  # a mail of kept to sam would go with them
    assert _told(smtp_sink.mails) == sorted(
        [
            ("cora" + tag, "cc", f"[bugless] b/{kept.id}: kept {tag}"),
            ("cora" + tag, "cc", f"[bugless] b/{raised.id}: raised {tag}"),
            ("sam" + tag, "saved_search", f"[bugless] b/{raised.id}: raised {tag}"),
        ]
    ), "only the issue that starts matching is news to sam"
