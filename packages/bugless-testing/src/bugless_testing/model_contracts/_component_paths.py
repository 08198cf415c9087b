"""Contract: a component's path as the caller is shown it."""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    component_by_path,
    component_children,
    expect_error,
    get_component,
    make_component,
    make_issue,
    unique,
    user_entry,
)


class ComponentShownPathContract:
    """Components below ones the caller may not view: the path they are shown, and named by.

    Pins down: a path leaves out the components from the top to the lowest
    one the caller may not view (``…>Name``), in every answer that gives it
    and in every refusal that names the component; the path so shown names
    that component for the caller (GetComponent by path), past hidden ones
    shown the same and beside a component really named ``…``.
    """

    async def test_a_path_names_no_component_above_that_the_caller_may_not_view(
        self, model: v1.ModelStub
    ) -> None:
        """``…>Net`` for bob, whose own entry opens Net below Secret, which he may not view.

        A path from the top would tell him Secret's name, which no listing of
        his shows: the components from the top to the lowest one he may not
        view are left out, in every answer giving the path (GetComponent by
        id or by path, ListComponents, CheckViewers), and the path he is
        shown is the one that names it (the whole one names nothing for him:
        ``SearchComponentNameContract::test_a_path_names_a_component_only_as_the_caller_is_shown_it``).
        Alice, who may view them all, and an admin read it whole.
        """
        top, net_name = await make_component(model, name=unique("Open")), unique("Net")
        secret = await make_component(
            model, parent_id=top.id, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        net = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name=net_name,
                acl=[user_entry("bob", v1.Role.ADMIN)],
            )
        )
        deep = await make_component(model, parent_id=net.id, name="Deep")
        whole = f"{top.name}>{secret.name}>{net_name}>Deep"
        assert (await get_component(model, net.id, caller=BOB)).path == f"…>{net_name}"
        assert (await get_component(model, deep.id, caller=BOB)).path == f"…>{net_name}>Deep"
        assert (await component_by_path(model, f"…>{net_name}>Deep", caller=BOB)).id == deep.id
        await expect_error(component_by_path(model, whole, caller=BOB), Status.NOT_FOUND)
        assert [c.path for c in await component_children(model, net.id, caller=BOB)] == [
            f"…>{net_name}>Deep"
        ]
        checked = await model.check_viewers(
            v1.CheckViewersRequest(caller=BOB, component_id=deep.id, user_ids=["carol"])
        )
        assert checked.component_path == f"…>{net_name}>Deep"
        assert (await get_component(model, top.id, caller=BOB)).path == top.name
        for caller in (ALICE, ADMIN):
            assert (await get_component(model, deep.id, caller=caller)).path == whole
            assert [c.path for c in await component_children(model, net.id, caller=caller)] == [
                whole
            ]

    async def test_a_shortened_path_names_the_callers_component_past_hidden_ones_so_named(
        self, model: v1.ModelStub
    ) -> None:
        """``…>Net`` finds bob's Net however many Nets he may not view are below hidden parents.

        Each of those is ``…>Net`` too as far as the path goes, but not his
        to name: the path is judged among the ones he may view, so a dozen
        hidden ones made earlier neither hide his (NOT_FOUND for the path he
        is shown) nor make it ambiguous.
        """
        net_name = unique("Net")
        for _ in range(11):
            hidden = await make_component(
                model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
            )
            await make_component(model, parent_id=hidden.id, name=net_name, caller=ALICE)
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        net = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name=net_name,
                acl=[user_entry("bob", v1.Role.ADMIN)],
            )
        )
        assert (await component_by_path(model, f"…>{net_name}", caller=BOB)).id == net.id

    async def test_a_component_named_an_ellipsis_is_named_by_its_whole_path_as_shown(
        self, model: v1.ModelStub
    ) -> None:
        """``…>Net`` is the whole path of Net below a top-level component named ``…``.

        A path that begins so is judged as any other: by the path the caller
        is shown. Alice, who may view both Nets, is shown only the first so;
        bob is shown both so, and is asked for an id, not given one of them.
        """
        try:
            ellipsis = await component_by_path(model, "…")
        except GRPCError as exc:  # the first run in the session makes it
            if exc.status is not Status.NOT_FOUND:
                raise
            ellipsis = await make_component(model, name="…")
        net_name = unique("Net")
        net = await make_component(model, parent_id=ellipsis.id, name=net_name)
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        hidden_net = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name=net_name,
                acl=[user_entry("bob", v1.Role.ADMIN)],
            )
        )
        for caller in (ALICE, ADMIN):
            assert (await component_by_path(model, f"…>{net_name}", caller=caller)).id == net.id
        assert (await get_component(model, hidden_net.id, caller=BOB)).path == f"…>{net_name}"
        await expect_error(
            component_by_path(model, f"…>{net_name}", caller=BOB),
            Status.INVALID_ARGUMENT,
            "is the path you are shown of more than one component",
            str(net.id),
            str(hidden_net.id),
        )

    async def test_a_refusal_names_a_component_by_the_path_the_caller_sees(
        self, model: v1.ModelStub
    ) -> None:
        """Refusals name a component by the path GetComponent gives the caller.

        Bob may read Logs (its own entry), below Secret: told why he may not
        file in it or add below it, he reads ``…>Logs``; and ``…>Ops`` when a
        name he gives below Ops (his to administer) is taken.
        """
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        logs = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name="Logs",
                acl=[user_entry("bob", v1.Role.VIEWER)],
            )
        )
        filing = await expect_error(
            make_issue(model, logs.id, caller=BOB),
            Status.PERMISSION_DENIED,
            "editor role on component …>Logs needed",
        )
        below = await expect_error(
            make_component(model, parent_id=logs.id, caller=BOB),
            Status.PERMISSION_DENIED,
            "role on component …>Logs needed to create a subcomponent",
        )
        ops = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name="Ops",
                acl=[user_entry("bob", v1.Role.ADMIN)],
            )
        )
        await make_component(model, parent_id=ops.id, name="Twice", caller=BOB)
        taken = await expect_error(
            make_component(model, parent_id=ops.id, name="twice", caller=BOB),
            Status.ALREADY_EXISTS,
            "a component named 'twice' already exists under …>Ops",
        )
        for refusal in (filing, below, taken):
            assert secret.name not in (refusal.message or "")
        await expect_error(
            make_issue(model, logs.id, caller=v1.Caller(user_id="carl")),
            Status.NOT_FOUND,
            f"component {logs.id} not found",
        )

    async def test_a_refusal_to_change_or_redact_an_issue_names_its_component_as_seen(
        self, model: v1.ModelStub
    ) -> None:
        """A viewer refused a change or a redaction of an issue reads its component's path as seen.

        Bob may read Logs (its own entry), below Secret: told why he may not
        comment on an issue filed there, or redact it, he reads ``…>Logs``,
        never Secret's name (both refusals spelled the whole path before).
        """
        logs_name = unique("Logs")
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        logs = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name=logs_name,
                acl=[user_entry("bob", v1.Role.VIEWER)],
            )
        )
        issue = await make_issue(model, logs.id, caller=ALICE)
        changing = await expect_error(
            model.change_issue(
                v1.ChangeIssueRequest(
                    caller=BOB,
                    issue_id=issue.id,
                    expected_version=issue.version,
                    delta=v1.IssueDelta(),
                    comment="let me in",
                )
            ),
            Status.PERMISSION_DENIED,
            f"editor role on component …>{logs_name} needed to change issue {issue.id}",
        )
        redacting = await expect_error(
            model.redact(
                v1.RedactRequest(
                    caller=BOB,
                    issue_id=issue.id,
                    expected_version=issue.version,
                    target=v1.RedactionTarget.DESCRIPTION,
                )
            ),
            Status.PERMISSION_DENIED,
            f"admin role on component …>{logs_name} needed to redact issue {issue.id}",
        )
        for refusal in (changing, redacting):
            assert secret.name not in (refusal.message or "")
        # The path bob is shown, typed back, names Logs; mistyped, he is told how it names one.
        assert (await component_by_path(model, f"…>{logs_name}", caller=BOB)).id == logs.id
        await expect_error(
            component_by_path(model, "…>Lgs", caller=BOB),
            Status.NOT_FOUND,
            "component '…>Lgs' not found; a path beginning '…>' is shown shortened",
        )
