"""Demo data for ``bugless dev --demo``, written through the real services.

People are created with ``bugless auth user add`` (the Authenticator's own
command, so their passwords are hashed like anyone's; nobody knows them — an
administrator can set one with ``bugless auth user set-password``). Everything else
goes through the Model's gRPC API as those people, exactly as the frontends
call it: each issue is created by its reporter and changed by whoever would
change it, so the history pages show a believable team at work, and the
Model's ACLs apply (the Security component is visible to its team and to
administrators only).

The data is generated from a fixed seed, so two demo trackers look alike.
Seeding runs once per state directory (recorded in its version file).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bugless_core.clients import call
from bugless_core.issue_fields import is_open
from bugless_dev._devstack import Running, all_of
from bugless_dev._state import StateDir
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ISSUE_COUNT = 300
_PARALLEL = 12
_SECURITY = "security-team"

#: username, display name, groups.
PEOPLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("alice", "Alice Chen", ("platform", _SECURITY)),
    ("bob", "Bob Okafor", ("platform",)),
    ("carol", "Carol Díaz", ("frontend",)),
    ("dan", "Dan Novak", ("frontend",)),
    ("erin", "Erin Walsh", ("devtools",)),
    ("farid", "Farid Haddad", ("devtools", _SECURITY)),
    ("grace", "Grace Kim", ("platform",)),
    ("hiro", "Hiro Tanaka", ("frontend",)),
)

#: Top-level component → (team group, description, {child: subjects}).
TREE: dict[str, tuple[str, str, dict[str, tuple[str, ...]]]] = {
    "Platform": (
        "platform",
        "Shared infrastructure every service runs on.",
        {
            "Storage": ("the blob store", "disk quota checks", "the backup job", "replica lag"),
            "Networking": ("the load balancer", "DNS resolution", "TLS renewal", "the VPN"),
            "Compute": ("the scheduler", "node autoscaling", "pod evictions", "cron jobs"),
        },
    ),
    "Web": (
        "frontend",
        "The web UI people use every day.",
        {
            "Search": ("the search box", "saved searches", "result paging", "query suggestions"),
            "Issue page": ("the comment editor", "the history timeline", "the CC picker"),
            "Accessibility": ("keyboard navigation", "screen reader labels", "colour contrast"),
        },
    ),
    "Developer Tools": (
        "devtools",
        "Build, test and release tooling.",
        {
            "CI": ("the flaky test detector", "build caching", "the merge queue"),
            "Build": ("incremental builds", "the dependency resolver", "wheel packaging"),
            "CLI": ("`bugless issue list`", "shell completion", "the config file"),
        },
    ),
}
SECURITY_SUBJECTS = ("session cookies", "the password reset flow", "certificate mapping")

PROBLEMS = (
    "times out under load",
    "returns a 500 after the last deploy",
    "is slow for large teams",
    "ignores the configured limit",
    "leaks memory over a few days",
    "shows stale data after an update",
    "fails when the name contains unicode",
    "logs at the wrong level",
    "crashes on an empty input",
    "needs better error messages",
    "should support pagination",
    "should be configurable per team",
)
COMMENTS = (
    "I can reproduce this on staging.",
    "Attaching the logs from this morning; the spike starts at 09:14.",
    "Is this a regression? It worked in the previous release.",
    "Looks related to the change we made last sprint.",
    "Bumping: this hit two customers today.",
    "Workaround for now: restart the job, it recovers.",
    "I have a fix in review.",
    "Could we add a test for this case?",
    "Not seeing it anymore since the config change.",
    "Let's discuss in the weekly triage.",
)
FIXED = ("Fixed in r{n}.", "The fix is deployed (r{n}).", "Landed r{n}; please verify.")


@dataclass
class _Team:
    """Who is who: user ids and Model callers."""

    ids: dict[str, str] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def caller(self, username: str) -> v1.Caller:
        return v1.Caller(user_id=self.ids[username], groups=list(self.groups[username]))

    def members(self, group: str) -> list[str]:
        return [name for name, groups in self.groups.items() if group in groups]


@dataclass
class _Area:
    component_id: int
    team: str
    subjects: Sequence[str]
    security: bool = False


async def seed_demo(running: Running, state: StateDir, echo: Callable[[str], None]) -> None:
    """Seed once per state directory; a partial earlier run is reported, not repeated."""
    if state.info.get("demo_seeded"):
        echo("  demo data: already seeded in this state directory")
        return
    channel = running.model.channel()
    try:
        # Each call acts for the person its request names, by an assertion the
        # Authenticator issues to this administrator's tool.
        model = running.stack.acting_model(v1.ModelStub(channel))
        admin = running.admin.caller
        existing = await call(
            model.list_components, v1.ListComponentsRequest(caller=admin, include_archived=True)
        )
        if any(c.path == "Platform" for c in existing.components):
            echo(
                "  demo data: a component `Platform` exists already; not seeding (--reset to redo)"
            )
            return
        echo(f"  demo data: {len(PEOPLE)} people, components, hotlists, {ISSUE_COUNT} issues…")
        team = await _create_people(running)
        areas = await _create_components(model, admin, team)
        issues = await _create_issues(model, team, areas)
        await _relate(model, team, issues, areas)
        await _create_hotlists(model, team, issues)
        await _give_the_admin_work(model, admin, issues)
        await call(
            model.create_saved_search,
            v1.CreateSavedSearchRequest(caller=admin, name="Urgent and open", query="is:open p<p2"),
        )
    finally:
        channel.close()
    state.remember(demo_seeded=True)
    # Named, so that a newcomer can sign in as one (no command lists users).
    names = ", ".join(username for username, _, _ in PEOPLE)
    echo(
        f"  demo data: done; its people are {names} (passwords unknown: "
        f'bugless auth user set-password {PEOPLE[0][0]} --database-url "$BUGLESS_DEV_DATABASE_URL" '
        "sets one)"
    )


async def _create_people(running: Running) -> _Team:
    team = _Team()
    auth_channel = running.auth.channel()
    try:
        auth = v1.AuthenticatorStub(auth_channel)
        found = await call(
            auth.lookup_users, v1.LookupUsersRequest(usernames=[p[0] for p in PEOPLE])
        )
        team.ids = {user.username: user.user_id for user in found.users}
    finally:
        auth_channel.close()

    async def add(username: str, display: str, groups: Sequence[str]) -> None:
        created = await asyncio.to_thread(
            running.stack.add_user,
            username,
            f"demo-{random.SystemRandom().getrandbits(96):x}",
            display_name=display,
            email=f"{username}@example.com",
            groups=groups,
        )
        team.ids[username] = created["user_id"]

    await all_of(*(add(*p) for p in PEOPLE if p[0] not in team.ids))
    team.groups = {username: groups for username, _, groups in PEOPLE}
    return team


async def _create_components(model: v1.ModelStub, admin: v1.Caller, team: _Team) -> list[_Area]:
    areas: list[_Area] = []
    for name, (group, description, children) in TREE.items():
        parent = await call(
            model.create_component,
            v1.CreateComponentRequest(caller=admin, name=name, description=description),
        )
        for child, subjects in children.items():
            component = await call(
                model.create_component,
                v1.CreateComponentRequest(
                    caller=admin,
                    parent_id=parent.id,
                    name=child,
                    description=f"{child} ({name}).",
                    template=v1.IssueTemplate(
                        description="## What happened\n\n## What you expected\n\n## Steps\n"
                    ),
                ),
            )
            areas.append(_Area(component.id, group, subjects))
    security = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=admin,
            name="Security",
            description="Vulnerability reports. Visible to the security team only.",
            acl=[
                v1.AclEntry(principal=v1.Principal(group=_SECURITY), role=v1.Role.EDITOR),
                v1.AclEntry(principal=v1.Principal(user=team.ids["alice"]), role=v1.Role.ADMIN),
            ],
        ),
    )
    areas.append(_Area(security.id, _SECURITY, SECURITY_SUBJECTS, security=True))
    return areas


_TYPES = (
    [v1.IssueType.BUG] * 12
    + [v1.IssueType.FEATURE_REQUEST] * 4
    + [v1.IssueType.TASK, v1.IssueType.INTERNAL_CLEANUP, v1.IssueType.PROCESS]
)
_PRIORITIES = (
    [v1.Priority.P0]
    + [v1.Priority.P1] * 3
    + [v1.Priority.P2] * 6
    + [v1.Priority.P3] * 3
    + [v1.Priority.P4]
)


async def _create_issues(
    model: v1.ModelStub, team: _Team, areas: Sequence[_Area]
) -> list[v1.Issue]:
    rng = random.Random(2026)
    plans = []
    for number in range(ISSUE_COUNT):
        area = rng.choice(areas) if rng.random() > 0.04 else areas[-1]
        plans.append((number, area, random.Random(rng.getrandbits(64))))
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(number: int, area: _Area, plan_rng: random.Random) -> v1.Issue:
        async with gate:
            return await _issue_with_history(model, team, area, number, plan_rng)

    return await all_of(*(one(*plan) for plan in plans))


async def _issue_with_history(
    model: v1.ModelStub, team: _Team, area: _Area, number: int, rng: random.Random
) -> v1.Issue:
    members = team.members(area.team)
    everyone = members if area.security else list(team.ids)
    reporter = rng.choice(everyone)
    subject = rng.choice(area.subjects)
    title = f"{subject[0].upper()}{subject[1:]} {rng.choice(PROBLEMS)}"
    issue_type = v1.IssueType.VULNERABILITY if area.security else rng.choice(_TYPES)
    issue = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=team.caller(reporter),
            fields=v1.IssueFields(
                title=title,
                component_id=area.component_id,
                priority=rng.choice(_PRIORITIES),
                severity=rng.choice(list(v1.Severity)[1:]),
                type=issue_type,
            ),
            description=(
                f"Seen since {rng.choice(['Monday', 'the last deploy', 'the upgrade'])}: "
                f"{subject} {rng.choice(PROBLEMS)}.\n\n**Steps**\n\n1. Open {subject}\n"
                "2. Wait a minute\n\n*Expected*: it works. *Actual*: it does not."
            ),
            cc=[team.ids[p] for p in rng.sample(everyone, k=min(len(everyone), rng.randint(0, 2)))],
            idempotency_key=f"bugless-dev-demo-{number}",
        ),
    )

    async def change(
        by: str, comment: str = "", cc_add: Sequence[str] = (), **fields: object
    ) -> None:
        nonlocal issue
        fields = {k: v for k, v in fields.items() if getattr(issue, k) != v}
        cc_add = [p for p in cc_add if team.ids[p] not in issue.cc]
        if not (fields or cc_add or comment):
            return  # the Model refuses an empty change, as it should
        delta = v1.IssueDelta(
            fields=v1.IssueFields(**fields),  # type: ignore[arg-type]
            update_mask=FieldMask(paths=list(fields)),
            cc_add=[team.ids[p] for p in cc_add],
        )
        result = await call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=team.caller(by),
                issue_id=issue.id,
                expected_version=issue.version,
                delta=delta,
                comment=comment,
            ),
        )
        if result.issue is not None:
            issue = result.issue

    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        await change(rng.choice(everyone), rng.choice(COMMENTS))
    if rng.random() < 0.75:
        assignee = rng.choice(members)
        await change(
            rng.choice(members),
            rng.choice(["", "Triaged.", "Yours, I think."]),
            assignee=team.ids[assignee],
            status=v1.Status.ASSIGNED,
        )
        if rng.random() < 0.5:
            await change(assignee, "Looking into it.", status=v1.Status.ACCEPTED)
        if rng.random() < 0.2:
            await change(rng.choice(members), "Raising: this blocks the release.",
                         priority=v1.Priority.P1)  # fmt: skip
        if rng.random() < 0.3:
            await change(rng.choice(everyone), "", cc_add=[rng.choice(everyone)])
        roll = rng.random()
        if roll < 0.45:
            await change(assignee, rng.choice(FIXED).format(n=rng.randint(1000, 9999)),
                         status=v1.Status.FIXED)  # fmt: skip
            if rng.random() < 0.4:
                await change(reporter, "Verified, thanks!", status=v1.Status.VERIFIED)
        elif roll < 0.55:
            closed = rng.choice(
                [
                    v1.Status.WONT_FIX_NOT_REPRODUCIBLE,
                    v1.Status.WONT_FIX_INTENDED_BEHAVIOR,
                    v1.Status.WONT_FIX_OBSOLETE,
                ]
            )
            await change(assignee, "Closing; reopen if it comes back.", status=closed)
    return issue


async def _relate(
    model: v1.ModelStub, team: _Team, issues: list[v1.Issue], areas: Sequence[_Area]
) -> None:
    """Blocking links, parents and duplicates between issues of one component."""
    rng = random.Random(7)
    by_component: dict[int, list[v1.Issue]] = {}
    for issue in issues:
        by_component.setdefault(issue.component_id, []).append(issue)
    team_of = {area.component_id: area.team for area in areas}
    latest = {issue.id: issue for issue in issues}

    async def change(issue_id: int, by: str, delta: v1.IssueDelta, comment: str) -> None:
        result = await call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=team.caller(by),
                issue_id=issue_id,
                expected_version=latest[issue_id].version,
                delta=delta,
                comment=comment,
            ),
        )
        if result.issue is not None:
            latest[issue_id] = result.issue

    for component_id, group in sorted(by_component.items()):
        if len(group) < 4:
            continue
        members = team.members(team_of[component_id])
        # Relations also write an entry on the other issue: refresh versions first.
        pairs = {tuple(sorted(i.id for i in rng.sample(group, 2))) for _ in range(len(group) // 6)}
        for first_id, second_id in sorted(pairs):  # lower id blocks higher: never a cycle
            first, second = latest[first_id], latest[second_id]
            await _refresh(model, team, members[0], latest, (first.id, second.id))
            await change(
                first.id,
                rng.choice(members),
                v1.IssueDelta(blocking_add=[second.id]),
                f"This has to land before #{second.id}.",
            )
        parent, *children = rng.sample(group, 3)
        for child in children:
            await _refresh(model, team, members[0], latest, (child.id, parent.id))
            await change(
                child.id,
                rng.choice(members),
                v1.IssueDelta(
                    fields=v1.IssueFields(parent_id=parent.id),
                    update_mask=FieldMask(paths=["parent_id"]),
                ),
                "",
            )
        original, duplicate = rng.sample(group, 2)
        await _refresh(model, team, members[0], latest, (duplicate.id, original.id))
        await change(
            duplicate.id,
            rng.choice(members),
            v1.IssueDelta(
                fields=v1.IssueFields(duplicate_of_id=original.id, status=v1.Status.DUPLICATE),
                update_mask=FieldMask(paths=["duplicate_of_id", "status"]),
            ),
            f"Same root cause as #{original.id}.",
        )
    issues[:] = [latest[issue.id] for issue in issues]


async def _refresh(
    model: v1.ModelStub,
    team: _Team,
    username: str,
    latest: dict[int, v1.Issue],
    issue_ids: Sequence[int],
) -> None:
    found = await call(
        model.batch_get_issues,
        v1.BatchGetIssuesRequest(caller=team.caller(username), issue_ids=list(issue_ids)),
    )
    for issue in found.issues:
        latest[issue.id] = issue


async def _create_hotlists(model: v1.ModelStub, team: _Team, issues: list[v1.Issue]) -> None:
    rng = random.Random(11)
    visible = [i for i in issues if i.type != v1.IssueType.VULNERABILITY]
    urgent = [i for i in visible if is_open(i.status) and i.priority <= v1.Priority.P1]
    cleanup = [i for i in visible if i.type == v1.IssueType.INTERNAL_CLEANUP]
    plans = (
        ("alice", "Release 2.4 blockers", "Must be fixed before the 2.4 cut.", ["bob", "grace"],
         False, urgent[:15]),
        ("erin", "Tech debt", "Cleanups worth a Friday afternoon.", ["farid"], False, cleanup[:20]),
        ("bob", "Oncall follow-ups", "From last week's incidents.", ["grace"], True,
         rng.sample(visible, 10)),
    )  # fmt: skip
    for owner, name, description, editors, private, chosen in plans:
        caller = team.caller(owner)
        hotlist = await call(
            model.create_hotlist,
            v1.CreateHotlistRequest(
                caller=caller,
                name=name,
                description=description,
                editors=[team.ids[e] for e in editors],
                private=private,
            ),
        )
        if not chosen:
            continue
        await call(
            model.add_hotlist_items,
            v1.AddHotlistItemsRequest(
                caller=caller, hotlist_id=hotlist.id, issue_ids=[i.id for i in chosen], position=-1
            ),
        )
        for issue in chosen[:3]:
            await call(
                model.set_hotlist_item_note,
                v1.SetHotlistItemNoteRequest(
                    caller=caller, hotlist_id=hotlist.id, issue_id=issue.id,
                    note=rng.choice(["owner: " + owner, "needs a design doc", "customer-facing"]),
                ),
            )  # fmt: skip
        if len(chosen) > 2:
            await call(
                model.rank_hotlist_item,
                v1.RankHotlistItemRequest(
                    caller=caller, hotlist_id=hotlist.id, issue_id=chosen[-1].id, position=0
                ),
            )


#: What of the demo is the administrator's (the one person who signs in to a
#: fresh demo), so each section of their home page lists something: assigned
#: to them, fixed for them to verify, CCing them, starred by them.
ADMIN_ASSIGNED, ADMIN_TO_VERIFY, ADMIN_CC, ADMIN_STARRED = 4, 2, 3, 2


async def _give_the_admin_work(
    model: v1.ModelStub, admin: v1.Caller, issues: Sequence[v1.Issue]
) -> None:
    """Put the administrator on a few open issues (at their current versions)."""
    rng = random.Random(15)
    found = await call(
        model.batch_get_issues,
        v1.BatchGetIssuesRequest(caller=admin, issue_ids=[i.id for i in issues]),
    )
    visible = [i for i in found.issues if i.type != v1.IssueType.VULNERABILITY]
    fixed = [i for i in visible if i.status == v1.Status.FIXED]
    open_issues = [i for i in visible if is_open(i.status)]
    picked = rng.sample(open_issues, ADMIN_ASSIGNED + ADMIN_CC + ADMIN_STARRED)
    me = admin.user_id

    async def change(issue: v1.Issue, delta: v1.IssueDelta, comment: str = "") -> None:
        await call(
            model.change_issue,
            v1.ChangeIssueRequest(
                caller=admin,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=delta,
                comment=comment,
            ),
        )

    for issue in picked[:ADMIN_ASSIGNED]:
        assign = v1.IssueFields(assignee=me, status=v1.Status.ASSIGNED)
        mask = FieldMask(paths=["assignee", "status"])
        await change(issue, v1.IssueDelta(fields=assign, update_mask=mask), "Taking this one.")
    for issue in rng.sample(fixed, min(ADMIN_TO_VERIFY, len(fixed))):
        verify = v1.IssueDelta(
            fields=v1.IssueFields(verifier=me), update_mask=FieldMask(["verifier"])
        )
        await change(issue, verify)
    for issue in picked[ADMIN_ASSIGNED : ADMIN_ASSIGNED + ADMIN_CC]:
        await change(issue, v1.IssueDelta(cc_add=[me]))
    for issue in picked[ADMIN_ASSIGNED + ADMIN_CC :]:
        await call(
            model.star_issue, v1.StarIssueRequest(caller=admin, issue_id=issue.id, starred=True)
        )
