"""A rolling restart: calls a draining replica refuses are retried, writes included.

Two real API frontends take turns on one port, as a pod and its replacement
do behind a Service: the old one drains while a client's connection is still
open to it, the new one listens on the same port. The draining replica answers
new calls on that connection with UNAVAILABLE tagged ``DRAINING`` (it did not
run them), so the client sends even a call that is not idempotent (a
comment) again, down a new connection, and it is applied exactly once, by the
new replica, while the old one is still finishing its calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

from api_support import Bots, ConnectAs, api_settings
from prometheus_client import CollectorRegistry

from bugless_api.client import RetryPolicy
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings
from bugless_testing.events import EventStream


def _handled(registry: CollectorRegistry, method: str, code: str) -> float:
    value = registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": "bugless.v1.Issues", "grpc_method": method, "grpc_code": code},
    )
    return value or 0.0


async def test_a_comment_refused_by_a_draining_replica_is_sent_again_and_made_once(
    bots: Bots, connect_as: ConnectAs, api: RunningApi
) -> None:
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
    settings = dataclasses.replace(
        settings, grpc=dataclasses.replace(settings.grpc, drain_seconds=0.0, grace_seconds=15.0)
    )
    old_metrics, new_metrics = CollectorRegistry(), CollectorRegistry()
    old = await start_api(settings, metrics_registry=old_metrics)
    new: RunningApi | None = None
    try:
        port = old.port
        robot = connect_as(
            "robot", port=port, retry=RetryPolicy(attempts=40, initial_backoff=0.1, max_backoff=0.2)
        )
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("rolling restart", component.id)
        # A long call in progress keeps the old replica draining (refusing)
        # for its whole grace period instead of closing at once.
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        assert old.runner.in_flight >= 1

        draining = asyncio.create_task(old.runner.drain())
        await asyncio.sleep(0.2)  # listener closed; the connection stays, refusing
        new = await start_api(
            dataclasses.replace(settings, grpc=dataclasses.replace(settings.grpc, port=port)),
            metrics_registry=new_metrics,
        )
        comment = f"said once {secrets.token_hex(4)}"
        changed = await robot.comment(issue.id, comment, expected_version=issue.version)

        # Refused once by the old replica, then sent down a new connection to
        # the new one, while the old one still finishes its watch.
        assert _handled(old_metrics, "ChangeIssue", "UNAVAILABLE") == 1
        assert _handled(old_metrics, "ChangeIssue", "OK") == 0
        assert _handled(new_metrics, "ChangeIssue", "OK") == 1
        assert not draining.done()
        await watch.close()
        assert changed.issue is not None
        assert changed.issue.version == issue.version + 1
        history = await connect_as("robot").list_history(issue.id)
        assert [e.comment for e in history.entries if e.comment == comment] == [comment]
        assert history.entries[-1].author == "robot"
    finally:
        await old.close()
        if new is not None:
            await new.close()
