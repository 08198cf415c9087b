"""CheckViewers on a real stack: the Model asks the Authenticator who people are.

The Model and the Authenticator run as ``bugless model serve`` and ``bugless
auth serve`` with the stack's certificates: the Model reaches GetUserGroups
with its own identity (``model``), which nobody else may use, and judges the
people a frontend names by the groups the Authenticator knows for them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_dev.stack import LocalStack
from bugless_proto import v1
from bugless_testing.tcp_relay import TcpRelay

PASSWORD = "correct horse battery staple"


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


@pytest.mark.parametrize("identity", ["web", "api", "notify", "admin"])
async def test_only_the_model_may_ask_for_peoples_groups(
    identity: str, bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    bob = bugless_stack.add_user(f"groups-bob-{secrets.token_hex(3)}", PASSWORD)
    request = v1.GetUserGroupsRequest(user_ids=[bob["user_id"]])
    stub = v1.AuthenticatorStub(_as(bugless_stack, "auth", identity, channels))
    with pytest.raises(GRPCError) as refused:
        await stub.get_user_groups(request, timeout=10)
    assert refused.value.status is Status.PERMISSION_DENIED
    model = v1.AuthenticatorStub(_as(bugless_stack, "auth", "model", channels))
    answer = await model.get_user_groups(request, timeout=10)
    assert [(u.user_id, u.standing) for u in answer.users] == [
        (bob["user_id"], v1.UserStanding.ACTIVE)
    ]


async def test_the_model_names_who_the_component_leaves_out_from_the_authenticators_groups(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    tag = secrets.token_hex(3)
    group = f"viewers-{tag}"
    ann = bugless_stack.add_user(f"vc-ann-{tag}", PASSWORD, groups=[group])
    bob = bugless_stack.add_user(f"vc-bob-{tag}", PASSWORD)
    boss = bugless_stack.add_user(f"vc-boss-{tag}", PASSWORD, admin=True)
    carol_name = f"vc-carol-{tag}"
    carol = bugless_stack.add_user(carol_name, PASSWORD, groups=[group])
    bugless_stack.run_bugless("auth", "user", "disable", carol_name)
    model = bugless_stack.acting_model(v1.ModelStub(_as(bugless_stack, "model", "web", channels)))
    component = await model.create_component(
        v1.CreateComponentRequest(
            caller=v1.Caller(user_id=boss["user_id"]),
            name=f"Viewers-{tag}",
            acl=[v1.AclEntry(principal=v1.Principal(group=group), role=v1.Role.EDITOR)],
        ),
        timeout=30,
    )
    ghost = f"nobody-{tag}"
    # Ann asks, as the web does after she saved an issue naming these people.
    request = v1.CheckViewersRequest(
        caller=v1.Caller(user_id=ann["user_id"]),
        component_id=component.id,
        user_ids=[bob["user_id"], ann["user_id"], boss["user_id"], carol["user_id"], ghost],
    )
    # The disable reaches the Authenticator's cache through its users' feed.
    deadline = time.monotonic() + 30
    while True:
        answer = await model.check_viewers(request, timeout=10)
        blocked = [(b.user_id, b.reason) for b in answer.cannot_view]
        if (carol["user_id"], v1.ViewerBlock.CANNOT_SIGN_IN) in blocked or (
            time.monotonic() > deadline
        ):
            break
        await asyncio.sleep(0.5)

    assert answer.component_path == f"Viewers-{tag}"
    # Bob is in no group the list names; the global admin views everything;
    # Ann views it through her group (which only the Authenticator told).
    assert blocked == [
        (bob["user_id"], v1.ViewerBlock.NO_ACCESS),
        (carol["user_id"], v1.ViewerBlock.CANNOT_SIGN_IN),
        (ghost, v1.ViewerBlock.UNKNOWN_USER),
    ]
    # Bob cannot view the component, so he cannot ask about it either.
    bobs = v1.CheckViewersRequest(
        caller=v1.Caller(user_id=bob["user_id"]),
        component_id=component.id,
        user_ids=[ann["user_id"]],
    )
    with pytest.raises(GRPCError) as hidden:
        await model.check_viewers(bobs, timeout=10)
    assert hidden.value.status is Status.NOT_FOUND


async def test_a_merged_placeholder_is_judged_as_the_account_it_was_merged_into(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    """Issues keep an imported person's placeholder id after the merge; ACLs name the account."""
    tag = secrets.token_hex(3)
    dee_name = f"vc-dee-{tag}"
    dee = bugless_stack.add_user(dee_name, PASSWORD)
    boss_name = f"vc-boss-{tag}"
    # The stack's policy: group importers may import (and manage users).
    boss = bugless_stack.add_user(boss_name, PASSWORD, groups=["importers"], admin=True)
    importer = v1.AuthenticatorStub(_as(bugless_stack, "auth", "import", channels))
    token = (
        await importer.authenticate_password(
            v1.AuthenticatePasswordRequest(username=boss_name, password=PASSWORD), timeout=10
        )
    ).token
    matched = await importer.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=f"old-dee-{tag}", username=f"old-dee-{tag}")],
            create_placeholders=True,
        ),
        timeout=10,
    )
    placeholder = matched.matches[0].user
    assert placeholder is not None
    web = v1.AuthenticatorStub(_as(bugless_stack, "auth", "web", channels))
    await web.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=dee_name),
        timeout=10,
    )
    model = bugless_stack.acting_model(v1.ModelStub(_as(bugless_stack, "model", "web", channels)))
    component = await model.create_component(
        v1.CreateComponentRequest(
            caller=v1.Caller(user_id=boss["user_id"]),
            name=f"Dees-{tag}",
            acl=[v1.AclEntry(principal=v1.Principal(user=dee["user_id"]), role=v1.Role.EDITOR)],
        ),
        timeout=30,
    )
    request = v1.CheckViewersRequest(
        caller=v1.Caller(user_id=dee["user_id"]),
        component_id=component.id,
        user_ids=[placeholder.user_id, dee["user_id"], boss["user_id"]],
    )
    # The merge reaches the Authenticator's cache through its users' feed.
    deadline = time.monotonic() + 30
    while True:
        answer = await model.check_viewers(request, timeout=10)
        blocked = [(b.user_id, b.reason) for b in answer.cannot_view]
        if (placeholder.user_id, v1.ViewerBlock.CANNOT_SIGN_IN) not in blocked or (
            time.monotonic() > deadline
        ):
            break
        await asyncio.sleep(0.5)

    # Dee signs in as her account, which the ACL names: the issues the
    # import left under her old id are hers to see, so nobody is warned.
    assert blocked == []


