"""CountGroupMembers: how many enabled users each group has, for access-list forms."""

from __future__ import annotations

from auth_support import AuthServer, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1


async def test_enabled_members_are_counted_per_group_in_request_order(auth: AuthServer) -> None:
    tag = unique("g")
    ops, web, typo = f"{tag}-ops", f"{tag}-web", f"{tag}-opz"
    await auth.add_user(unique("ann"), groups=[ops, web])
    await auth.add_user(unique("bob"), groups=[ops])
    leaver = unique("cat")
    await auth.add_user(leaver, groups=[ops, web])
    await set_disabled(auth.store, leaver)

    answer = await auth.stub.count_group_members(
        v1.CountGroupMembersRequest(groups=[web, ops, typo, web])
    )

    # The disabled member counts in neither; a group nobody is in is 0; a
    # name asked twice is answered once.
    assert [(g.group, g.members) for g in answer.groups] == [(web, 1), (ops, 2), (typo, 0)]


async def test_a_bad_request_is_refused_naming_the_field(auth: AuthServer) -> None:
    empty = await expect_status(
        auth.stub.count_group_members(v1.CountGroupMembersRequest(groups=["qa", ""])),
        Status.INVALID_ARGUMENT,
    )
    assert empty.message == "groups[1]: empty; give a group name"
    many = await expect_status(
        auth.stub.count_group_members(
            v1.CountGroupMembersRequest(groups=[f"g{i}" for i in range(201)])
        ),
        Status.INVALID_ARGUMENT,
    )
    assert many.message == "groups: at most 200 (an access list's entries), got 201"


async def test_members_are_listed_by_id_per_group_in_request_order(auth: AuthServer) -> None:
    """ListGroupMembers: the import's --restricted-component check sees who is in a group."""
    tag = unique("l")
    ops, web, typo = f"{tag}-ops", f"{tag}-web", f"{tag}-opz"
    ann = await auth.add_user(unique("ann"), groups=[ops, web])
    bob = await auth.add_user(unique("bob"), groups=[ops])
    leaver = unique("cat")
    await auth.add_user(leaver, groups=[ops, web])
    await set_disabled(auth.store, leaver)

    answer = await auth.stub.list_group_members(
        v1.ListGroupMembersRequest(groups=[web, ops, typo, web])
    )

    assert [(g.group, g.user_ids, g.too_many) for g in answer.groups] == [
        (web, [ann.user_id], False),
        (ops, sorted([ann.user_id, bob.user_id]), False),
        (typo, [], False),
    ]


async def test_a_bad_list_request_is_refused_naming_the_field(auth: AuthServer) -> None:
    empty = await expect_status(
        auth.stub.list_group_members(v1.ListGroupMembersRequest(groups=["qa", ""])),
        Status.INVALID_ARGUMENT,
    )
    assert empty.message == "groups[1]: empty; give a group name"
