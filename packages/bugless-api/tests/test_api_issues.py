"""A bot works with issues: usernames in and out, the caller from its certificate."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from api_support import Bots, ConnectAs

from bugless_api.client import BuglessClient
from bugless_api.server import RunningApi
from bugless_core.clients import call
from bugless_core.errors import InvalidArgument, IssueVersionConflict, NotFound
from bugless_core.model._validation import check_read_mask
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


async def _component(client: BuglessClient, name: str) -> int:
    component = await client.create_component(f"{name}-{secrets.token_hex(3)}")
    return component.id


async def test_a_bot_creates_searches_updates_and_comments(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "Issues")
    marker = f"marker{secrets.token_hex(4)}"

    issue = await robot.create_issue(
        f"disk full on {marker}",
        component_id,
        description="the disk is full",
        priority="P1",
        assignee="robot",
        cc=["boss"],
    )
    assert issue.reporter == "robot"
    assert issue.assignee == "robot"
    assert issue.cc == ["boss"]
    assert issue.status is v1.Status.ASSIGNED

    found = await robot.search_issues(f"{marker} assignee:me p<p2 is:open c:{component_id}")
    assert [i.id for i in found.issues] == [issue.id]
    assert found.issues[0].reporter == "robot"

    changed = await robot.update_issue(
        issue.id, priority="P0", status="accepted", assignee="boss", comment="escalating"
    )
    assert changed.issue is not None
    assert changed.issue.priority is v1.Priority.P0
    assert changed.issue.assignee == "boss"
    assert changed.entry is not None
    assert changed.entry.author == "robot"
    assignee_change = next(c for c in changed.entry.changes if c.field == "assignee")
    assert (assignee_change.old_value, assignee_change.new_value) == ("robot", "boss")

    commented = await robot.comment(issue.id, "on it")
    assert commented.issue is not None
    assert commented.issue.version == changed.issue.version + 1

    history = await robot.list_history(issue.id)
    assert [e.author for e in history.entries] == ["robot", "robot", "robot"]
    assert history.entries[-1].comment == "on it"


async def test_a_stale_version_is_aborted_with_the_current_version(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    issue = await robot.create_issue("race", await _component(robot, "Race"))
    await robot.update_issue(issue.id, expected_version=issue.version, priority="P3")

    with pytest.raises(IssueVersionConflict) as caught:
        await robot.update_issue(issue.id, expected_version=issue.version, priority="P4")

    assert caught.value.current_version == issue.version + 1
    assert caught.value.expected_version == issue.version
    assert (await robot.get_issue(issue.id)).priority is v1.Priority.P3


async def test_create_retried_with_one_idempotency_key_makes_one_issue(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "Idem")
    first = await robot.create_issue("once", component_id, idempotency_key="key-1")
    again = await robot.create_issue("once", component_id, idempotency_key="key-1")

    assert first.id == again.id


async def test_a_request_that_sets_the_caller_is_invalid(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    issue = await robot.create_issue("mine", await _component(robot, "Caller"))

    with pytest.raises(InvalidArgument, match="caller: leave it empty"):
        # The client never sets it: the raw stub does, as a hand-made request would.
        await call(
            robot.issues.get_issue,
            v1.GetIssueRequest(caller=v1.Caller(user_id="someone-else"), issue_id=issue.id),
            timeout=30,
        )


async def test_an_unknown_username_is_invalid_and_names_the_field(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "Unknown")

    with pytest.raises(InvalidArgument, match=r"cc\[1\]: no bugless user is named 'ghost'"):
        await robot.create_issue("who?", component_id, cc=["boss", "ghost"])
    issue = await robot.create_issue("who?", component_id)
    with pytest.raises(InvalidArgument, match=r"delta\.fields\.assignee: .*'ghost'"):
        await robot.update_issue(issue.id, assignee="ghost")


async def test_a_query_syntax_error_shows_where_it_is(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")

    with pytest.raises(InvalidArgument) as caught:
        await robot.search_issues("is:open status:")

    assert caught.value.metadata["position"] == "15"
    assert "at column" in caught.value.message
    assert "is:open status:\n" in caught.value.message
    assert caught.value.message.rstrip().endswith("^")


async def test_an_unknown_username_in_a_query_is_positioned(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")

    with pytest.raises(InvalidArgument, match="no user named 'ghost'") as caught:
        await robot.search_issues("is:open assignee:ghost")

    assert caught.value.metadata["position"] == "17"


async def test_an_unknown_username_is_offered_the_closest_to_a_person_not_a_bot(
    api: RunningApi, bots: Bots, connect_as: ConnectAs
) -> None:
    """``a:alcie`` said only "no user named 'alcie'"; a person is now asked "did you mean".

    The names come from the look-up the web's assignee box makes for anyone
    signed in (SuggestUsers), as the web's search page hints: a person whose
    certificate the API takes could find them there. A bot has no web
    session: it is told only that no one has the name, as before.
    """
    tag = str(secrets.randbelow(10**8))
    near, disabled = f"zq{tag}maria", f"zq{tag}marie"
    for username in (near, disabled):
        await asyncio.to_thread(bots.stack.add_user, username, "hint-password-1")
    await asyncio.to_thread(bots.stack.run_bugless, "auth", "user", "disable", disabled)
    files = await asyncio.to_thread(
        bots.stack.pki.client_certificate_for, f"person{tag}", bot=False
    )
    async with BuglessClient(
        f"127.0.0.1:{api.port}", cert=files.cert, key=files.key, ca=bots.stack.pki.ca_file
    ) as person:
        identity = await person.whoami()
        assert identity.user is not None
        assert not identity.user.bot
        with pytest.raises(InvalidArgument) as caught:
            await person.search_issues(f"is:open a:zq{tag}marei")
        message = caught.value.message
        assert f"no user named 'zq{tag}marei'; did you mean '{near}'?" in message
        assert disabled not in message
        assert caught.value.metadata["position"] == "10"  # still the name's
        # A refused value that is no person's name gets no hint.
        with pytest.raises(InvalidArgument) as caught:
            await person.search_issues(f"status:zq{tag}marei")
        assert f"did you mean '{near}'" not in caught.value.message

    with pytest.raises(InvalidArgument) as caught:
        await connect_as("robot").search_issues(f"is:open a:zq{tag}marei")
    assert f"no user named 'zq{tag}marei'" in caught.value.message
    assert "did you mean" not in caught.value.message


async def test_a_username_in_a_query_matches_whatever_its_case(connect_as: ConnectAs) -> None:
    """Usernames are case-insensitive (the Authenticator matches them so): so is a query."""
    robot = connect_as("robot")
    component_id = await _component(robot, "Cased")
    bosses = await robot.create_issue("the boss's", component_id, assignee="boss", cc=["robot"])
    await robot.create_issue("the robot's", component_id, assignee="robot")

    for query in ("assignee:BOSS", "assignee:Boss cc:ROBOT", "assignee:boss"):
        found = await robot.search_issues(f"c:{component_id} {query}")
        assert [i.id for i in found.issues] == [bosses.id], query
    # Asked again (the API answers repeated names from its user cache).
    found = await robot.search_issues(f"c:{component_id} assignee:bOsS")
    assert [i.id for i in found.issues] == [bosses.id]
    # And so is a username given to a write.
    cased = await robot.create_issue("cased", component_id, assignee="BOSS", cc=["Robot"])
    assert (cased.assignee, cased.cc) == ("boss", ["robot"])


async def test_query_string_and_structured_query_are_anded(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "Anded")
    mine = await robot.create_issue("a", component_id, assignee="robot")
    await robot.create_issue("b", component_id, assignee="boss")
    by_boss = v1.StructuredQuery(
        filter=v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.ASSIGNEE,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(text="robot")],
            )
        )
    )

    found = await robot.search_issues(f"c:{component_id}", structured=by_boss)

    assert [i.id for i in found.issues] == [mine.id]
    assert found.issues[0].assignee == "robot"


async def test_a_read_mask_brings_only_the_named_fields(connect_as: ConnectAs) -> None:
    """A bot listing a few columns asks for those; people in them still come by username."""
    robot = connect_as("robot")
    component_id = await _component(robot, "Masked")
    issue = await robot.create_issue(
        "masked",
        component_id,
        description="long text",
        priority="P1",
        assignee="boss",
        cc=["robot"],
    )

    found = await robot.search_issues(f"c:{component_id}", read_mask=["title", "assignee"])

    [listed] = found.issues
    assert (listed.id, listed.title, listed.assignee) == (issue.id, "masked", "boss")
    assert (listed.reporter, listed.description, listed.cc) == ("", "", [])
    assert listed.priority is v1.Priority.UNSPECIFIED
    assert found.total_count == 1
    whole = await robot.search_issues(f"c:{component_id}")
    assert whole.issues == [await robot.get_issue(issue.id)]


async def test_an_unknown_read_mask_field_is_the_models_invalid_argument(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    with pytest.raises(InvalidArgument) as models:
        check_read_mask(FieldMask(paths=["title", "colour"]), "read_mask")

    with pytest.raises(InvalidArgument) as caught:
        await robot.search_issues("is:open", read_mask=["title", "colour"])

    assert caught.value.message == models.value.message
    assert caught.value.message.startswith("read_mask.paths[1]: 'colour' is no Issue field")


async def test_a_batch_get_read_mask_brings_only_the_named_fields(connect_as: ConnectAs) -> None:
    """A bot reading the titles and statuses of many issues asks for those fields only."""
    robot = connect_as("robot")
    component_id = await _component(robot, "BatchMasked")
    issues = [
        await robot.create_issue(
            f"masked {n}", component_id, description="long text", assignee="boss", cc=["robot"]
        )
        for n in range(3)
    ]
    ids = [issues[2].id, 987_654_321, issues[0].id]

    masked = await robot.batch_get_issues(ids, read_mask=["title", "status", "assignee"])

    assert [(i.id, i.title, i.status, i.assignee) for i in masked.issues] == [
        (issues[2].id, "masked 2", v1.Status.ASSIGNED, "boss"),
        (issues[0].id, "masked 0", v1.Status.ASSIGNED, "boss"),
    ]
    assert masked.missing_ids == [987_654_321]
    for listed in masked.issues:
        assert (listed.reporter, listed.description, listed.cc, listed.version) == ("", "", [], 0)
    whole = await robot.batch_get_issues(ids)
    assert list(whole.issues) == [await robot.get_issue(issues[2].id), issues[0]]


async def test_an_unknown_batch_get_read_mask_field_is_the_models_invalid_argument(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "BatchMaskedBad")
    issue = await robot.create_issue("named", component_id)
    with pytest.raises(InvalidArgument) as models:
        check_read_mask(FieldMask(paths=["title", "colour"]), "read_mask")

    with pytest.raises(InvalidArgument) as caught:
        await robot.batch_get_issues([issue.id], read_mask=["title", "colour"])

    assert caught.value.message == models.value.message
    assert caught.value.metadata == {"field": "read_mask.paths[1]"}


async def test_a_missing_issue_is_not_found(connect_as: ConnectAs) -> None:
    with pytest.raises(NotFound):
        await connect_as("robot").get_issue(987_654_321)


async def test_mention_me_finds_what_mentions_the_caller_by_username(
    connect_as: ConnectAs,
) -> None:
    """``mention:me`` needs the caller's username (mentions are text): the API looks it up."""
    robot = connect_as("robot")
    component_id = await _component(robot, "Mentions")
    to_robot = await robot.create_issue("for a bot", component_id, description="ask @Robot.")
    to_boss = await robot.create_issue("for a person", component_id, description="ask @boss")
    await robot.comment(to_boss.id, "and @robot too")
    await robot.create_issue("to nobody", component_id, description="mail robot@x.example")
    found = await robot.search_issues(f"mention:me c:{component_id} sort:id")
    assert [i.id for i in found.issues] == [to_robot.id, to_boss.id]
    found = await robot.search_issues(f"mention:boss c:{component_id}")
    assert [i.id for i in found.issues] == [to_boss.id]
    with pytest.raises(InvalidArgument, match="no user named"):
        await robot.search_issues(f"mention:nobody-{secrets.token_hex(3)}")


async def test_iterating_issues_follows_every_page_and_stops_at_the_limit(
    connect_as: ConnectAs,
) -> None:
    robot = connect_as("robot")
    component_id = await _component(robot, "Paging")
    marker = f"page{secrets.token_hex(4)}"
    created = [(await robot.create_issue(f"{marker} {n}", component_id)).id for n in range(5)]

    every = [i.id async for i in robot.iter_issues(f"{marker} c:{component_id}", page_size=2)]
    assert sorted(every) == sorted(created)  # three pages of 2, 2 and 1
    first = [
        i.id async for i in robot.iter_issues(f"{marker} c:{component_id}", page_size=2, limit=3)
    ]
    assert first == every[:3]
