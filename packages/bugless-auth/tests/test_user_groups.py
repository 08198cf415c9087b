"""GetUserGroups: the Model's view of other people's groups, for CheckViewers."""

from __future__ import annotations

from auth_support import AuthServer, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1


async def test_people_are_answered_with_their_groups_and_standing_in_request_order(
    auth: AuthServer,
) -> None:
    tag = unique("g")
    ann = await auth.add_user(unique("ann"), groups=[f"{tag}-ops", f"{tag}-web"])
    boss = await auth.add_user(unique("boss"), groups=["admins"])
    leaver_name = unique("cat")
    leaver = await auth.add_user(leaver_name, groups=[f"{tag}-ops"])
    await set_disabled(auth.store, leaver_name)
    token = (await auth.sign_in(boss.username)).token
    matched = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=unique("gone"), username=unique("gone"))],
            create_placeholders=True,
        )
    )
    placeholder = matched.matches[0].user
    assert placeholder is not None
    ghost = unique("ghost")

    answer = await auth.stub.get_user_groups(
        v1.GetUserGroupsRequest(
            user_ids=[
                leaver.user_id,
                ann.user_id,
                ghost,
                boss.user_id,
                placeholder.user_id,
                ann.user_id,
            ]
        )
    )

    # The groups an assertion would carry; admin as the policy grants it;
    # nobody who cannot sign in has groups; an id asked twice is answered once.
    assert [(u.user_id, u.standing, sorted(u.groups), u.admin) for u in answer.users] == [
        (leaver.user_id, v1.UserStanding.DISABLED, [], False),
        (ann.user_id, v1.UserStanding.ACTIVE, [f"{tag}-ops", f"{tag}-web"], False),
        (ghost, v1.UserStanding.UNKNOWN, [], False),
        (boss.user_id, v1.UserStanding.ACTIVE, ["admins"], True),
        (placeholder.user_id, v1.UserStanding.PLACEHOLDER, [], False),
    ]


async def test_a_bad_request_is_refused_naming_the_field(auth: AuthServer) -> None:
    empty = await expect_status(
        auth.stub.get_user_groups(v1.GetUserGroupsRequest(user_ids=["u1", ""])),
        Status.INVALID_ARGUMENT,
    )
    assert empty.message == "user_ids: empty entries are not allowed"
    many = await expect_status(
        auth.stub.get_user_groups(v1.GetUserGroupsRequest(user_ids=[f"u{i}" for i in range(101)])),
        Status.INVALID_ARGUMENT,
    )
    assert many.message == "user_ids: at most 100 per call, got 101; split the batch"
