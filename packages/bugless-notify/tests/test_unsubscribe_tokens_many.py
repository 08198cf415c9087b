"""An issue with more mail recipients than one IssueUnsubscribeTokens call takes gets every link.

The Authenticator signs at most MAX_UNSUBSCRIBE_TARGETS tokens a call; the
notifier asked for all of an issue's recipients in one, so an issue with
more (a large component's subscribers) was refused (INVALID_ARGUMENT) and
its batch failed at every try: no mail for anyone went out after it. Real
Authenticator over mutual TLS, as the notifier and the web reach it.
"""

from __future__ import annotations

from bugless_core.clients import ActingFor, call
from bugless_core.limits import MAX_UNSUBSCRIBE_TARGETS
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import IssueDeliveries
from bugless_proto import v1


async def test_more_recipients_than_one_call_takes_are_asked_in_parts(
    bugless_stack: LocalStack,
) -> None:
    notify = bugless_stack.client_address("auth", identity="notify").channel()
    web = bugless_stack.client_address("auth", identity="web").channel()
    to_model = bugless_stack.client_address("model", identity="notify").channel()
    try:
        auth = v1.AuthenticatorStub(notify)
        model = v1.ModelStub(to_model)
        deliveries = IssueDeliveries(
            model, auth, ActingFor(auth), public_url="https://bugs.example.test",
            notify_authors=False,
        )  # fmt: skip
        people = [f"u_many{n:05d}" for n in range(MAX_UNSUBSCRIBE_TARGETS + 7)]
        tokens = await deliveries._unsubscribe_tokens(42, people)
        assert sorted(tokens) == people
        assert len(set(tokens.values())) == len(people)
        for person in (people[0], people[MAX_UNSUBSCRIBE_TARGETS], people[-1]):
            grant = await call(
                v1.AuthenticatorStub(web).redeem_unsubscribe_token,
                v1.RedeemUnsubscribeTokenRequest(token=tokens[person], check_only=True),
            )
            assert (grant.user_id, grant.issue_id) == (person, 42)
    finally:
        for channel in (notify, web, to_model):
            channel.close()