async def test_an_authenticator_the_model_cannot_reach_makes_the_check_unavailable(
    bugless_stack: LocalStack, channels: list[Channel]
) -> None:
    tag = secrets.token_hex(3)
    ann = bugless_stack.add_user(f"vc-cut-{tag}", PASSWORD)
    boss = bugless_stack.add_user(f"vc-cut-boss-{tag}", PASSWORD, admin=True)
    with TcpRelay(bugless_stack.auth.port) as relay:
        # Keys fetched once an hour: once it has them it verifies callers
        # alone, and only what needs the Authenticator now fails.
        args = ["model", "serve", "--port", "0", "--auth", f"127.0.0.1:{relay.port}"]
        replica = await asyncio.to_thread(
            bugless_stack.start,
            "model",
            [*args, "--assertion-refresh-seconds", "3600"],
            name=f"model-cut-{tag}",
        )
        try:
            assert replica.address is not None
            channel = replica.address.channel()
            channels.append(channel)
            model = bugless_stack.acting_model(v1.ModelStub(channel))
            component = await model.create_component(
                v1.CreateComponentRequest(
                    caller=v1.Caller(user_id=boss["user_id"]), name=f"Cut-{tag}"
                ),
                timeout=30,
            )
            request = v1.CheckViewersRequest(
                caller=v1.Caller(user_id=boss["user_id"]),
                component_id=component.id,
                user_ids=[ann["user_id"]],
            )
            assert (await model.check_viewers(request, timeout=10)).cannot_view == []

            relay.cut()

            with pytest.raises(GRPCError) as cut:
                await model.check_viewers(request, timeout=30)
            assert cut.value.status is Status.UNAVAILABLE
            assert "the Authenticator cannot be reached to ask who these people are" in (
                cut.value.message or ""
            )
            # What needs no Authenticator now still works.
            got = await model.get_component(
                v1.GetComponentRequest(
                    caller=v1.Caller(user_id=boss["user_id"]), component_id=component.id
                ),
                timeout=10,
            )
            assert got.id == component.id
        finally:
            await asyncio.to_thread(bugless_stack.stop_service, replica)
