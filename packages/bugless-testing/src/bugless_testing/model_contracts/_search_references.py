"""Contract: components by name, and the components and hotlists a search names.

A COMPONENT term's text value names components by name, in any case (Unicode
case folding, as component names compare), or by path from the top
(``Rocket>Engine``, spaces around ``>`` dropped): every component of that
name, and with ``include_subtree`` the components below each.

A query naming a component id (``componentid:12``) or a hotlist id
(``hotlistid:7``) that is no component the caller may view, or no hotlist
they may see, is INVALID_ARGUMENT naming the id, wherever the term stands
(under OR or NOT too): before, it matched nothing, silently, so a typo read
as "no such issues". ``componentid:12+`` needs component 12 or one below it
to be viewable (a component's own entries may open it below a parent the
caller may not view). One the caller may not see is refused in the words of
one that does not exist, so the answer says nothing of what they cannot see.
A query watch is refused so when it starts, and ends so while it runs when a
hotlist it names is made private or a component restricted.
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.model.backend import Capability
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.events import DELIVERY_TIMEOUT, EventStream
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    UNKNOWN_ID,
    eq,
    expect_error,
    fresh_caller,
    group_entry,
    in_subtree,
    make_component,
    make_hotlist,
    make_issue,
    search_ids,
    unique,
    user_entry,
    within,
)
from bugless_testing.plugin import requires_capability

F = v1.SearchField
NO_SUCH_ID = UNKNOWN_ID


async def _refused(model: v1.ModelStub, node: v1.SearchNode, caller: v1.Caller, *says: str) -> str:
    """Search ``node`` as ``caller``: INVALID_ARGUMENT saying ``says``; its message."""
    error = await expect_error(
        search_ids(model, node, caller=caller), Status.INVALID_ARGUMENT, *says
    )
    return error.message or ""


class SearchReferenceContract:
    """Unknown and unseen components and hotlists in a query are refused, alike."""

    async def test_an_unknown_component_id_is_refused_naming_it(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        issue = await make_issue(model, root.id)
        unknown = eq(F.COMPONENT, NO_SUCH_ID)
        for node in (
            unknown,
            any_of(eq(F.COMPONENT, root.id), unknown),
            within(root.id, negate(unknown)),
            term(F.COMPONENT, v1.SearchOperator.EQ, NO_SUCH_ID, include_subtree=True),
        ):
            await _refused(model, node, ALICE, f"component {NO_SUCH_ID}", "that you may view")
        assert await search_ids(model, eq(F.COMPONENT, root.id)) == [issue.id]

    async def test_a_component_the_caller_may_not_view_is_refused_as_an_unknown_one(
        self, model: v1.ModelStub
    ) -> None:
        secret = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        await make_issue(model, secret.id)
        hidden = await _refused(model, eq(F.COMPONENT, secret.id), BOB, f"component {secret.id}")
        unknown = await _refused(model, eq(F.COMPONENT, NO_SUCH_ID), BOB)
        assert hidden.replace(f"component {secret.id} ", "component N ") == unknown.replace(
            f"component {NO_SUCH_ID} ", "component N "
        )
        assert await search_ids(model, eq(F.COMPONENT, secret.id), caller=ALICE) != []

    async def test_a_subtree_is_searchable_when_a_component_below_is_viewable(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        child = await make_component(
            model, parent_id=root.id, acl=[user_entry("bob", v1.Role.EDITOR)]
        )
        await make_issue(model, root.id)
        shown = await make_issue(model, child.id, caller=BOB)
        assert await search_ids(model, in_subtree(root.id), caller=BOB) == [shown.id]
        await _refused(model, eq(F.COMPONENT, root.id), BOB, f"component {root.id}")
        lone = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        await _refused(model, in_subtree(lone.id), BOB, f"component {lone.id}", "below it")

    async def test_an_unknown_or_private_hotlist_is_refused_alike(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        issue = await make_issue(model, root.id)
        private = await make_hotlist(model, caller=ALICE, private=True)
        gone = await make_hotlist(model, caller=BOB)
        await model.delete_hotlist(v1.DeleteHotlistRequest(caller=BOB, hotlist_id=gone.id))
        hidden = await _refused(
            model, within(root.id, eq(F.HOTLIST, private.id)), BOB, f"hotlist {private.id}"
        )
        deleted = await _refused(
            model, within(root.id, eq(F.HOTLIST, gone.id)), BOB, f"hotlist {gone.id}"
        )
        assert hidden.replace(f"hotlist {private.id} ", "hotlist N ") == deleted.replace(
            f"hotlist {gone.id} ", "hotlist N "
        )
        # Its owner may name it; no value (has:hotlist) names none.
        assert await search_ids(model, within(root.id, eq(F.HOTLIST, private.id))) == []
        none = term(F.HOTLIST, v1.SearchOperator.NONE)
        assert await search_ids(model, within(root.id, none), caller=BOB) == [issue.id]

    async def test_every_grant_that_shows_the_rows_admits_the_reference_and_no_other(
        self, model: v1.ModelStub
    ) -> None:
        # The check of a query's references and the rows it returns read one
        # rule: a caller who may see a component or hotlist by any grant (a
        # group, being an editor, being an admin) is answered its issues, not
        # refused; one who may not is refused exactly as for a missing id.
        group = unique("crew")
        member = fresh_caller("member", groups=[group])
        outsider = fresh_caller("outsider")
        crew = await make_component(model, acl=[group_entry(group, v1.Role.VIEWER)])
        private = await make_hotlist(model, caller=ALICE, private=True, editors=[member.user_id])
        issue = await make_issue(model, crew.id, caller=ADMIN, hotlist_ids=[private.id])
        by_component = eq(F.COMPONENT, crew.id)
        by_hotlist = within(crew.id, eq(F.HOTLIST, private.id))
        for caller in (member, ADMIN):
            assert await search_ids(model, by_component, caller=caller) == [issue.id]
            assert await search_ids(model, by_hotlist, caller=caller) == [issue.id]
        hidden = await _refused(model, by_component, outsider, f"component {crew.id}")
        missing = await _refused(model, eq(F.COMPONENT, NO_SUCH_ID), outsider)
        assert hidden.replace(str(crew.id), "N") == missing.replace(str(NO_SUCH_ID), "N")
        open_root = await make_component(model)
        on_open = within(open_root.id, eq(F.HOTLIST, private.id))
        hidden = await _refused(model, on_open, outsider, f"hotlist {private.id}")
        missing = await _refused(model, within(open_root.id, eq(F.HOTLIST, NO_SUCH_ID)), outsider)
        assert hidden.replace(str(private.id), "N") == missing.replace(str(NO_SUCH_ID), "N")


def _named(*names: str, subtree: bool = False) -> v1.SearchNode:
    """``component:NAME[,NAME...]`` (``+``: with the components below)."""
    return term(F.COMPONENT, v1.SearchOperator.EQ, *names, include_subtree=subtree)


async def _opened_to_bob(model: v1.ModelStub, parent_id: int, name: str) -> v1.Component:
    """Component ``name`` made by alice below ``parent_id``, with bob its admin by its own entry."""
    return await model.create_component(
        v1.CreateComponentRequest(
            caller=ALICE, parent_id=parent_id, name=name, acl=[user_entry("bob", v1.Role.ADMIN)]
        )
    )


async def _path(model: v1.ModelStub, path: str, caller: v1.Caller) -> v1.Component:
    """GetComponent of ``path`` as ``caller``."""
    return await model.get_component(v1.GetComponentRequest(caller=caller, path=path))


class SearchComponentNameContract:
    """``component:Name`` finds a component's issues by its name or path, in any case."""

    async def test_a_name_finds_its_components_in_any_case_and_with_the_ones_below(
        self, model: v1.ModelStub
    ) -> None:
        rocket = await make_component(model, name=unique("Rocket"))
        engine = await make_component(model, parent_id=rocket.id, name="Engine")
        other = await make_component(model, name=unique("Probe"))
        other_engine = await make_component(model, parent_id=other.id, name="ENGINE")
        top = await make_issue(model, rocket.id)
        below = await make_issue(model, engine.id)
        elsewhere = await make_issue(model, other_engine.id)
        assert await search_ids(model, _named(rocket.name.upper())) == [top.id]
        assert await search_ids(model, _named(rocket.name.lower(), subtree=True)) == [
            below.id,
            top.id,
        ]
        path = f"{rocket.name.lower()} > engine"
        assert await search_ids(model, _named(path)) == [below.id]
        # A name without a path names every component of that name.
        both = _named("engine")
        assert await search_ids(model, any_of(within(rocket.id, both), within(other.id, both))) == [
            elsewhere.id,
            below.id,
        ]
        # Ids and names in one term.
        mixed = term(F.COMPONENT, v1.SearchOperator.EQ, other_engine.id, path)
        assert await search_ids(model, mixed) == [elsewhere.id, below.id]

    async def test_names_compare_by_unicode_case_folding(self, model: v1.ModelStub) -> None:
        street = await make_component(model, name=unique("Straße"))
        issue = await make_issue(model, street.id)
        folded = street.name.replace("ß", "SS").upper()
        assert await search_ids(model, _named(folded)) == [issue.id]

    async def test_an_unknown_name_is_refused_with_the_close_names_the_caller_may_view(
        self, model: v1.ModelStub
    ) -> None:
        rocket = await make_component(model, name=unique("Rocket"))
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        typo = rocket.name.replace("Rocket", "Rockt")
        await _refused(
            model,
            _named(typo),
            BOB,
            f"there is no component named '{typo}' that you may view",
            f"did you mean '{rocket.name}'",
        )
        # One bob may not view is refused as an unknown one, and never offered.
        hidden = await _refused(model, _named(secret.name), BOB, f"named '{secret.name}'")
        near = await _refused(model, _named(secret.name.replace("Secret", "Secrt")), BOB)
        assert "did you mean" not in hidden.replace(f"'{secret.name}'", "")
        assert secret.name not in near
        assert await search_ids(model, _named(secret.name), caller=ALICE) == []
        await _refused(model, _named("no such component", subtree=True), BOB, "nor one below it")

    async def test_a_close_path_is_offered_only_when_the_caller_may_view_all_of_it(
        self, model: v1.ModelStub
    ) -> None:
        """A path bob mistypes is answered with close paths as he is shown them.

        Net is his (its own entry) below Secret, which he may not view: its
        whole path would name Secret, so it is never offered; the path he is
        shown (``…>Netwrk``) names it for him, and is offered for a mistyped
        one; its own name is, for a name, and a path he may view whole is,
        for a path.
        """
        secret = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=secret.id,
                name="Netwrk",
                acl=[user_entry("bob", v1.Role.EDITOR)],
            )
        )
        rocket = await make_component(model, name=unique("Rocket"))
        await make_component(model, parent_id=rocket.id, name="Netwrk")
        typo = f"{secret.name}>Netwerk"
        refused = await _refused(model, _named(typo), BOB, f"named '{typo}'")
        assert secret.name not in refused.replace(f"'{typo}'", "")
        assert "…" not in refused
        near = f"{rocket.name}>Netwerk"
        await _refused(model, _named(near), BOB, f"did you mean '{rocket.name}>Netwrk'")
        await _refused(model, _named("Netwerk"), BOB, "did you mean 'Netwrk'")
        # The path he is shown, mistyped: he is told how such a path names one.
        await _refused(
            model,
            _named("…>Netwerk"),
            BOB,
            "did you mean '…>Netwrk'",
            "names a component only as you are shown it: give it as shown",
        )

    async def test_a_path_names_a_component_only_as_the_caller_is_shown_it(
        self, model: v1.ModelStub
    ) -> None:
        """``Open>Secret>Net`` names nothing for bob, who may view Net but not Secret.

        Found, it would confirm that Secret exists, a name no answer of the
        Model shows him: a search's ``component:`` term and GetComponent by
        path refuse it in the words of a path of nothing (same status, same
        message but for the path). ``…>Net``, the path he is shown, names
        Net, and its own name does; ``c:N+`` by Secret's id finds Net's
        issues, as ids are no names. Alice, who may view Secret, names Net by
        its whole path, and ``…>Net`` names nothing for her.
        """
        top, name, leaf = (unique(n) for n in ("Open", "Net", "Deep"))
        top_id = (await make_component(model, name=top)).id
        secret = await make_component(
            model, parent_id=top_id, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        net = await _opened_to_bob(model, secret.id, name)
        deep = await make_component(model, parent_id=net.id, name=leaf, caller=BOB)
        issue = await make_issue(model, deep.id, caller=BOB)
        ghost = unique("Secret")
        whole, unknown = (f"{top}>{above}>{name}>{leaf}" for above in (secret.name, ghost))
        for hidden, missing in ((whole, unknown), (whole.upper(), unknown.upper())):
            for subtree in (False, True):
                said = await _refused(model, _named(hidden, subtree=subtree), BOB)
                told = await _refused(model, _named(missing, subtree=subtree), BOB)
                assert secret.name.casefold() not in said.casefold().replace(hidden.casefold(), "")
                assert said.split("; did you mean")[0].replace(hidden, "P") == told.split(
                    "; did you mean"
                )[0].replace(missing, "P")
        by_path = await expect_error(_path(model, whole, BOB), Status.NOT_FOUND)
        nowhere = await expect_error(_path(model, unknown, BOB), Status.NOT_FOUND)
        assert (by_path.message or "").replace(whole, "P") == (nowhere.message or "").replace(
            unknown, "P"
        )
        shown = f"…>{name}>{leaf}"
        for spelled in (shown, f"…>{name.lower()} > {leaf.upper()}", leaf):
            assert await search_ids(model, _named(spelled), caller=BOB) == [issue.id]
        assert await search_ids(model, _named(f"…>{name}", subtree=True), caller=BOB) == [issue.id]
        assert await search_ids(model, in_subtree(secret.id), caller=BOB) == [issue.id]
        got = await _path(model, shown, BOB)
        assert (got.id, got.path) == (deep.id, shown)
        assert (await _path(model, f"…>{name.upper()}", BOB)).id == net.id
        # Alice may view every component on the whole path: it is hers to type, not …>.
        assert await search_ids(model, _named(whole), caller=ALICE) == [issue.id]
        assert (await _path(model, whole, ALICE)).id == deep.id
        await _refused(model, _named(shown), ALICE, "give it as shown")
        await expect_error(
            _path(model, shown, ALICE),
            Status.NOT_FOUND,
            "names a component only as you are shown it",
        )
        # Shown for two components (below two he may not view), a path names both in a
        # search, and GetComponent, which answers one, asks for the id.
        other = await make_component(
            model, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        twin = await _opened_to_bob(model, other.id, name)
        second = await make_issue(model, twin.id, caller=BOB)
        both = await search_ids(model, _named(f"…>{name}", subtree=True), caller=BOB)
        assert sorted(both) == sorted([issue.id, second.id])
        await expect_error(
            _path(model, f"…>{name}", BOB),
            Status.INVALID_ARGUMENT,
            f"of more than one component (ids {min(net.id, twin.id)}, {max(net.id, twin.id)})",
        )

    async def test_a_hidden_components_name_with_the_ones_below_reads_as_an_unknown_one(
        self, model: v1.ModelStub
    ) -> None:
        """``component:Secret+`` names nothing for bob, who may view Net below but not Secret.

        Taken, and finding Net's issues, it would tell him that a component
        named Secret exists above what he may view (he is shown ``…>Net``),
        and that ``Open>Secret`` is its path, where ``component:Ghost+`` is
        refused: the same refusal for both, by its own name and by its path.
        ``c:N+`` by Secret's id still finds Net's issues (ids are no names),
        and alice, who may view Secret, names it with the ones below.
        """
        top = await make_component(model, name=unique("Open"))
        secret = await make_component(
            model, parent_id=top.id, name=unique("Secret"), acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        net = await _opened_to_bob(model, secret.id, unique("Net"))
        issue = await make_issue(model, net.id, caller=BOB)
        ghost = unique("Secret")
        for hidden, missing in (
            (secret.name, ghost),
            (f"{top.name}>{secret.name}", f"{top.name}>{ghost}"),
        ):
            said = await _refused(model, _named(hidden, subtree=True), BOB)
            told = await _refused(model, _named(missing, subtree=True), BOB)
            assert said.replace(hidden, "P") == told.replace(missing, "P")
            assert await search_ids(model, _named(hidden, subtree=True), caller=ALICE) == [issue.id]
        assert await search_ids(model, in_subtree(secret.id), caller=BOB) == [issue.id]

    async def test_the_first_unseen_reference_in_the_query_is_the_one_refused(
        self, model: v1.ModelStub
    ) -> None:
        # Refused at the term the query names first (a frontend marks that term).
        hotlist_first = any_of(eq(F.HOTLIST, NO_SUCH_ID), eq(F.COMPONENT, NO_SUCH_ID))
        said = await _refused(model, hotlist_first, ALICE, f"hotlist {NO_SUCH_ID}")
        assert said.startswith("query.filter.any_of.nodes[0]")
        name_first = any_of(_named("no such component"), eq(F.HOTLIST, NO_SUCH_ID))
        await _refused(model, name_first, ALICE, "named 'no such component'")
        subtree_first = any_of(in_subtree(NO_SUCH_ID), eq(F.COMPONENT, NO_SUCH_ID))
        await _refused(model, subtree_first, ALICE, f"component {NO_SUCH_ID}, nor one below it")


async def _watch_refused(model: v1.ModelStub, request: v1.WatchRequest, *says: str) -> str:
    """Watch ``request``: INVALID_ARGUMENT before the subscribed marker; its message."""

    async def first_event() -> None:
        async for event in model.watch(request, timeout=DELIVERY_TIMEOUT):
            raise AssertionError(f"a query naming what is not there was watched: {event}")

    error = await expect_error(first_event(), Status.INVALID_ARGUMENT, *says)
    return error.message or ""


@requires_capability(Capability.WATCH)
class WatchReferenceContract:
    """A query watch naming components and hotlists is refused as its search is."""

    async def test_a_watch_is_refused_in_the_words_of_its_search_and_hidden_as_missing(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        secret = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        private = await make_hotlist(model, caller=ALICE, private=True)
        head = (await model.read_feed(v1.ReadFeedRequest(caller=BOB, head_only=True))).head_position
        for node in (
            eq(F.COMPONENT, NO_SUCH_ID),
            eq(F.COMPONENT, secret.id),
            any_of(eq(F.COMPONENT, root.id), in_subtree(secret.id)),
            within(root.id, negate(eq(F.HOTLIST, private.id))),
            _named("no such component"),
        ):
            searched = await _refused(model, node, BOB)
            query = v1.StructuredQuery(filter=node)
            watched = await _watch_refused(model, v1.WatchRequest(caller=BOB, query=query))
            assert watched == searched
            resumed = v1.WatchRequest(caller=BOB, query=query, after_position=head)
            assert await _watch_refused(model, resumed) == searched
        hidden = await _watch_refused(
            model, _watch_of(BOB, eq(F.COMPONENT, secret.id)), f"component {secret.id}"
        )
        missing = await _watch_refused(model, _watch_of(BOB, eq(F.COMPONENT, NO_SUCH_ID)))
        assert hidden.replace(str(secret.id), "N") == missing.replace(str(NO_SUCH_ID), "N")

    async def test_a_watch_of_what_the_caller_may_see_hears_its_changes(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        hotlist = await make_hotlist(model, caller=ALICE, private=True, editors=["bob"])
        node = all_of(within(root.id, eq(F.HOTLIST, hotlist.id)), _named(root.name))
        stream = EventStream(model.watch(_watch_of(BOB, node), timeout=60))
        try:
            await stream.subscribed()
            issue = await make_issue(model, root.id, hotlist_ids=[hotlist.id])
            event = await stream.next()
            assert event.issue is not None
            assert event.issue.id == issue.id
        finally:
            await stream.close()

    async def test_a_watch_whose_hotlist_is_made_private_ends_as_a_new_watch_is_refused(
        self, model: v1.ModelStub
    ) -> None:
        """Not a stream silently matching nothing from then on.

        A hotlist's privacy is no change of the feed: the watch learns of it
        after the next change it reads (here, an issue it does not watch; a
        backend may space its checks by a few seconds) and
        ends with the INVALID_ARGUMENT a new watch of the query gets.
        """
        root = await make_component(model)
        hotlist = await make_hotlist(model, caller=ALICE)
        watched = _watch_of(BOB, within(root.id, eq(F.HOTLIST, hotlist.id)))
        stream = EventStream(model.watch(watched, timeout=60))
        try:
            await stream.subscribed()
            await model.update_hotlist(
                v1.UpdateHotlistRequest(
                    caller=ALICE,
                    hotlist=v1.Hotlist(id=hotlist.id, private=True),
                    update_mask=FieldMask(paths=["private"]),
                )
            )
            await make_issue(model, (await make_component(model)).id)
            with pytest.raises(GRPCError) as ended:
                await stream.next()
        finally:
            await stream.close()
        refused = await _watch_refused(model, watched, f"hotlist {hotlist.id}")
        assert (ended.value.status, ended.value.message) == (Status.INVALID_ARGUMENT, refused)

    async def test_a_watch_whose_component_is_restricted_ends_as_a_new_watch_is_refused(
        self, model: v1.ModelStub
    ) -> None:
        """The component's change is in the feed: the watch ends at it, naming the component."""
        root = await make_component(model)
        watched = _watch_of(BOB, any_of(eq(F.COMPONENT, root.id), _named(root.name)))
        stream = EventStream(model.watch(watched, timeout=60))
        try:
            await stream.subscribed()
            await model.update_component(
                v1.UpdateComponentRequest(
                    caller=ADMIN,
                    component=v1.Component(id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]),
                    update_mask=FieldMask(paths=["acl"]),
                )
            )
            with pytest.raises(GRPCError) as ended:
                await stream.next()
        finally:
            await stream.close()
        refused = await _watch_refused(model, watched, f"component {root.id}")
        assert (ended.value.status, ended.value.message) == (Status.INVALID_ARGUMENT, refused)


def _watch_of(caller: v1.Caller, node: v1.SearchNode) -> v1.WatchRequest:
    return v1.WatchRequest(caller=caller, query=v1.StructuredQuery(filter=node))
