"""Contract: CheckViewers names who, of the people named, cannot view a component."""

from __future__ import annotations

from grpclib.const import Status

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    UNKNOWN_ID,
    expect_error,
    fresh_caller,
    get_component,
    group_entry,
    make_component,
    unique,
    user_entry,
)
from bugless_testing.plugin import PeopleDirectory


async def _check(
    model: v1.ModelStub, component_id: int, *people: v1.Caller | str, caller: v1.Caller = ADMIN
) -> v1.CheckViewersResponse:
    return await model.check_viewers(
        v1.CheckViewersRequest(
            caller=caller,
            component_id=component_id,
            user_ids=[p if isinstance(p, str) else p.user_id for p in people],
        )
    )


def _blocked(answer: v1.CheckViewersResponse) -> list[tuple[str, v1.ViewerBlock]]:
    return [(b.user_id, b.reason) for b in answer.cannot_view]


class ViewerCheckContract:
    """Who cannot view a component is judged by the rule every read applies.

    Pins down: a person views a component when its effective ACL (own and
    inherited entries) gives their user id or one of their groups a role, or
    they are a global admin, or the ACL is empty; everyone else the request
    names is answered, in request order and once each, with why (no access,
    unknown, cannot sign in); a caller who cannot view the component gets
    NOT_FOUND exactly as GetComponent answers it; bad requests name the field.
    """

    async def test_people_the_acl_leaves_out_are_named_in_request_order(
        self, model: v1.ModelStub, bugless_people: PeopleDirectory
    ) -> None:
        group = unique("eng")
        reader = bugless_people.add(fresh_caller("reader"))
        member = bugless_people.add(fresh_caller("member", groups=["other", group]))
        outsider = bugless_people.add(fresh_caller("outsider", groups=["other"]))
        admin = bugless_people.add(v1.Caller(user_id=unique("root"), admin=True))
        leaver = bugless_people.add(fresh_caller("leaver", groups=[group]))
        bugless_people.set_standing(leaver.user_id, v1.UserStanding.DISABLED)
        imported = unique("placeholder")
        bugless_people.set_standing(imported, v1.UserStanding.PLACEHOLDER)
        ghost = unique("ghost")
        parent = await make_component(
            model,
            acl=[user_entry(reader.user_id, v1.Role.VIEWER), group_entry(group, v1.Role.EDITOR)],
        )
        # The child's own list adds nobody: what decides is inherited.
        child = await make_component(model, parent_id=parent.id)

        answer = await _check(
            model, child.id, ghost, reader, outsider, member, admin, leaver, outsider, imported
        )

        assert answer.component_id == child.id
        assert answer.component_path == (await get_component(model, child.id)).path
        assert _blocked(answer) == [
            (ghost, v1.ViewerBlock.UNKNOWN_USER),
            (outsider.user_id, v1.ViewerBlock.NO_ACCESS),
            (leaver.user_id, v1.ViewerBlock.CANNOT_SIGN_IN),
            (imported, v1.ViewerBlock.CANNOT_SIGN_IN),
        ]

    async def test_everyone_who_can_sign_in_views_an_open_component(
        self, model: v1.ModelStub, bugless_people: PeopleDirectory
    ) -> None:
        anyone = bugless_people.add(fresh_caller("anyone"))
        leaver = bugless_people.add(fresh_caller("leaver"))
        bugless_people.set_standing(leaver.user_id, v1.UserStanding.DISABLED)
        open_component = await make_component(model)

        answer = await _check(model, open_component.id, anyone, leaver)

        assert _blocked(answer) == [(leaver.user_id, v1.ViewerBlock.CANNOT_SIGN_IN)]

    async def test_a_caller_who_cannot_view_the_component_hears_it_is_not_found(
        self, model: v1.ModelStub, bugless_people: PeopleDirectory
    ) -> None:
        insider = bugless_people.add(fresh_caller("insider"))
        outsider = bugless_people.add(fresh_caller("outsider"))
        secret = await make_component(model, acl=[user_entry(insider.user_id, v1.Role.VIEWER)])

        # A viewer may ask (a viewer, not only an editor, names people in a
        # comment's CC), and hears that the outsider is left out.
        answer = await _check(model, secret.id, insider, outsider, caller=insider)
        assert _blocked(answer) == [(outsider.user_id, v1.ViewerBlock.NO_ACCESS)]
        hidden = await expect_error(
            _check(model, secret.id, insider, caller=outsider), Status.NOT_FOUND
        )
        absent = await expect_error(
            _check(model, UNKNOWN_ID, insider, caller=outsider), Status.NOT_FOUND
        )
        # Exactly as absent: nothing says the component exists.
        assert hidden.message == f"component_id: component {secret.id} not found"
        assert absent.message == f"component_id: component {UNKNOWN_ID} not found"

    async def test_a_bad_request_names_the_field(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        await expect_error(_check(model, component.id), Status.INVALID_ARGUMENT, "user_ids")
        await expect_error(
            _check(model, component.id, *[f"u{i}" for i in range(101)]),
            Status.INVALID_ARGUMENT,
            "user_ids: at most 100 per call, got 101",
        )
        await expect_error(
            _check(model, component.id, "ann", "has space"),
            Status.INVALID_ARGUMENT,
            "user_ids[1]",
        )
        await expect_error(_check(model, 0, "ann"), Status.INVALID_ARGUMENT, "component_id")
