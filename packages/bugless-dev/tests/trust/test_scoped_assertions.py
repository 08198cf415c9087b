"""A one-click unsubscribe's assertion is good for that one mute, on a real stack.

The Model and the Authenticator run as subprocesses with the stack's
certificates; the token is signed for the notifier and redeemed by the web,
as for a mail's link. The person is an administrator, so every refusal here
is the scope's, not their permissions'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.assertions import METADATA_KEY
from bugless_core.model.servicer import ModelServicer
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack
from bugless_proto import v1

PASSWORD = "correct horse battery staple"


@dataclasses.dataclass
class Mute:
    """An administrator, two issues, and a scoped assertion muting the first for them."""

    admin_id: str
    issue: v1.Issue
    other: v1.Issue
    assertion: str


@pytest.fixture
async def channels() -> AsyncIterator[list[Channel]]:
    opened: list[Channel] = []
    yield opened
    for channel in opened:
        channel.close()


def _as(stack: LocalStack, kind: str, identity: str, opened: list[Channel]) -> Channel:
    channel = stack.client_address(kind, identity).channel()
    opened.append(channel)
    return channel


@pytest.fixture
async def mute(bugless_stack: LocalStack, channels: list[Channel]) -> Mute:
    admin = bugless_stack.add_user(f"scope-admin-{secrets.token_hex(3)}", PASSWORD, admin=True)
    caller = v1.Caller(user_id=admin["user_id"])
    model = bugless_stack.acting_model(v1.ModelStub(_as(bugless_stack, "model", "web", channels)))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=caller, name=f"Scope-{secrets.token_hex(3)}"), timeout=30
    )
    issue, other = [
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=caller, fields=v1.IssueFields(title=title, component_id=component.id)
            ),
            timeout=30,
        )
        for title in ("noisy", "quiet")
    ]
    notify = v1.AuthenticatorStub(_as(bugless_stack, "auth", "notify", channels))
    tokens = await notify.issue_unsubscribe_tokens(
        v1.IssueUnsubscribeTokensRequest(
            targets=[v1.UnsubscribeTarget(user_id=admin["user_id"], issue_id=issue.id)]
        ),
        timeout=10,
    )
    web = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    grant = await web.redeem_unsubscribe_token(
        v1.RedeemUnsubscribeTokenRequest(token=tokens.tokens[0]), timeout=10
    )
    assert grant.identity is not None
    return Mute(admin["user_id"], issue, other, grant.identity.assertion)


async def _refused(call: Awaitable[object]) -> GRPCError:
    with pytest.raises(GRPCError) as refused:
        await call
    assert refused.value.status is Status.PERMISSION_DENIED, refused.value.message
    return refused.value


async def test_it_cannot_read_comment_or_mute_another_issue_but_mutes_its_own(
    bugless_stack: LocalStack, mute: Mute, channels: list[Channel]
) -> None:
    model = v1.ModelStub(_as(bugless_stack, "model", "web", channels))
    metadata = {METADATA_KEY: mute.assertion}
    caller = v1.Caller(user_id=mute.admin_id)

    read = await _refused(
        model.get_issue(
            v1.GetIssueRequest(caller=caller, issue_id=mute.issue.id),
            timeout=10,
            metadata=metadata,
        )
    )
    assert "only good for SetIssueMute(" in (read.message or "")
    assert "not for GetIssue" in (read.message or "")
    comment = await _refused(
        model.change_issue(
            v1.ChangeIssueRequest(
                caller=caller,
                issue_id=mute.issue.id,
                expected_version=mute.issue.version,
                comment="sent with an unsubscribe link's assertion",
            ),
            timeout=10,
            metadata=metadata,
        )
    )
    assert "not for ChangeIssue" in (comment.message or "")
    another = await _refused(
        model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=caller, issue_id=mute.other.id, muted=True),
            timeout=10,
            metadata=metadata,
        )
    )
    assert f"not issue_id={mute.other.id}" in (another.message or "")
    unmute = await _refused(
        model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=caller, issue_id=mute.issue.id, muted=False),
            timeout=10,
            metadata=metadata,
        )
    )
    assert "not muted=False" in (unmute.message or "")

    settings = await model.set_issue_mute(
        v1.SetIssueMuteRequest(caller=caller, issue_id=mute.issue.id, muted=True),
        timeout=10,
        metadata=metadata,
    )
    assert mute.issue.id in settings.muted_issue_ids
    assert mute.other.id not in settings.muted_issue_ids
    # Nothing the refused calls asked for happened.
    full = bugless_stack.acting_model(model)
    seen = await full.get_issue(v1.GetIssueRequest(caller=caller, issue_id=mute.issue.id))
    assert seen.version == mute.issue.version


#: The Model's RPCs the web may call, but for the one the link's assertion is for.
OUTSIDE_THE_SCOPE = sorted(
    name
    for name in v1.ModelBase().__mapping__()
    if name.rsplit("/", 1)[-1] != "SetIssueMute"
    and "web" in ModelServicer.ACCESS[name.rsplit("/", 1)[-1]]
)


async def test_every_other_method_refuses_it_whatever_its_request_carries(
    bugless_stack: LocalStack, mute: Mute, channels: list[Channel]
) -> None:
    """Refused on each method outside its scope, one whose requests name no caller too.

    Each is called as the web with an empty request, so a method that
    answered would answer it (GetServerInfo, whose request has no caller,
    answered before the check held for every method).
    """
    channel = _as(bugless_stack, "model", "web", channels)
    handlers = v1.ModelBase().__mapping__()
    answered: dict[str, str] = {}
    for name in OUTSIDE_THE_SCOPE:
        handler = handlers[name]
        try:
            async with channel.request(
                name,
                handler.cardinality,
                handler.request_type,
                handler.reply_type,
                timeout=10,
                metadata={METADATA_KEY: mute.assertion},
            ) as stream:
                await stream.send_message(handler.request_type(), end=True)
                await stream.recv_message()
        except GRPCError as refused:
            if refused.status is Status.PERMISSION_DENIED and "only good for SetIssueMute(" in (
                refused.message or ""
            ):
                continue
            answered[name] = f"{refused.status.name}: {refused.message}"
        else:
            answered[name] = "answered"
    assert "/bugless.v1.Model/GetServerInfo" in OUTSIDE_THE_SCOPE
    assert answered == {}


async def test_the_notifier_cannot_pass_it_off_as_a_viewer(
    bugless_stack: LocalStack, mute: Mute, channels: list[Channel]
) -> None:
    notify = v1.ModelStub(_as(bugless_stack, "model", "notify", channels))
    refused = await _refused(
        notify.get_notification_views(
            v1.GetNotificationViewsRequest(
                # The notifier's own caller, as it names itself.
                caller=v1.Caller(user_id="bugless-notify", admin=True),
                issue_id=mute.issue.id,
                versions=[mute.issue.version],
                viewer_assertions=[mute.assertion],
            ),
            timeout=10,
        )
    )
    assert "viewer_assertions[0]: a scoped assertion" in (refused.message or "")


#: ``bugless model serve`` as the release before scoped assertions.
PREVIOUS_MODEL = Path(__file__).with_name("model_before_scopes.py")
SERVE = ("model", "serve", "--port", "0")


async def test_a_model_before_scopes_refuses_it_rather_than_take_it_for_anything(
    bugless_stack: LocalStack, mute: Mute, channels: list[Channel], tmp_path: Path
) -> None:
    """An Authenticator upgraded first grants no full assertion on an older Model.

    The scoped assertion's header names its own ``typ``, which that Model
    does not take: the link's mute fails (UNAUTHENTICATED) until the Model
    is upgraded, and nothing else is possible with it either.
    """
    ready = tmp_path / "previous-model.json"
    process = spawn(
        "model-previous",
        [sys.executable, str(PREVIOUS_MODEL), *SERVE, "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "previous-model.log",
        ready_file=ready,
    )
    previous = await asyncio.to_thread(bugless_stack.wait_started, "model", process)
    try:
        address = bugless_stack.client_address("model", "web")
        channel = dataclasses.replace(address, port=previous.port).channel()
        channels.append(channel)
        model = v1.ModelStub(channel)
        caller = v1.Caller(user_id=mute.admin_id)
        metadata = {METADATA_KEY: mute.assertion}
        calls: list[Awaitable[object]] = [
            model.get_issue(
                v1.GetIssueRequest(caller=caller, issue_id=mute.issue.id),
                timeout=10,
                metadata=metadata,
            ),
            model.set_issue_mute(
                v1.SetIssueMuteRequest(caller=caller, issue_id=mute.issue.id, muted=True),
                timeout=10,
                metadata=metadata,
            ),
        ]
        for call in calls:
            with pytest.raises(GRPCError) as refused:
                await call
            assert refused.value.status is Status.UNAUTHENTICATED, refused.value.message
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, previous)
