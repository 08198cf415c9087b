"""CheckViewers through the API, and the CLI's warning after naming people on an issue.

Real services: the API gateway, the Model judging people by the groups the
Authenticator knows, PostgreSQL; the CLI in subprocesses as a script runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import sys
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, bugless_cli, extra_api, signed_in

from bugless_core.errors import FailedPrecondition, InvalidArgument, MethodNotServed, NotFound
from bugless_dev.processes import spawn
from bugless_proto import v1


def _entry(principal: v1.Principal, role: v1.Role) -> v1.AclEntry:
    return v1.AclEntry(principal=principal, role=role)


async def test_the_people_an_issue_names_who_cannot_view_it_are_named_by_username(
    connect_as: ConnectAs,
) -> None:
    boss, viewer, outsider, greedy = await signed_in(
        connect_as, "boss", "viewer", "outsider", "greedy"
    )
    name = f"Hidden-{secrets.token_hex(3)}"
    component = await boss.create_component(
        name,
        acl=[
            _entry(v1.Principal(user="boss"), v1.Role.ADMIN),
            _entry(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
        ],
    )
    issue = await boss.create_issue(
        "Who sees this", component.id, assignee="outsider", cc=["viewer", "boss"]
    )

    # A viewer asks: by the group only the Authenticator knows, she sees it.
    answer = await viewer.check_viewers(issue.id, ["outsider", "viewer", "boss", "outsider"])

    assert answer.component_path == name
    assert [(b.user_id, b.reason) for b in answer.cannot_view] == [
        ("outsider", v1.ViewerBlock.NO_ACCESS)
    ]
    # Nobody named: everyone the issue names, by username.
    everyone = await viewer.check_viewers(issue.id)
    assert [(b.user_id, b.reason) for b in everyone.cannot_view] == [
        ("outsider", v1.ViewerBlock.NO_ACCESS)
    ]
    # Only the people the issue names: a bot cannot learn who may view the
    # component by asking about anyone (review29), known or not.
    ghost = f"ghost-{secrets.token_hex(3)}"
    for index, names in ((0, ["greedy"]), (1, ["viewer", ghost])):
        with pytest.raises(
            InvalidArgument, match=rf"user_ids\[{index}\]: issue {issue.id} does not"
        ):
            await viewer.check_viewers(issue.id, names)
    assert greedy is not None
    # Whoever cannot view the issue cannot ask about it, whoever they name.
    for asked in (["viewer"], []):
        with pytest.raises(NotFound, match=f"issue {issue.id}"):
            await outsider.check_viewers(issue.id, asked)
    with pytest.raises(InvalidArgument, match="user_ids: at most 100 per call, got 101"):
        await viewer.check_viewers(issue.id, [f"u{i}" for i in range(101)])
    with pytest.raises(InvalidArgument, match=r"user_ids\[1\]"):
        await viewer.check_viewers(issue.id, ["boss", " "])


async def test_the_cli_warns_on_stderr_after_naming_people_who_cannot_view(
    served_api: dict[str, str], connect_as: ConnectAs, bots: Bots
) -> None:
    boss = connect_as("boss")
    name = f"Closed-{secrets.token_hex(3)}"
    component = await boss.create_component(
        name,
        acl=[
            _entry(v1.Principal(user="cli-bot"), v1.Role.ADMIN),
            _entry(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
        ],
    )

    made = bugless_cli(
        served_api,
        "issue", "create", "--title", "Hidden work", "--component", name,
        "--assignee", "outsider", "--cc", "viewer", "--json",
    )  # fmt: skip

    issue = json.loads(made.stdout)  # the warning leaves the JSON alone
    assert issue["assignee"] == "outsider"
    # Worded as the web's banner (bugless_core.viewer_warnings), with what to do.
    assert made.stderr.strip() == (
        f"warning: outsider cannot view component {name}: they will not see issue "
        f"{issue['id']} or get mail about it. An admin of {name} can add them to its "
        "access list."
    )
    added = bugless_cli(served_api, "issue", "update", str(issue["id"]), "--cc-add", "greedy")
    assert added.stderr.strip() == (
        f"warning: greedy cannot view component {name}: they will not see issue "
        f"{issue['id']} or get mail about it. An admin of {name} can add them to its "
        "access list."
    )
    leaver = f"leaver-{secrets.token_hex(3)}"
    bots.stack.add_user(leaver, "correct horse battery staple")
    bots.stack.run_bugless("auth", "user", "disable", leaver)
    gone = bugless_cli(served_api, "issue", "update", str(issue["id"]), "--cc-add", leaver)
    assert gone.stderr.strip() == (
        f"warning: {leaver} cannot sign in (a disabled account, or a person an import brought "
        f"in whom no account has taken over yet): they will not see issue {issue['id']} or get "
        "mail about it. A bugless administrator can enable the account, or merge the imported "
        "person into the account they sign in with."
    )
    # Who was named before is not warned of again.
    retitled = bugless_cli(served_api, "issue", "update", str(issue["id"]), "--title", "Renamed")
    assert retitled.stderr == ""
    # A user field names someone to look at the issue, as assigning does.
    await boss.create_custom_field(component.id, "Reviewer", "USER")
    reviewed = bugless_cli(
        served_api, "issue", "update", str(issue["id"]), "--field", "reviewer=greedy"
    )
    assert reviewed.stderr.strip() == (
        f"warning: greedy cannot view component {name}: they will not see issue "
        f"{issue['id']} or get mail about it. An admin of {name} can add them to its "
        "access list."
    )


async def test_the_cli_warns_of_mentions_of_people_who_cannot_view_as_the_web_does(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    boss = connect_as("boss")
    await signed_in(connect_as, "viewer", "outsider", "greedy")
    name = f"Mentioned-{secrets.token_hex(3)}"
    await boss.create_component(
        name,
        acl=[
            _entry(v1.Principal(user="cli-bot"), v1.Role.ADMIN),
            _entry(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
        ],
    )
    ghost = f"ghost-{secrets.token_hex(3)}"

    def hidden(who: str, issue_id: int) -> str:
        return (
            f"warning: {who} cannot view component {name}: they will not see issue "
            f"{issue_id} or get mail about it. An admin of {name} can add them to its "
            "access list."
        )

    made = bugless_cli(
        served_api,
        "issue", "create", "--title", "Mentions", "--component", name,
        "--description", f"@outsider and @viewer, see this; @{ghost} is nobody", "--json",
    )  # fmt: skip
    issue_id = int(json.loads(made.stdout)["id"])
    assert made.stderr.strip() == hidden("outsider", issue_id)

    commented = bugless_cli(served_api, "issue", "comment", str(issue_id), "@greedy: yours?")
    assert commented.stderr.strip() == hidden("greedy", issue_id)
    version = int(commented.stdout.split("#", 1)[1].split()[0])
    updated = bugless_cli(
        served_api, "issue", "update", str(issue_id), "--comment", "@Outsider, ping"
    )
    assert updated.stderr.strip() == hidden("Outsider", issue_id)  # as written

    # An edit warns only of whom it newly mentions: greedy was warned of.
    edited = bugless_cli(
        served_api, "issue", "edit-comment", str(issue_id), str(version), "@greedy: yours!"
    )
    assert edited.returncode == 0, edited.stderr
    assert edited.stderr == ""
    described = bugless_cli(
        served_api, "issue", "edit-comment", str(issue_id), "1", "@viewer and @greedy, see this"
    )
    assert described.stderr.strip() == hidden("greedy", issue_id)

    # The API answers about people the issue mentions (a name nobody has: nothing).
    answer = await connect_as("viewer").check_viewers(issue_id, ["outsider", ghost, "greedy"])
    assert [(b.user_id, b.reason) for b in answer.cannot_view] == [
        ("outsider", v1.ViewerBlock.NO_ACCESS),
        ("greedy", v1.ViewerBlock.NO_ACCESS),
    ]


async def test_a_bulk_update_warns_once_per_component_naming_its_issues(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    boss = connect_as("boss")
    await signed_in(connect_as, "viewer", "outsider", "greedy")
    tag = secrets.token_hex(3)
    closed, other = f"Closed-{tag}", f"Other-{tag}"
    for name in (closed, other):
        await boss.create_component(
            name,
            acl=[
                _entry(v1.Principal(user="cli-bot"), v1.Role.ADMIN),
                _entry(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
            ],
        )
    made = [
        json.loads(
            bugless_cli(
                served_api, "issue", "create", "--title", f"Bulk {n}", "--component", name, "--json"
            ).stdout
        )["id"]
        for n, name in enumerate((closed, closed, other))
    ]

    changed = bugless_cli(
        served_api, "issue", "update", *map(str, made), "--cc-add", "outsider", "--yes", "--json"
    )

    # One line per component, its issues named together; the JSON is the change's.
    assert [r["issue_id"] for r in json.loads(changed.stdout)["results"]] == made
    assert changed.stderr.strip().splitlines() == [
        f"warning: outsider cannot view component {closed}: they will not see issues "
        f"{made[0]} and {made[1]} or get mail about them. An admin of {closed} can add them "
        "to its access list.",
        f"warning: outsider cannot view component {other}: they will not see issue "
        f"{made[2]} or get mail about it. An admin of {other} can add them to its access list.",
    ]
    # Naming people who can view them warns of nobody.
    seen = bugless_cli(
        served_api, "issue", "update", *map(str, made), "--cc-add", "viewer", "--yes"
    )
    assert seen.stderr == ""
    # A comment's @mentions are checked as the update of one issue checks
    # them, and named as written; outsider, CC'd now, is not warned of again.
    mentioned = bugless_cli(
        served_api, "issue", "update", *map(str, made), "--yes",
        "--comment", "@Greedy and @outsider: see these; @viewer too",
    )  # fmt: skip
    assert mentioned.returncode == 0, mentioned.stderr
    assert mentioned.stderr.strip().splitlines() == [
        f"warning: Greedy cannot view component {closed}: they will not see issues "
        f"{made[0]} and {made[1]} or get mail about them. An admin of {closed} can add them "
        "to its access list.",
        f"warning: Greedy cannot view component {other}: they will not see issue "
        f"{made[2]} or get mail about it. An admin of {other} can add them to its access list.",
    ]


async def test_a_bulk_move_names_each_person_with_the_issues_that_name_them(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    """After ``issue update A B --component Closed``, someone on A only is warned of A only.

    A move judges everyone on each issue afresh; the line named every issue
    of the component, so a person CC'd on one of two moved issues was said
    to miss both.
    """
    boss = connect_as("boss")
    tag = secrets.token_hex(3)
    closed = f"Closed-{tag}"
    await boss.create_component(
        closed,
        acl=[
            _entry(v1.Principal(user="cli-bot"), v1.Role.ADMIN),
            _entry(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
        ],
    )
    start = await boss.create_component(
        f"Open-{tag}", acl=[_entry(v1.Principal(user="cli-bot"), v1.Role.ADMIN)]
    )
    cc_on = await boss.create_issue("CC'd", start.id, cc=["outsider"])
    alone = await boss.create_issue("Nobody", start.id)

    moved = bugless_cli(
        served_api, "issue", "update", str(cc_on.id), str(alone.id), "--component", closed,
        "--yes",
    )  # fmt: skip

    assert moved.stderr.strip() == (
        f"warning: outsider cannot view component {closed}: they will not see issue "
        f"{cc_on.id} or get mail about it. An admin of {closed} can add them to its "
        "access list."
    )


#: ``bugless model serve`` as the release before CheckViewers.
#: ``bugless model serve`` of a release before CheckViewers.
PREVIOUS_MODEL = ("-m", "bugless_testing.older_model", "CheckViewers")
SERVE = ("model", "serve", "--port", "0")


async def test_a_model_before_check_viewers_is_named_to_be_upgraded_first(
    bots: Bots, connect_as: ConnectAs, tmp_path: Path
) -> None:
    """An API on a Model of the earlier release answers FAILED_PRECONDITION naming the upgrade.

    Before, the Model's answer to a method it does not serve went to the bot
    as INTERNAL with the Model's (or, from releases before 474983f6, grpclib's
    "Missing content-type header") message: an outage, not an upgrade done
    out of docs/upgrades.md's order.
    """
    stack = bots.stack
    ready = tmp_path / "previous-model.json"
    process = spawn(
        "model-previous",
        [sys.executable, *PREVIOUS_MODEL, *SERVE, "--ready-file", str(ready)],
        stack.env,
        tmp_path / "previous-model.log",
        ready_file=ready,
    )
    previous = await asyncio.to_thread(stack.wait_started, "model", process)
    try:
        model = dataclasses.replace(stack.client_address("model", "api"), port=previous.port)
        async with extra_api(bots, model=model) as api:
            boss = connect_as("boss", port=api.port)
            component = await boss.create_component(f"Previous-{secrets.token_hex(3)}")
            issue = await boss.create_issue("On an older Model", component.id, cc=["viewer"])
            with pytest.raises(FailedPrecondition) as refused:
                await boss.check_viewers(issue.id)
    finally:
        await asyncio.to_thread(stack.stop_service, previous)
    assert isinstance(refused.value, MethodNotServed)
    assert refused.value.message == (
        "the Model does not serve CheckViewers, so it is of a release older than its "
        "caller's: upgrade the Model first, as docs/upgrades.md orders"
    )
    assert refused.value.metadata == {"service": "bugless.v1.Model", "method": "CheckViewers"}
