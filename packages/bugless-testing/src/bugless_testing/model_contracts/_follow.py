"""Contract: stars, subscriptions, mutes and the notifier's audience calls."""

from __future__ import annotations

from grpclib.const import Status

from bugless_core.search.build import term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    UNKNOWN_ID,
    change,
    delta,
    eq,
    expect_error,
    fresh_caller,
    get_issue,
    group_entry,
    make_component,
    make_hotlist,
    make_issue,
    search_all,
    search_ids,
    sort,
    unique,
    update_component,
    user_entry,
    within,
)

F = v1.SearchField


async def _star(model: v1.ModelStub, caller: v1.Caller, issue_id: int, starred: bool = True) -> int:
    answer = await model.star_issue(
        v1.StarIssueRequest(caller=caller, issue_id=issue_id, starred=starred)
    )
    return answer.star_count


class FollowContract:
    """Stars, subscriptions, settings, mutes and the notifier's audience.

    Pins down: a star counts once per person (starring twice or unstarring
    what was never starred changes nothing), shows on the issue as the count
    and as ``starred`` for the caller, adds no history entry, is searchable
    (``star:<user>``) and sortable; nobody stars what they cannot see;
    a mute shows on the issue as ``muted`` for the person who muted it only
    (reads by id, masked or not, search results, the reply of a change);
    subscriptions need a visible component or a readable saved search, but
    anyone may unstar and unsubscribe whatever became hidden from them; the
    subscriptions' version moves with every change the notifier's list of
    them shows, and a caller holding the current one gets no rows; the
    audience call answers admins only and lists starrers, subtree
    subscribers of ancestors and muters; GetNotificationViews (admins only)
    names exactly the candidate recipients whose principals (user or group)
    may see the issue, with the hotlists and components each may see and
    each component's path as they see it (``…>Net`` below one they may not).
    Notification settings are :class:`NotificationSettingsContract`'s.
    """

    async def test_a_star_counts_once_per_person_and_shows_on_the_issue(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        assert await _star(model, BOB, issue.id) == 1
        assert await _star(model, BOB, issue.id) == 1
        assert await _star(model, CAROL, issue.id) == 2
        seen = await get_issue(model, issue.id, BOB)
        assert (seen.star_count, seen.starred, seen.version) == (2, True, issue.version)
        assert not (await get_issue(model, issue.id, ALICE)).starred
        assert await _star(model, BOB, issue.id, starred=False) == 1
        assert await _star(model, BOB, issue.id, starred=False) == 1
        assert not (await get_issue(model, issue.id, BOB)).starred

    async def test_muted_shows_for_the_caller_who_muted_and_flips_back_on_unmute(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        others = (BOB, ADMIN)

        async def seen_muted(caller: v1.Caller) -> list[bool]:
            """``muted`` in each read of the issue as ``caller``."""
            by_id = [await get_issue(model, issue.id, caller)]
            for paths in (["muted"], ["title", "muted", "starred"]):
                got = await model.batch_get_issues(
                    v1.BatchGetIssuesRequest(
                        caller=caller, issue_ids=[issue.id], read_mask=FieldMask(paths=paths)
                    )
                )
                by_id.extend(got.issues)
            by_id.extend(await search_all(model, within(comp.id), caller=caller))
            masked = await model.search_issues(
                v1.SearchIssuesRequest(
                    caller=caller,
                    query=v1.StructuredQuery(filter=within(comp.id)),
                    read_mask=FieldMask(paths=["muted"]),
                )
            )
            by_id.extend(masked.issues)
            assert [i.id for i in by_id] == [issue.id] * 5
            return [i.muted for i in by_id]

        assert await seen_muted(ALICE) == [False] * 5
        for _ in range(2):  # muting twice is muting once
            await model.set_issue_mute(
                v1.SetIssueMuteRequest(caller=ALICE, issue_id=issue.id, muted=True)
            )
        assert await seen_muted(ALICE) == [True] * 5
        for other in others:
            assert await seen_muted(other) == [False] * 5
        # A star is not a mute, and a change's reply says what a read says.
        await _star(model, ALICE, issue.id)
        changed = await change(model, issue, delta(title=unique("Muted")), caller=ALICE)
        assert (changed.issue.muted, changed.issue.starred) == (True, True)
        await model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=ALICE, issue_id=issue.id, muted=False)
        )
        assert await seen_muted(ALICE) == [False] * 5
        after = await get_issue(model, issue.id, ALICE)
        assert (after.muted, after.starred, after.version) == (False, True, changed.issue.version)

    async def test_stars_are_searchable_and_sortable(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        one, two, none = [await make_issue(model, comp.id) for _ in range(3)]
        starrer = fresh_caller("starrer")
        await _star(model, starrer, one.id)
        await _star(model, starrer, two.id)
        await _star(model, BOB, two.id)
        mine = within(comp.id, eq(F.STARRED_BY, starrer.user_id))
        assert sorted(await search_ids(model, mine, caller=starrer)) == sorted([one.id, two.id])
        by_stars = await search_ids(
            model, within(comp.id), order=[sort(v1.SortField.STARS, descending=True)]
        )
        assert by_stars[0] == two.id
        assert by_stars[-1] in {none.id, one.id}
        any_star = within(
            comp.id, v1.SearchNode(term=v1.SearchTerm(field=F.STARRED_BY, op=v1.SearchOperator.ANY))
        )
        assert sorted(await search_ids(model, any_star)) == sorted([one.id, two.id])
        # votecount (Google Issue Tracker's +1 count): how many starred it.
        op = v1.SearchOperator
        assert await search_ids(model, within(comp.id, term(F.STAR_COUNT, op.GE, 2))) == [two.id]
        assert await search_ids(model, within(comp.id, term(F.STAR_COUNT, op.EQ, 1))) == [one.id]
        assert await search_ids(model, within(comp.id, term(F.STAR_COUNT, op.LT, 1))) == [none.id]
        assert await search_ids(model, within(comp.id, term(F.STAR_COUNT, op.EQ, 0, 2))) == [
            none.id,
            two.id,
        ]

    async def test_nobody_stars_or_mutes_an_issue_they_cannot_see(
        self, model: v1.ModelStub
    ) -> None:
        hidden = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)])
        issue = await make_issue(model, hidden.id)
        await expect_error(_star(model, BOB, issue.id), Status.NOT_FOUND, str(issue.id))
        await expect_error(
            model.set_issue_mute(v1.SetIssueMuteRequest(caller=BOB, issue_id=issue.id, muted=True)),
            Status.NOT_FOUND,
        )
        assert (await get_issue(model, issue.id)).star_count == 0

    async def test_what_a_person_can_no_longer_see_they_can_still_stop_following(
        self, model: v1.ModelStub
    ) -> None:
        """A star, a component or saved-search subscription outlives the access behind it.

        Taking it back needs no sight of the thing, and its answer says
        nothing of it (a star count of 0 whether the issue exists or not);
        following anew still needs sight.
        """
        person = fresh_caller("leaver")
        comp = await make_component(
            model,
            acl=[
                user_entry(ALICE.user_id, v1.Role.ADMIN),
                user_entry(person.user_id, v1.Role.VIEWER),
            ],
        )
        issue = await make_issue(model, comp.id)
        await _star(model, ALICE, issue.id)
        assert await _star(model, person, issue.id) == 2
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(caller=person, component_id=comp.id, subscribed=True)
        )
        search = await model.create_saved_search(
            v1.CreateSavedSearchRequest(
                caller=ALICE,
                name="shared",
                query="is:open",
                readers=[v1.Principal(user=person.user_id)],
            )
        )
        subs = await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=person, saved_search_id=search.id, subscribed=True
            )
        )
        assert subs.saved_search_ids == [search.id]
        # The component closes to ALICE alone; the search stops being shared.
        await update_component(
            model, v1.Component(id=comp.id, acl=[user_entry(ALICE.user_id, v1.Role.ADMIN)]), "acl"
        )
        await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=ALICE,
                saved_search=v1.SavedSearch(id=search.id, readers=[]),
                update_mask=FieldMask(paths=["readers"]),
            )
        )
        await expect_error(get_issue(model, issue.id, person), Status.NOT_FOUND)
        await expect_error(_star(model, person, issue.id), Status.NOT_FOUND)
        assert await _star(model, person, issue.id, starred=False) == 0
        assert await _star(model, person, UNKNOWN_ID, starred=False) == 0
        assert (await get_issue(model, issue.id)).star_count == 1  # ALICE's
        left = await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=person, component_id=comp.id, subscribed=False
            )
        )
        assert left.components == []
        left = await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=person, saved_search_id=search.id, subscribed=False
            )
        )
        assert left.saved_search_ids == []
        await expect_error(
            model.set_component_subscription(
                v1.SetComponentSubscriptionRequest(
                    caller=person, component_id=comp.id, subscribed=True
                )
            ),
            Status.NOT_FOUND,
        )
        await expect_error(
            model.set_saved_search_subscription(
                v1.SetSavedSearchSubscriptionRequest(
                    caller=person, saved_search_id=search.id, subscribed=True
                )
            ),
            Status.NOT_FOUND,
        )

    async def test_subscriptions_need_a_visible_component_or_readable_search(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        hidden = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)])
        person = fresh_caller("subscriber")
        subs = await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=person, component_id=comp.id, subscribed=True, include_subtree=True
            )
        )
        assert subs.components == [
            v1.ComponentSubscription(component_id=comp.id, include_subtree=True)
        ]
        await expect_error(
            model.set_component_subscription(
                v1.SetComponentSubscriptionRequest(
                    caller=person, component_id=hidden.id, subscribed=True
                )
            ),
            Status.NOT_FOUND,
        )
        search = await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=ALICE, name="mine", query="is:open")
        )
        await expect_error(
            model.set_saved_search_subscription(
                v1.SetSavedSearchSubscriptionRequest(
                    caller=person, saved_search_id=search.id, subscribed=True
                )
            ),
            Status.NOT_FOUND,
        )
        own = await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=person, name="own", query="is:open")
        )
        subs = await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=person, saved_search_id=own.id, subscribed=True
            )
        )
        assert subs.saved_search_ids == [own.id]
        listed = await model.list_subscriptions(v1.ListSubscriptionsRequest(caller=person))
        assert listed == subs
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(caller=person, component_id=comp.id)
        )
        listed = await model.list_subscriptions(v1.ListSubscriptionsRequest(caller=person))
        assert listed.components == []
        found: list[v1.SavedSearchSubscription] = []
        token = ""
        while True:
            page = await model.list_saved_search_subscriptions(
                v1.ListSavedSearchSubscriptionsRequest(
                    caller=ADMIN, page=v1.PageRequest(page_size=2, page_token=token)
                )
            )
            found += [s for s in page.subscriptions if s.user_id == person.user_id]
            token = page.next_page_token
            if not token:
                break
        assert [s.saved_search.query for s in found if s.saved_search] == ["is:open"]

    async def test_the_subscriptions_version_moves_with_every_change_the_list_shows(
        self, model: v1.ModelStub
    ) -> None:
        """A caller holding the list of the current version (changed_after) gets no rows.

        The version moves on subscribing, unsubscribing, and an edit or a
        deletion of a saved search (the notifier lists again only then), and
        a caller holding an older version gets the list.
        """
        person = fresh_caller("watcher")
        search = await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=person, name="watched", query="is:open")
        )

        async def listed(changed_after: int = 0) -> v1.ListSavedSearchSubscriptionsResponse:
            return await model.list_saved_search_subscriptions(
                v1.ListSavedSearchSubscriptionsRequest(
                    caller=ADMIN, page=v1.PageRequest(page_size=1), changed_after=changed_after
                )
            )

        async def subscribe(subscribed: bool) -> None:
            await model.set_saved_search_subscription(
                v1.SetSavedSearchSubscriptionRequest(
                    caller=person, saved_search_id=search.id, subscribed=subscribed
                )
            )

        versions = [(await listed()).version]
        assert versions[0] > 0
        assert await listed(versions[0]) == v1.ListSavedSearchSubscriptionsResponse(
            version=versions[0]
        ), "unchanged: the version alone"
        await subscribe(True)
        versions.append((await listed()).version)
        moved = await listed(versions[0])
        assert moved.version == versions[1] > versions[0]
        assert moved.subscriptions, "an older version gets the list"
        await model.update_saved_search(
            v1.UpdateSavedSearchRequest(
                caller=person,
                saved_search=v1.SavedSearch(id=search.id, query="is:closed"),
                update_mask=FieldMask(paths=["query"]),
            )
        )
        versions.append((await listed()).version)
        await subscribe(False)
        versions.append((await listed()).version)
        await subscribe(True)
        await model.delete_saved_search(
            v1.DeleteSavedSearchRequest(caller=person, saved_search_id=search.id)
        )
        versions.append((await listed()).version)
        assert versions == sorted(set(versions)), "each change moved the version"

    async def test_the_audience_lists_starrers_subscribers_and_muters_for_admins(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        child = await make_component(model, parent_id=root.id)
        issue = await make_issue(model, child.id)
        tree, direct, other, both = (fresh_caller(n) for n in ("tree", "direct", "other", "both"))
        for component, subtree in ((root, True), (child, False)):
            await model.set_component_subscription(
                v1.SetComponentSubscriptionRequest(
                    caller=both,
                    component_id=component.id,
                    subscribed=True,
                    include_subtree=subtree,
                )
            )
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=tree, component_id=root.id, subscribed=True, include_subtree=True
            )
        )
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(caller=other, component_id=root.id, subscribed=True)
        )
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=direct, component_id=child.id, subscribed=True
            )
        )
        await _star(model, BOB, issue.id)
        muted = await model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=CAROL, issue_id=issue.id, muted=True)
        )
        assert issue.id in muted.muted_issue_ids
        audience = await model.get_issue_audience(
            v1.GetIssueAudienceRequest(caller=ADMIN, issue_id=issue.id)
        )
        assert audience.starred_by == [BOB.user_id]
        assert sorted(audience.component_subscribers) == sorted(
            [tree.user_id, direct.user_id, both.user_id]
        )
        assert audience.muted_by == [CAROL.user_id]
        # Which subscription reaches each subscriber: the nearest component.
        nearest = {tree.user_id: root.id, direct.user_id: child.id, both.user_id: child.id}
        assert dict(audience.subscribed_components) == nearest
        views = await model.get_notification_views(
            v1.GetNotificationViewsRequest(caller=ADMIN, issue_id=issue.id, viewers=[tree])
        )
        assert views.audience is not None
        assert dict(views.audience.subscribed_components) == nearest
        # The ancestor's path comes along, to name it in a mail.
        assert dict(views.component_paths) == {root.id: root.path, child.id: child.path}
        assert sorted(views.viewers[0].component_ids) == sorted([root.id, child.id])
        await expect_error(
            model.get_issue_audience(v1.GetIssueAudienceRequest(caller=BOB, issue_id=issue.id)),
            Status.PERMISSION_DENIED,
        )

    async def test_notification_views_give_each_recipient_the_paths_they_see(
        self, model: v1.ModelStub
    ) -> None:
        """A recipient who may view Net but not Secret above it is given ``…>Net``.

        A mail names components by path (the issue's, a move's, the
        subscription that brought it): the whole path told such a recipient
        Secret's name, which no listing of theirs shows. Each viewer's
        ``component_paths`` is the path GetComponent gives them (by user or
        by group); one who may view every component above reads it whole,
        and the shared map stays whole for notifiers older than the field.
        """
        team = fresh_caller("team").user_id
        owner, bob = fresh_caller("owner"), fresh_caller("bob")
        member = fresh_caller("member", groups=[team])
        top = await make_component(model, name=unique("Open"))
        secret = await make_component(
            model,
            parent_id=top.id,
            name=unique("Secret"),
            acl=[user_entry(owner.user_id, v1.Role.ADMIN)],
        )
        net = await model.create_component(
            v1.CreateComponentRequest(
                caller=owner,
                parent_id=secret.id,
                name="Net",
                acl=[user_entry(bob.user_id, v1.Role.EDITOR), group_entry(team, v1.Role.VIEWER)],
            )
        )
        issue = await make_issue(model, net.id, caller=bob)
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=owner, component_id=secret.id, subscribed=True, include_subtree=True
            )
        )
        views = await model.get_notification_views(
            v1.GetNotificationViewsRequest(
                caller=ADMIN, issue_id=issue.id, viewers=[bob, member, owner]
            )
        )
        whole = f"{top.name}>{secret.name}>Net"
        assert dict(views.component_paths) == {secret.id: secret.path, net.id: whole}
        by_user = {v.user_id: v for v in views.viewers}
        for person in (bob, member):
            assert dict(by_user[person.user_id].component_paths) == {net.id: "…>Net"}
            assert by_user[person.user_id].component_ids == [net.id]
        assert dict(by_user[owner.user_id].component_paths) == {
            secret.id: secret.path,
            net.id: whole,
        }

    async def test_notification_views_check_each_recipient_by_user_and_group(
        self, model: v1.ModelStub
    ) -> None:
        team = fresh_caller("team").user_id
        member = fresh_caller("member", groups=[team])
        outsider, owner = fresh_caller("outsider"), fresh_caller("owner")
        secret = await make_component(model, acl=[user_entry(owner.user_id, v1.Role.EDITOR)])
        shared = await make_component(
            model,
            acl=[user_entry(owner.user_id, v1.Role.EDITOR), group_entry(team, v1.Role.VIEWER)],
        )
        hidden = await make_hotlist(model, caller=owner, private=True)
        issue = await make_issue(
            model, secret.id, caller=owner, hotlist_ids=[hidden.id], description="first"
        )
        moved = await change(
            model, issue, delta(component_id=shared.id), comment="moved", caller=owner
        )
        await _star(model, member, issue.id)
        await model.set_issue_mute(
            v1.SetIssueMuteRequest(caller=owner, issue_id=issue.id, muted=True)
        )
        views = await model.get_notification_views(
            v1.GetNotificationViewsRequest(
                caller=ADMIN,
                issue_id=issue.id,
                versions=[moved.entry.version, 1, 999],
                viewers=[outsider, member, owner],
            )
        )
        assert views.issue is not None
        assert views.issue.id == issue.id
        assert [e.version for e in views.entries] == [1, moved.entry.version]
        assert views.entries[1].comment == "moved"
        assert views.audience is not None
        assert views.audience.starred_by == [member.user_id]
        assert dict(views.component_paths) == {secret.id: secret.path, shared.id: shared.path}
        by_user = {v.user_id: v for v in views.viewers}
        assert list(by_user) == [member.user_id, owner.user_id]
        assert (by_user[member.user_id].hotlist_ids, by_user[member.user_id].starred) == (
            [],
            True,
        )
        assert by_user[member.user_id].component_ids == [shared.id]
        assert by_user[owner.user_id].hotlist_ids == [hidden.id]
        assert dict(views.hotlist_names) == {hidden.id: hidden.name}
        assert sorted(by_user[owner.user_id].component_ids) == sorted([secret.id, shared.id])
        settings = {s.user_id: s for s in views.settings}
        assert set(settings) == {outsider.user_id, member.user_id, owner.user_id}
        assert settings[owner.user_id].muted_issue_ids == [issue.id]
        assert settings[member.user_id].channel == "email"
        # Without the group, the member is no recipient.
        bare = v1.Caller(user_id=member.user_id)
        alone = await model.get_notification_views(
            v1.GetNotificationViewsRequest(caller=ADMIN, issue_id=issue.id, viewers=[bare])
        )
        assert (alone.viewers, alone.entries) == ([], [])
        await expect_error(
            model.get_notification_views(
                v1.GetNotificationViewsRequest(caller=owner, issue_id=issue.id)
            ),
            Status.PERMISSION_DENIED,
        )
        await expect_error(
            model.get_notification_views(
                v1.GetNotificationViewsRequest(caller=ADMIN, issue_id=issue.id, versions=[0])
            ),
            Status.INVALID_ARGUMENT,
            "versions[0]",
        )
