"""One-click unsubscribe tokens: signed per person and issue, redeemed for that person only.

A real Authenticator over gRPC on a real database.
"""

from __future__ import annotations

import base64
import json

from auth_support import AuthServer, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.identity_checks import UNSUBSCRIBE_ASSERTION_TTL_SECONDS
from bugless_proto import v1


async def _tokens(auth: AuthServer, *targets: tuple[str, int]) -> list[str]:
    reply = await auth.stub.issue_unsubscribe_tokens(
        v1.IssueUnsubscribeTokensRequest(
            targets=[v1.UnsubscribeTarget(user_id=u, issue_id=i) for u, i in targets]
        )
    )
    return list(reply.tokens)


async def test_a_token_grants_its_person_and_issue_and_an_assertion_only_when_redeemed(
    auth: AuthServer,
) -> None:
    """check_only says what a link would mute (the confirm page) and makes no session.

    Redeemed, the assertion is scoped to muting that one issue, lives a
    minute, and records no session either.
    """
    ann = await auth.add_user(unique("ann"))
    bob = await auth.add_user(unique("bob"))
    for_ann, for_bob = await _tokens(auth, (ann.user_id, 7), (bob.user_id, 8))
    assert for_ann != for_bob

    checked = await auth.stub.redeem_unsubscribe_token(
        v1.RedeemUnsubscribeTokenRequest(token=for_ann, check_only=True)
    )
    assert (checked.user_id, checked.issue_id) == (ann.user_id, 7)
    assert checked.identity is None
    assert await auth.service.sessions.count_live(ann.user_id) == 0

    redeemed = await auth.stub.redeem_unsubscribe_token(
        v1.RedeemUnsubscribeTokenRequest(token=for_bob)
    )
    assert (redeemed.user_id, redeemed.issue_id) == (bob.user_id, 8)
    assert redeemed.identity is not None
    assert redeemed.identity.user is not None
    assert redeemed.identity.user.user_id == bob.user_id
    assert redeemed.identity.assertion
    claims = json.loads(base64.urlsafe_b64decode(redeemed.identity.assertion.split(".")[1] + "=="))
    assert claims["scp"] == {"method": "SetIssueMute", "issue_id": 8, "muted": True}
    assert claims["sub"] == bob.user_id
    assert claims["sid"] == ""
    assert claims["exp"] - claims["iat"] == UNSUBSCRIBE_ASSERTION_TTL_SECONDS
    assert await auth.service.sessions.count_live(bob.user_id) == 0


async def test_a_forged_altered_foreign_or_expired_token_is_refused_saying_why(
    auth: AuthServer,
) -> None:
    ann = await auth.add_user(unique("ann"))
    (token,) = await _tokens(auth, (ann.user_id, 7))
    head, claims, signature = token.split(".")
    altered = f"{head}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    session_token = (await auth.sign_in(ann.username)).token
    for bad in (altered, "not-a-token", session_token):
        error = await expect_status(
            auth.stub.redeem_unsubscribe_token(v1.RedeemUnsubscribeTokenRequest(token=bad)),
            Status.INVALID_ARGUMENT,
        )
        assert "was not issued by this bugless" in str(error.message)
        assert "nothing was muted" in str(error.message)
    expired = auth.service.unsubscribe_tokens_signer.issue(ann.user_id, 7, ttl_seconds=-60)
    error = await expect_status(
        auth.stub.redeem_unsubscribe_token(v1.RedeemUnsubscribeTokenRequest(token=expired)),
        Status.INVALID_ARGUMENT,
    )
    assert "this unsubscribe link expired on" in str(error.message)


async def test_a_disabled_person_gets_no_assertion_from_their_link(auth: AuthServer) -> None:
    ann = await auth.add_user(unique("ann"))
    (token,) = await _tokens(auth, (ann.user_id, 7))
    await set_disabled(auth.store, ann.username)
    error = await expect_status(
        auth.stub.redeem_unsubscribe_token(v1.RedeemUnsubscribeTokenRequest(token=token)),
        Status.PERMISSION_DENIED,
    )
    assert "disabled" in str(error.message)


async def test_bad_requests_are_refused_naming_the_field(auth: AuthServer) -> None:
    ann = await auth.add_user(unique("ann"))
    for targets, field in (
        ([v1.UnsubscribeTarget(user_id="", issue_id=1)], "targets[0].user_id"),
        (
            [
                v1.UnsubscribeTarget(user_id=ann.user_id, issue_id=1),
                v1.UnsubscribeTarget(user_id=ann.user_id, issue_id=0),
            ],
            "targets[1].issue_id",
        ),
    ):
        error = await expect_status(
            auth.stub.issue_unsubscribe_tokens(v1.IssueUnsubscribeTokensRequest(targets=targets)),
            Status.INVALID_ARGUMENT,
        )
        assert str(error.message).startswith(field)
    error = await expect_status(
        auth.stub.redeem_unsubscribe_token(v1.RedeemUnsubscribeTokenRequest(token="")),
        Status.INVALID_ARGUMENT,
    )
    assert str(error.message) == "token: required"
