"""The client commands a script uses, with ``--json``, against real services (issue 15).

Data is made through the Python client (fast), then read and changed with
``bugless`` subprocesses configured by ``BUGLESS_*`` variables, as a script
would run them (stdin is not a terminal). ``issue watch`` is in test_cli_watch.
"""

from __future__ import annotations

import json
import secrets

from api_support import bugless_cli, cli_json, new_component, new_issues

from bugless_api.client import BuglessClient
from bugless_core.list_columns import DEFAULT_COLUMNS
from bugless_proto import v1


async def test_list_pages_through_every_match_and_says_n_of_m(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Paging")
    issues = await new_issues(cli_bot, component, 5)
    query = f"componentid:{component.id}"

    everything = cli_json(served_api, "issue", "list", query, "--page-size", "2")
    assert sorted(i["id"] for i in everything["issues"]) == sorted(str(i.id) for i in issues)
    assert (everything["total_count"], everything["truncated"]) == (5, False)

    limited = cli_json(served_api, "issue", "list", query, "--limit", "3", "--page-size", "2")
    assert (len(limited["issues"]), limited["total_count"], limited["truncated"]) == (3, 5, True)

    table = bugless_cli(served_api, "issue", "list", query, "--limit", "2").stdout.splitlines()
    assert table[-1] == "2 of 5"
    # An empty list says so under its header (it used to print the header alone).
    empty = bugless_cli(served_api, "issue", "list", f"{query} is:closed").stdout.splitlines()
    assert empty[1:] == ["no issue matches"], empty
    everything_shown = bugless_cli(served_api, "issue", "list", query).stdout.splitlines()
    assert len(everything_shown) == 6, everything_shown  # no footer when all are shown
    assert component.path in table[1]
    assert str(component.id) not in table[1].split()[4:5]


async def test_ids_are_strings_in_json(served_api: dict[str, str], cli_bot: BuglessClient) -> None:
    component = await new_component(cli_bot, "Ids")
    created = cli_json(
        served_api, "issue", "create", "--title", "ids", "--component", component.path
    )
    assert isinstance(created["id"], str)
    assert created["component_id"] == str(component.id)
    assert isinstance(created["version"], int)
    hotlist = cli_json(served_api, "hotlist", "create", f"ids-{secrets.token_hex(3)}")
    bugless_cli(served_api, "hotlist", "add", hotlist["id"], created["id"])
    shown = cli_json(served_api, "issue", "show", created["id"])
    assert shown["hotlist_ids"] == [hotlist["id"]]


async def test_create_sends_one_idempotency_key_per_invocation(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Idem")
    args = ["issue", "create", "--title", "once", "--component", str(component.id)]
    key = f"retry-{secrets.token_hex(4)}"
    first = cli_json(served_api, *args, "--idempotency-key", key)
    again = cli_json(served_api, *args, "--idempotency-key", key)
    assert first["id"] == again["id"]
    other = cli_json(served_api, *args)
    assert other["id"] != first["id"]
    found = await cli_bot.search_issues(f"componentid:{component.id}")
    assert len(found.issues) == 2


async def test_comment_prints_the_comment_and_history_shows_it(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Talk")
    (issue,) = await new_issues(cli_bot, component, 1)
    issue_id = str(issue.id)

    added = cli_json(served_api, "issue", "comment", issue_id, "first words")
    assert added["comment"]["comment"] == "first words"
    assert added["comment"]["author"] == "cli-bot"
    assert added["comment"]["version"] == added["issue"]["version"]
    text = bugless_cli(served_api, "issue", "comment", issue_id, "second words").stdout
    assert "second words" in text
    assert "cli-bot" in text
    cli_json(served_api, "issue", "update", issue_id, "--priority", "P0")

    shown = cli_json(served_api, "issue", "show", issue_id, "--comments")
    assert [c["comment"] for c in shown["comments"]] == ["first words", "second words"]
    assert shown["priority"] == "P0"
    # One shape with or without --comments: the issue's fields, comments an extra key.
    plain = cli_json(served_api, "issue", "show", issue_id)
    assert "comments" not in plain
    assert {k: v for k, v in shown.items() if k != "comments"} == plain

    history = cli_json(served_api, "issue", "history", issue_id)
    assert [e["version"] for e in history["entries"]] == [1, 2, 3, 4]
    changes = history["entries"][3]["changes"]
    assert [(c["field"], c["new_value"]) for c in changes] == [("priority", "P0")]
    lines = bugless_cli(served_api, "issue", "history", issue_id).stdout
    assert "priority: " in lines
    assert "-> P0" in lines


async def test_relations_are_set_and_cleared(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Rel")
    child, parent, blocked, original = (str(i.id) for i in await new_issues(cli_bot, component, 4))

    changed = cli_json(
        served_api,
        "issue",
        "update",
        child,
        "--parent",
        parent,
        "--blocking",
        blocked,
        "--duplicate-of",
        original,
    )
    assert (changed["parent_id"], changed["blocking_ids"], changed["duplicate_of_id"]) == (
        parent,
        [blocked],
        original,
    )
    assert cli_json(served_api, "issue", "show", blocked)["blocked_by_ids"] == [child]
    cleared = cli_json(
        served_api,
        "issue",
        "update",
        child,
        "--parent",
        "0",
        "--blocking-remove",
        blocked,
        "--duplicate-of",
        "0",
    )
    assert (cleared["parent_id"], cleared["blocking_ids"], cleared["duplicate_of_id"]) == (
        "0",
        [],
        "0",
    )


async def test_bulk_update_previews_and_needs_yes(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Bulk")
    issues = await new_issues(cli_bot, component, 2)
    issues.append(
        await cli_bot.create_issue(
            "cli assigned",
            component.id,
            description="the bulk description",
            priority="P0",
            assignee="cli-bot",
        )
    )
    query = f"componentid:{component.id}"

    refused = bugless_cli(
        served_api, "issue", "update", "--query", query, "--priority", "P1", check=False
    )
    assert refused.returncode == 2, refused.stderr
    assert "pass --yes to change these 3 issues" in refused.stderr
    assert "priority=P1" in refused.stdout
    # Every column of every issue (the preview asks the API for those only).
    rows = {line.split()[0]: line for line in refused.stdout.splitlines()[1:-1]}
    assert sorted(rows) == sorted(str(i.id) for i in issues)
    for issue in issues:
        shown = rows[str(issue.id)].split()
        assert shown[1:3] == [v1.Priority(issue.priority).name, v1.Status(issue.status).name]
        assert shown[3:] == [issue.assignee or "-", component.path, *issue.title.split()]
    listed = bugless_cli(
        served_api, "issue", "update", *(str(i.id) for i in issues), "--priority", "P1", check=False
    )
    assert listed.returncode == 2, listed.stderr
    assert sorted(listed.stdout.splitlines()) == sorted(refused.stdout.splitlines())
    # A --json preview shows whole issues, as before.
    previewed = bugless_cli(
        served_api,
        "issue",
        "update",
        *(str(i.id) for i in issues[1:]),
        "--priority",
        "P1",
        "--json",
        check=False,
    )
    assert previewed.returncode == 2, previewed.stderr
    whole = {i["id"]: i for i in json.loads(previewed.stdout)["issues"]}[str(issues[2].id)]
    assert (whole["description"], whole["version"]) == ("the bulk description", 1)
    unchanged = await cli_bot.batch_get_issues([i.id for i in issues])
    assert {i.version for i in unchanged.issues} == {1}

    applied = cli_json(served_api, "issue", "update", "--query", query, "--priority", "P1", "--yes")
    assert applied["applied"] is True
    assert sorted(r["issue_id"] for r in applied["results"]) == sorted(str(i.id) for i in issues)
    assert {r["code"] for r in applied["results"]} == {0}
    after = await cli_bot.batch_get_issues([i.id for i in issues])
    assert {i.priority for i in after.issues} == {v1.Priority.P1}

    by_ids = cli_json(
        served_api,
        "issue",
        "update",
        str(issues[0].id),
        str(issues[1].id),
        "--cc-add",
        "cli-bot",
        "--comment",
        "bulk",
        "--yes",
    )
    assert len(by_ids["results"]) == 2
    history = await cli_bot.list_history(issues[0].id)
    assert history.entries[-1].comment == "bulk"


async def test_hotlists_are_renamed_reranked_noted_and_deleted(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Hot")
    first, second, third = (str(i.id) for i in await new_issues(cli_bot, component, 3))
    hotlist = cli_json(served_api, "hotlist", "create", f"hot-{secrets.token_hex(3)}")
    hotlist_id = hotlist["id"]
    bugless_cli(served_api, "hotlist", "add", hotlist_id, first, second, third)

    new_name = f"renamed-{secrets.token_hex(3)}"
    assert cli_json(served_api, "hotlist", "rename", hotlist_id, new_name)["name"] == new_name
    updated = cli_json(
        served_api, "hotlist", "update", hotlist_id, "--description", "d", "--private"
    )
    assert (updated["description"], updated["private"]) == ("d", True)

    ranked = cli_json(served_api, "hotlist", "rerank", hotlist_id, third, first)
    assert [i["issue_id"] for i in ranked["items"]] == [third, first, second]
    noted = cli_json(served_api, "hotlist", "note", hotlist_id, second, "last")
    assert noted["note"] == "last"

    deleted = cli_json(served_api, "hotlist", "delete", hotlist_id)
    assert deleted == {"id": hotlist_id, "deleted": True}
    missing = bugless_cli(served_api, "hotlist", "show", hotlist_id, check=False)
    assert missing.returncode == 3


async def test_hotlist_rank_takes_a_negative_position_from_the_end(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """``hotlist rank H I -1`` moves I to the last place; -N counts from the end.

    Before, click read ``-1`` as an unknown option ("No such option '-1'") and
    the call was never made.
    """
    component = await new_component(cli_bot, "Rank")
    first, second, third = (str(i.id) for i in await new_issues(cli_bot, component, 3))
    hotlist_id = cli_json(served_api, "hotlist", "create", f"rank-{secrets.token_hex(3)}")["id"]
    bugless_cli(served_api, "hotlist", "add", hotlist_id, first, second, third)

    async def order() -> list[str]:
        items, _ = await cli_bot.list_hotlist_items(int(hotlist_id))
        return [str(i.issue_id) for i in items]

    bugless_cli(served_api, "hotlist", "rank", hotlist_id, first, "-1")
    assert await order() == [second, third, first]
    ranked = cli_json(served_api, "hotlist", "rank", hotlist_id, third, "-3")
    assert ranked["id"] == hotlist_id
    assert await order() == [third, second, first]
    # Past the start, and an option that does not exist: refused, nothing changed.
    past = bugless_cli(served_api, "hotlist", "rank", hotlist_id, first, "-4", check=False)
    assert past.returncode == 2
    assert "POSITION: -4 is before the first place of a hotlist of 3 items" in past.stderr
    # Past the wire's int32: it wrapped when encoded (-4294967295 arrived as 1).
    wrapped = bugless_cli(
        served_api, "hotlist", "rank", hotlist_id, first, "-4294967295", check=False
    )
    assert wrapped.returncode == 2
    assert "POSITION: -4294967295 is no place in a hotlist" in wrapped.stderr
    assert await order() == [third, second, first]
    typo = bugless_cli(served_api, "hotlist", "rank", hotlist_id, second, "0", "--jsn", check=False)
    assert typo.returncode == 2
    assert "--jsn" in typo.stderr
    assert await order() == [third, second, first]


async def test_components_are_renamed_archived_and_unarchived(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await cli_bot.create_component(
        f"Comp-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="cli-bot"), role=v1.Role.ADMIN)],
    )
    ref = str(component.id)
    renamed = cli_json(
        served_api,
        "component",
        "update",
        ref,
        "--name",
        f"{component.name}-x",
        "--description",
        "n",
    )
    assert (renamed["path"], renamed["description"]) == (f"{component.path}-x", "n")
    assert cli_json(served_api, "component", "archive", renamed["path"])["archived"] is True
    listed = cli_json(served_api, "component", "list")
    assert ref not in [c["id"] for c in listed["components"]]
    listed = cli_json(served_api, "component", "list", "--archived")
    assert ref in [c["id"] for c in listed["components"]]
    assert cli_json(served_api, "component", "unarchive", ref)["archived"] is False


async def test_saved_searches_are_made_run_changed_and_deleted(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    component = await new_component(cli_bot, "Saved")
    issues = await new_issues(cli_bot, component, 2)
    name = f"mine-{secrets.token_hex(3)}"
    saved = cli_json(served_api, "saved-search", "create", name, f"componentid:{component.id}")
    assert (saved["name"], saved["owner"]) == (name, "cli-bot")
    listed = cli_json(served_api, "saved-search", "list", "--mine")
    assert saved["id"] in [s["id"] for s in listed["saved_searches"]]

    ran = cli_json(served_api, "saved-search", "run", saved["id"])
    assert sorted(i["id"] for i in ran["issues"]) == sorted(str(i.id) for i in issues)
    changed = cli_json(served_api, "saved-search", "update", saved["id"], "--query", "is:closed")
    assert changed["query"] == "is:closed"
    bugless_cli(served_api, "saved-search", "delete", saved["id"])
    gone = bugless_cli(served_api, "saved-search", "run", saved["id"], check=False)
    assert gone.returncode == 3


async def test_saved_search_columns_are_set_shown_and_checked(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    name = f"cols-{secrets.token_hex(3)}"
    saved = cli_json(
        served_api, "saved-search", "create", name, "is:open", "--columns", "id,title,severity"
    )
    assert saved["columns"] == ["id", "title", "severity"]
    listed = cli_json(served_api, "saved-search", "list", "--mine")
    assert next(s for s in listed["saved_searches"] if s["id"] == saved["id"])["columns"] == [
        "id",
        "title",
        "severity",
    ]
    table = bugless_cli(served_api, "saved-search", "list", "--mine").stdout
    assert "id,title,severity" in table
    shown = bugless_cli(served_api, "saved-search", "update", saved["id"], "--name", name + "-x")
    assert "columns  id,title,severity" in shown.stdout
    changed = cli_json(
        served_api, "saved-search", "update", saved["id"], "--columns", "status,customfield7"
    )
    assert changed["columns"] == ["status", "customfield7"]
    cleared = cli_json(served_api, "saved-search", "update", saved["id"], "--default-columns")
    assert cleared["columns"] == []
    bad = bugless_cli(
        served_api, "saved-search", "create", name, "is:open", "--columns", "id,titel", check=False
    )
    assert bad.returncode == 2
    assert "'titel' is not a list column" in bad.stderr
    assert "title" in bad.stderr
    mine = [s.name for s in await cli_bot.all_saved_searches(owned_only=True)]
    assert mine.count(name) == 0


async def test_saved_search_columns_equal_to_the_defaults_are_stored_as_none(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """As the web stores them: the search then follows the defaults when they change."""
    defaults = ",".join(DEFAULT_COLUMNS)
    name = f"cols-{secrets.token_hex(3)}"
    saved = cli_json(served_api, "saved-search", "create", name, "is:open", "--columns", defaults)
    assert saved.get("columns", []) == []
    shown = bugless_cli(served_api, "saved-search", "update", saved["id"], "--name", name + "-x")
    assert "columns  default" in shown.stdout
    chosen = cli_json(served_api, "saved-search", "update", saved["id"], "--columns", "id,title")
    assert chosen["columns"] == ["id", "title"]
    back = cli_json(served_api, "saved-search", "update", saved["id"], "--columns", defaults)
    assert back.get("columns", []) == []
    # The defaults in another order are a choice, and kept.
    reordered = ",".join(reversed(DEFAULT_COLUMNS))
    kept = cli_json(served_api, "saved-search", "update", saved["id"], "--columns", reordered)
    assert kept["columns"] == list(reversed(DEFAULT_COLUMNS))
    stored = next(
        s for s in await cli_bot.all_saved_searches(owned_only=True) if s.id == int(saved["id"])
    )
    assert list(stored.columns) == list(reversed(DEFAULT_COLUMNS))


async def test_a_query_starting_with_a_negation_is_a_query_not_an_option(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """``-a:none`` first, options before or after it; it used to be "No such option '-a'"."""
    component = await new_component(cli_bot, "Negated")
    unassigned, assigned = await new_issues(cli_bot, component, 2)
    await cli_bot.update_issue(assigned.id, assignee="cli-bot")
    query = f"-assignee:none componentid:{component.id}"
    for args in (
        ["issue", "list", query, "--limit", "5"],
        ["issue", "list", "--limit", "5", query],
        ["issue", "list", f"-(-componentid:{component.id} OR has:assignee)", "--page-size", "1"],
    ):
        found = cli_json(served_api, *args)
        expected = unassigned if "OR" in args[2] else assigned
        assert [i["id"] for i in found["issues"]] == [str(expected.id)], args
    saved = cli_json(served_api, "saved-search", "create", f"neg-{secrets.token_hex(3)}", query)
    assert saved["query"] == query
    ran = cli_json(served_api, "saved-search", "run", saved["id"])
    assert [i["id"] for i in ran["issues"]] == [str(assigned.id)]
    assert ran["total_count"] == 1


async def test_a_bad_query_is_a_usage_error(served_api: dict[str, str]) -> None:
    for args in (["issue", "list", "status:"], ["issue", "watch", "--query", "p<"]):
        result = bugless_cli(served_api, *args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "^" in result.stderr
    bad_bulk = bugless_cli(
        served_api, "issue", "update", "--query", "(", "--priority", "P1", "--yes", check=False
    )
    assert bad_bulk.returncode == 2, bad_bulk.stderr


async def test_whoami_shows_who_the_certificate_acts_as(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """Lines for people (it printed the message's Python repr); ``--json`` keeps the message."""
    lines = bugless_cli(served_api, "whoami").stdout.splitlines()
    fields = dict(_detail(line) for line in lines)
    assert fields["username"] == "cli-bot"
    assert fields["kind"] == "bot"
    assert fields["signed in by"] == "tls"
    assert "Identity(" not in "\n".join(lines)
    shown = cli_json(served_api, "whoami")
    assert shown["user"]["username"] == "cli-bot"
    assert shown["user"]["bot"] is True


def _detail(line: str) -> tuple[str, str]:
    """``name  value`` of a detail line (names may hold one space: "user id")."""
    name, _, value = line.partition("  ")
    return name.strip(), value.strip()


async def test_show_keeps_a_long_value_in_its_column_and_marks_empty_ones(
    served_api: dict[str, str], cli_bot: BuglessClient
) -> None:
    """A description's later lines start under its first (they started at column 0)."""
    component = await new_component(cli_bot, "Show")
    issue = await cli_bot.create_issue(
        "multi-line", component.id, description="First line.\n\n- a step\n- another"
    )
    lines = bugless_cli(served_api, "issue", "show", str(issue.id)).stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("description"))
    column = lines[at].index("First line.")
    assert lines[at + 1 : at + 4] == ["", " " * column + "- a step", " " * column + "- another"]
    fields = dict(_detail(line) for line in lines[:at] if line.strip())
    assert fields["blocking"] == "-"
    assert fields["hotlists"] == "-"
    assert all(line == line.rstrip() for line in lines)
