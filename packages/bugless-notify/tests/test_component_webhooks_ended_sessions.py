"""An ended session's assertion manages no component webhook, within the Model's bound.

What an operator does when an account may be compromised (``bugless auth user
sessions --end-all``, ``certificates --revoke-all``, which ends the
certificate's sessions) must stop the person's calls to the notifier as it
stops their calls to the Model. The notifier checks the assertion a call
forwards with the Authenticator's published revocations (the same
:class:`~bugless_core.assertions.AssertionVerifier` as the Model, refreshed
every 5 s), and then asks the Model ``GetComponent`` with that assertion
before it writes anything, so a call is refused as soon as either has learnt
of the end: never later than the Model's ``--assertion-refresh-seconds``.

Real processes: the Model, the Authenticator and ``bugless notify serve``;
the sessions are ended by the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from notify_support import SECRET, WebhookReceiver

from bugless_core.clients import ActingFor, acting_as, call
from bugless_core.errors import Unauthenticated
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
#: The Model's and the notifier's refresh of ended sessions (5 s each, the
#: stack's default), plus room for a loaded machine.
BOUND_SECONDS = 5.0 + 10.0


@pytest.fixture
async def notifier(bugless_stack: LocalStack, smtp_sink: SmtpSink) -> AsyncIterator[RunningService]:
    service = await asyncio.to_thread(
        bugless_stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        yield service
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, service)


async def test_an_ended_sessions_assertion_manages_no_webhook_within_the_models_bound(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
) -> None:
    tag = secrets.token_hex(3)
    alice = await asyncio.to_thread(bugless_stack.add_user, f"alice{tag}", "pw-" + tag * 3)
    acl = [v1.AclEntry(principal=v1.Principal(user=alice["user_id"]), role=v1.Role.ADMIN)]
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"ended-hooks-{tag}", acl=acl)
    )
    listing = v1.ListComponentWebhooksRequest(component_id=component.id)
    alice_says = await as_person.assertion(alice["user_id"])
    with acting_as(alice_says):
        before = await call(
            web_to_notifier.add_component_webhook,
            v1.AddComponentWebhookRequest(
                component_id=component.id, url=receiver.url("/before"), secret=SECRET
            ),
        )

    ended = await asyncio.to_thread(
        bugless_stack.run_bugless,
        *("auth", "user", "sessions", f"alice{tag}", "--end-all", "--json"),
    )
    assert json.loads(ended.stdout)["sessions_ended"] >= 1
    started = time.monotonic()
    with acting_as(alice_says):
        refusal: Unauthenticated | None = None
        while refusal is None:
            assert time.monotonic() - started < BOUND_SECONDS, "still managing webhooks"
            try:
                await call(web_to_notifier.list_component_webhooks, listing)
            except Unauthenticated as exc:
                refusal = exc
            else:
                await asyncio.sleep(0.2)
        assert refusal.reason == "SESSION_ENDED", refusal
        with pytest.raises(Unauthenticated) as refused:
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=component.id, url=receiver.url("/after"), secret=SECRET
                ),
            )
        assert refused.value.reason == "SESSION_ENDED"
        for change in (
            lambda: call(
                web_to_notifier.set_component_webhook_enabled,
                v1.SetComponentWebhookEnabledRequest(
                    component_id=component.id, name=before.name, enabled=False
                ),
            ),
            lambda: call(
                web_to_notifier.delete_component_webhook,
                v1.DeleteComponentWebhookRequest(component_id=component.id, name=before.name),
            ),
        ):
            with pytest.raises(Unauthenticated):
                await change()

    # Nothing was written: the account is not disabled, so a new session of
    # alice's sees the one endpoint, still enabled.
    as_person.forget(alice["user_id"])
    with acting_as(await as_person.assertion(alice["user_id"])):
        shown = await call(web_to_notifier.list_component_webhooks, listing)
    assert [(w.name, w.url_origin, w.enabled) for w in shown.webhooks] == [
        (before.name, before.url_origin, True)
    ]
