"""Authorize and Identity.permissions from the group policy."""

from __future__ import annotations

from typing import Any

import pytest
from auth_support import AuthServer, StartAuth, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.policy import Policy, PolicyError, load_policy, parse_policy
from bugless_proto import v1

POLICY = {
    "admins": ("admin",),
    "triagers": ("create_component",),
    "*": ("create_hotlist",),
}


@pytest.fixture
async def policy_server(start_auth_server: StartAuth) -> AuthServer:
    return await start_auth_server(policy=POLICY)


async def authorize(server: AuthServer, **fields: Any) -> v1.AuthorizeResponse:
    return await server.stub.authorize(v1.AuthorizeRequest(**fields))


async def test_admin_group_grants_every_permission(policy_server: AuthServer) -> None:
    name = unique("root")
    await policy_server.add_user(name, groups=["admins"])
    token = (await policy_server.sign_in(name)).token

    answer = await authorize(policy_server, token=token, permission="manage_users")

    assert answer.allowed
    assert answer.granted_by == "group admins grants admin"


async def test_wildcard_grants_everyone_and_others_are_denied(policy_server: AuthServer) -> None:
    name = unique("plain")
    await policy_server.add_user(name)
    result = await policy_server.sign_in(name)

    hotlist = await authorize(policy_server, token=result.token, permission="create_hotlist")
    component = await authorize(policy_server, token=result.token, permission="create_component")

    assert (hotlist.allowed, hotlist.granted_by) == (True, "group * grants create_hotlist")
    assert (component.allowed, component.granted_by) == (False, "")
    assert result.identity is not None
    assert result.identity.permissions == ["create_hotlist"]


async def test_user_id_and_groups_can_stand_in_for_a_token(policy_server: AuthServer) -> None:
    answer = await authorize(
        policy_server, user_id="u_any", groups=["triagers"], permission="create_component"
    )
    assert answer.allowed
    assert answer.granted_by == "group triagers grants create_component"


async def test_user_id_alone_uses_the_users_known_groups(policy_server: AuthServer) -> None:
    user = await policy_server.add_user(unique("tri"), groups=["triagers"])

    answer = await authorize(policy_server, user_id=user.user_id, permission="create_component")
    assert answer.allowed
    await set_disabled(policy_server.store, user.username, True)
    policy_server.service.directory.forget(user.user_id)
    answer = await authorize(policy_server, user_id=user.user_id, permission="create_component")
    assert not answer.allowed


async def test_default_policy_makes_admins_admin(auth: AuthServer) -> None:
    name = unique("adm")
    await auth.add_user(name, groups=["admins"])
    result = await auth.sign_in(name)
    assert result.identity is not None
    assert "manage_users" in result.identity.permissions


async def test_default_policy_lets_everyone_create_hotlists_but_not_components(
    auth: AuthServer,
) -> None:
    assert auth.settings.policy is None
    name = unique("person")
    await auth.add_user(name)
    result = await auth.sign_in(name)

    hotlist = await authorize(auth, token=result.token, permission="create_hotlist")
    component = await authorize(auth, token=result.token, permission="create_component")

    assert (hotlist.allowed, hotlist.granted_by) == (True, "group * grants create_hotlist")
    assert (component.allowed, component.granted_by) == (False, "")
    assert result.identity is not None
    assert result.identity.permissions == ["create_hotlist"]


async def test_authorize_needs_a_permission_and_an_identity(auth: AuthServer) -> None:
    await expect_status(authorize(auth, user_id="u_x"), Status.INVALID_ARGUMENT)
    await expect_status(authorize(auth, permission="admin"), Status.INVALID_ARGUMENT)


def test_policy_reads_json_and_toml() -> None:
    assert parse_policy('{"admins": ["admin"]}') == {"admins": ("admin",)}
    assert parse_policy('admins = ["admin"]\n"*" = ["create_hotlist"]') == {
        "admins": ("admin",),
        "*": ("create_hotlist",),
    }


def test_policy_from_a_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "policy.toml"
    path.write_text('triagers = ["create_component"]\n')
    assert load_policy(str(path)) == {"triagers": ("create_component",)}


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ('{"admins": "admin"}', "list of permission names"),
        ('{"admins": ["Admin!"]}', "not a permission name"),
        ("[1, 2]", "mapping"),
        ("{{{", "neither JSON nor TOML"),
    ],
)
def test_bad_policies_say_what_is_wrong(text: str, fault: str) -> None:
    with pytest.raises(PolicyError, match=fault):
        parse_policy(text)


def test_direct_grant_is_named_before_admin() -> None:
    policy = Policy({"admins": ["admin"], "ops": ["manage_users"]})
    assert policy.decide(["admins", "ops"], "manage_users").granted_by == (
        "group ops grants manage_users"
    )
