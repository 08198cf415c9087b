"""A saved search the Model refuses as written keeps its matches: no false "stopped matching".

Since 3b220c9c the Model refuses a search naming a hotlist or component the
caller may not see (INVALID_ARGUMENT) instead of matching nothing. A
subscription's query can become such a search after it was saved, through
no act of its subscriber: a hotlist's owner deletes it or makes it private.
The notifier then cannot tell which issues the query matches; it must not
take the refusal for "matches nothing" and mail the subscriber that each
issue it matched stopped matching.
"""

from __future__ import annotations

import asyncio
import secrets

from notifier_process_support import until_notifier_seeded

from bugless_core.deltas import issue_delta
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_hotlist_made_private_under_a_subscription_tells_no_one_it_stopped_matching(
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
        for name in ("alice", "hank", "sam", "cora")
    }
    alice, hank, sam = (v1.Caller(user_id=ids[n]) for n in ("alice", "hank", "sam"))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"open-{tag}")
    )
    hotlist = await model.create_hotlist(v1.CreateHotlistRequest(caller=hank, name=f"h-{tag}"))
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam,
            name=f"urgent-{tag}",
            query=f"componentid:{component.id} (p:p0 OR hotlistid:{hotlist.id})",
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    await until_notifier_seeded(bugless_stack, notify_process[1], search.id, sam.user_id)
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=alice,
            fields=v1.IssueFields(title=f"watched {tag}", component_id=component.id),
            cc=[ids["cora"]],
        )
    )
    await smtp_sink.wait_for_async(1, 60)  # cora's mail of the creation
    smtp_sink.clear()
    raised = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=issue_delta(priority=v1.Priority.P0),
        )
    )
    # cora's mail and sam's, in either order (concurrent workers). Only this
    # test's issues match sam's search, and every saved search of the
    # package's tests names its own component: a search that matched any
    # P0 issue (test_notifier_service's ``p:p0 is:open``, ci84) mailed its
    # subscriber about this issue too, so the two mails were not always these.
    mails = await smtp_sink.wait_for_async(2, 60)
    reasons = {m.recipients[0]: m.message["X-Bugless-Reason"] for m in mails}
    assert reasons == {
        f"cora{tag}@example.test": "cc",
        f"sam{tag}@example.test": "saved_search",
    }, "the issue newly matches sam's search"

    # The hotlist's owner makes it private: sam's query names one he may not see.
    hotlist.private = True
    await model.update_hotlist(
        v1.UpdateHotlistRequest(
            caller=hank, hotlist=hotlist, update_mask=FieldMask(paths=["private"])
        )
    )
    smtp_sink.clear()
    assert raised.issue is not None
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=issue.id,
            expected_version=raised.issue.version,
            comment="still urgent",
        )
    )
    await smtp_sink.wait_for_async(1, 60)  # cora's mail of the comment: the batch is done
    await asyncio.sleep(3.0)  # sam's would go with it (one entry), or just after
    told = sorted(r for m in smtp_sink.mails for r in m.recipients)
    assert told == [f"cora{tag}@example.test"], "sam is not told the issue stopped matching"
