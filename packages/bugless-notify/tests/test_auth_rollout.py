"""A rolling restart of the Authenticator under a running notifier loses and repeats no mail.

Two real Authenticator replicas (``bugless auth serve`` on the stack's
database and keys) share one port with ``--reuse-port``, as a pod and its
replacement share a Service during a rollout with ``maxSurge: 1``. The
notifier (in this process, so its log and its queue can be read) has its one
connection to the Authenticator open to the old replica when that drains. A
``GetUsers`` call of the test's own, whose request never finishes arriving,
keeps the old replica in its grace period: it no longer listens, and refuses
every new call on the notifier's open connection with UNAVAILABLE tagged
``DRAINING`` (the notifier here does not say it honours a graceful GOAWAY,
``without_goaway``: a notifier from before, or a call that raced the GOAWAY,
which would have sent its calls elsewhere unrefused).

The people look-ups of the next change (``GetUsers``, and the recipients'
``IssueAssertion``) must go to the new replica at once (sent again on a new
connection, ``bugless_core.failover``): every mail of the change arrives once,
on its first attempt, and none of the first change's is sent again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality
from notify_support import (
    assert_moved_off_a_draining_replica,
    old_replica,
    replace_and_drain,
    stack_notifier_settings,
    until,
    until_held,
)
from prometheus_client import CollectorRegistry

from bugless_dev.stack import LocalStack, RunningService
from bugless_notify.queue import DeliveryState
from bugless_notify.service import start_notifier
from bugless_proto import v1
from bugless_testing.goaway import without_goaway
from bugless_testing.metrics import metric_total
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
HANDLED = "grpc_server_handled_total"
GET_USERS = "/bugless.v1.Authenticator/GetUsers"


@pytest.fixture
async def old_auth(bugless_stack: LocalStack) -> AsyncIterator[RunningService]:
    """The replica the notifier first connects to; the test drains it."""
    async with old_replica(bugless_stack, "auth") as replica:
        yield replica


async def _hold(channel: Channel, release: asyncio.Event) -> None:
    """A ``GetUsers`` whose request is sent no further than its headers until ``release``."""
    async with channel.request(
        GET_USERS, Cardinality.UNARY_UNARY, v1.GetUsersRequest, v1.UsersResponse
    ) as stream:
        await stream.send_request()
        await release.wait()


async def test_a_draining_authenticator_costs_the_notifier_no_lost_or_repeated_mail(
    *,
    monkeypatch: pytest.MonkeyPatch,
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    old_auth: RunningService,
    notify_database: str,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    without_goaway(monkeypatch)
    tag = secrets.token_hex(3)
    ids: dict[str, str] = {}
    for name in ("alice", "bob"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@x.test"
        )
        ids[name] = str(created["user_id"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"auth-rollout-{tag}")
    )

    async def change(title: str, *cc: str) -> v1.Issue:
        return await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"{title} {tag}", component_id=component.id),
                cc=[ids[name] for name in cc],
            )
        )

    def mails() -> Counter[tuple[str, str]]:
        """(person, the change's title) of each mail to this test's people, counted."""
        return Counter(
            (recipient.removesuffix(f"{tag}@x.test"), title)
            for mail in smtp_sink.mails
            for recipient in mail.recipients
            if recipient.endswith(f"{tag}@x.test")
            for title in ("Before", "During")
            if f"{title} the rollout {tag}" in str(mail.message["Subject"])
        )

    settings = stack_notifier_settings(
        bugless_stack,
        database_url=notify_database,
        schema=f"notify_auth_rollout_{tag}",
        smtp_port=smtp_sink.port,
        auth_port=old_auth.port,
    )
    new_auth: RunningService | None = None
    release = asyncio.Event()
    held: asyncio.Task[None] | None = None
    hold_channel = dataclasses.replace(
        bugless_stack.client_address("auth", "web"), port=old_auth.port
    ).channel()
    with caplog.at_level(logging.INFO):
        notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
        try:
            # The notifier's connection is open to the old replica, the only one yet.
            await change("Before the rollout", "alice")
            await until(lambda: sum(mails().values()) >= 1, "the first mail")
            assert await metric_total(old_auth.metrics_port, HANDLED, grpc_method="GetUsers") >= 1

            held = asyncio.create_task(_hold(hold_channel, release))
            await until_held(old_auth, "GetUsers", held)
            new_auth = await replace_and_drain(bugless_stack, old_auth, "auth")

            # The next change's look-ups meet the draining replica and move on.
            await change("During the rollout", "alice", "bob")
            await until(lambda: sum(mails().values()) >= 3, "the second change's mails")
            await asyncio.sleep(2.0)  # for any mail that should not come

            assert mails() == Counter(
                {("alice", "Before"): 1, ("alice", "During"): 1, ("bob", "During"): 1}
            ), "a mail lost or sent twice"
            async with notifier.pool.acquire() as conn:
                counts = await notifier.worker.queue.counts(conn)
                attempts = await conn.fetch(f"SELECT attempts FROM {settings.schema}.deliveries")
            assert counts[DeliveryState.DELIVERED] == 3
            assert (counts[DeliveryState.PENDING], counts[DeliveryState.DEAD]) == (0, 0)
            assert [r["attempts"] for r in attempts] == [1, 1, 1]

            assert await metric_total(old_auth.metrics_port, HANDLED, grpc_code="UNAVAILABLE") >= 1
            assert (
                await metric_total(
                    new_auth.metrics_port, HANDLED, grpc_method="GetUsers", grpc_code="OK"
                )
                >= 1
            ), "the look-ups did not reach the new replica"
            assert not old_auth.process.exited, "the old replica closed too early"
        finally:
            release.set()
            if held is not None:
                held.cancel()
                await asyncio.gather(held, return_exceptions=True)
            hold_channel.close()
            await notifier.runner.close()
            await notifier.close()
            if new_auth is not None:
                await asyncio.to_thread(bugless_stack.stop_service, new_auth)

    assert_moved_off_a_draining_replica(caplog.records)
