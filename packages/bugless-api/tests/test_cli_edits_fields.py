"""`bugless issue edit-comment|redact`, `bugless component field` and `--field` in scripts."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from api_support import Bots, ConnectAs, signed_in

from bugless_api.server import RunningApi
from bugless_core.errors import InvalidArgument
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_proto import v1


@pytest.fixture
def cli_env(api: RunningApi, bots: Bots, tmp_path: Path) -> dict[str, str]:
    """The client environment of cli-bot against the session's API."""
    files = bots["cli-bot"]
    return {
        **os.environ,
        "BUGLESS_API": f"127.0.0.1:{api.port}",
        "BUGLESS_CERT": str(files.cert),
        "BUGLESS_KEY": str(files.key),
        "BUGLESS_CA": str(bots.stack.pki.ca_file),
        "BUGLESS_CLIENT_CONFIG": str(tmp_path / "absent.toml"),
    }


async def _bugless(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # The API serves on this test's event loop: the command runs in a thread.
    result = await asyncio.to_thread(
        subprocess.run,
        [*BUGLESS_COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


async def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads((await _bugless(env, *args, "--json")).stdout)


async def _admin_component(connect_as: ConnectAs) -> v1.Component:
    """A component cli-bot administers (made by robot, which names it admin)."""
    (robot,) = await signed_in(connect_as, "robot")
    return await robot.create_component(
        f"CliFields-{secrets.token_hex(3)}",
        acl=[
            v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(user="cli-bot"), role=v1.Role.ADMIN),
        ],
    )


async def test_fields_are_defined_set_with_field_and_listed(
    cli_env: dict[str, str], connect_as: ConnectAs
) -> None:
    env = cli_env
    component = str((await _admin_component(connect_as)).id)
    found_in = await _json(
        env,
        "component",
        "field",
        "create",
        component,
        "Found In",
        "--type",
        "enum",
        "--option",
        "4.1",
        "--option",
        "4.2",
        "--required",
        "--default",
        "4.1",
    )
    oses = await _json(
        env,
        "component",
        "field",
        "create",
        component,
        "OS",
        "--type",
        "multi-enum",
        "--option",
        "linux",
        "--option",
        "mac",
    )
    cost = await _json(env, "component", "field", "create", component, "Cost", "--type", "integer")
    listed = await _json(env, "component", "field", "list", component)
    assert [f["name"] for f in listed["custom_fields"]] == ["Found In", "OS", "Cost"]
    table = (await _bugless(env, "component", "field", "list", component)).stdout
    assert "multi-enum" in table

    created = await _json(
        env,
        "issue",
        "create",
        "--title",
        "fields from the cli",
        "--component",
        component,
        "--field",
        "found in=4.2",
        "--field",
        "OS=linux,mac",
    )
    values = {v["name"]: v["values"] for v in created["custom_fields"]}
    assert values == {"Found In": ["4.2"], "OS": ["linux", "mac"]}

    updated = await _json(
        env,
        "issue",
        "update",
        str(created["id"]),
        "--field",
        f"customfield{cost['id']}=12",
        "--field",
        "OS=",
    )
    values = {v["name"]: v["values"] for v in updated["custom_fields"]}
    assert values == {"Found In": ["4.2"], "Cost": ["12"]}
    history = (await _bugless(env, "issue", "history", str(created["id"]))).stdout
    assert "Cost: - -> 12" in history

    # A USER field's history reads as usernames (the change says its type).
    owner = await _json(env, "component", "field", "create", component, "Owner", "--type", "user")
    await _json(env, "issue", "update", str(created["id"]), "--field", "Owner=robot")
    await _bugless(env, "component", "field", "delete", component, str(owner["id"]))
    history = (await _bugless(env, "issue", "history", str(created["id"]))).stdout
    assert "Owner: - -> robot" in history

    found = await _json(
        env, "issue", "list", f'c:{component} "Found In":4.2 customfield{cost["id"]}>10'
    )
    assert [i["id"] for i in found["issues"]] == [created["id"]]

    bulk = await _json(
        env, "issue", "update", "--query", f"c:{component}", "--yes", "--field", "Cost=13"
    )
    assert bulk["applied"] is True

    unknown = await _bugless(
        env, "issue", "update", str(created["id"]), "--field", "Nope=1", check=False
    )
    assert unknown.returncode == 2
    assert "no custom field 'Nope'" in unknown.stderr
    assert "'Found In'" in unknown.stderr
    bad = await _bugless(
        env, "issue", "update", str(created["id"]), "--field", "Cost=many", check=False
    )
    assert bad.returncode == 2  # the client checks the value: usage, as the unknown name
    assert "whole number" in bad.stderr

    renamed = await _json(
        env,
        "component",
        "field",
        "update",
        component,
        str(oses["id"]),
        "--name",
        "Platforms",
        "--option",
        "linux",
        "--option",
        "mac",
        "--option",
        "windows",
    )
    assert (renamed["name"], renamed["options"]) == ("Platforms", ["linux", "mac", "windows"])
    stale = await _bugless(
        env,
        "component",
        "field",
        "update",
        component,
        str(oses["id"]),
        "--name",
        "x",
        "--expected-version",
        "1",
        check=False,
    )
    assert stale.returncode == 4
    await _bugless(env, "component", "field", "delete", component, str(found_in["id"]))
    after = await _json(env, "issue", "show", str(created["id"]))
    assert "Found In" not in {v["name"] for v in after["custom_fields"]}
    history = (await _bugless(env, "issue", "history", str(created["id"]))).stdout
    assert "Found In" in history  # the deleted field's old values stay readable


async def test_field_list_all_visible_lists_every_field_of_the_components_one_can_view(
    cli_env: dict[str, str], connect_as: ConnectAs
) -> None:
    """``--all-visible``: one paged call for the whole tree, not one per component.

    cli-bot views a child of a component it cannot view (whose field applies
    to the child) and not a sibling of the parent; a person field's default
    comes back by username, as with a component's list. The client's
    :meth:`list_visible_custom_fields` reads every page (robot, admin of all).
    """
    (robot,) = await signed_in(connect_as, "robot")
    admin = v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)
    viewer = v1.AclEntry(principal=v1.Principal(user="cli-bot"), role=v1.Role.VIEWER)
    hidden = await robot.create_component(f"CliHidden-{secrets.token_hex(3)}", acl=[admin])
    child = await robot.create_component("seen", parent_id=hidden.id, acl=[viewer])
    other = await robot.create_component(f"CliOther-{secrets.token_hex(3)}", acl=[admin])
    owner = await robot.create_custom_field(
        hidden.id,
        f"Owner {secrets.token_hex(3)}",
        v1.CustomFieldType.USER,
        default_values=["robot"],
    )
    on_child = await robot.create_custom_field(
        child.id, f"Stage {secrets.token_hex(3)}", v1.CustomFieldType.TEXT
    )
    not_seen = await robot.create_custom_field(
        other.id, f"Secret {secrets.token_hex(3)}", v1.CustomFieldType.TEXT
    )

    listed = (await _json(cli_env, "component", "field", "list", "--all-visible"))["custom_fields"]
    ids = [int(f["id"]) for f in listed]
    assert ids == sorted(ids)
    assert {owner.id, on_child.id} <= set(ids)
    assert not_seen.id not in ids
    shown = next(f for f in listed if int(f["id"]) == owner.id)
    assert shown["default_values"] == ["robot"]
    table = (await _bugless(cli_env, "component", "field", "list", "--all-visible")).stdout
    assert on_child.name in table
    assert not_seen.name not in table

    both = await _bugless(
        cli_env, "component", "field", "list", str(child.id), "--all-visible", check=False
    )
    neither = await _bugless(cli_env, "component", "field", "list", check=False)
    for refused in (both, neither):
        assert refused.returncode == 2
        assert "give one of a component's ID_OR_PATH or --all-visible" in refused.stderr

    everything = {f.id for f in await robot.list_visible_custom_fields()}
    assert {owner.id, on_child.id, not_seen.id} <= everything


async def test_field_is_refused_as_the_client_refuses_fields_and_nothing_is_written(
    cli_env: dict[str, str], connect_as: ConnectAs
) -> None:
    """``--field NAME=VALUE`` goes through the client's by-name path: same checks, same words.

    Before, the CLI matched the names itself and sent the values as typed:
    a value that does not fit its field was the server's refusal (exit 1),
    in a bulk update each issue's own failure after the preview.
    """
    env = cli_env
    (client,) = await signed_in(connect_as, "cli-bot")
    component = await _admin_component(connect_as)
    c = str(component.id)
    await client.create_custom_field(component.id, "Cost", v1.CustomFieldType.INTEGER)
    await client.create_custom_field(
        component.id, "Found In", v1.CustomFieldType.ENUM, options=["4.1", "4.2"]
    )
    issue = await client.create_issue("kept", component.id)

    for spec, fields in [
        ("Cost=many", {"Cost": "many"}),
        ("Found In=9.9", {"Found In": "9.9"}),
        ("Cost=1,2", {"Cost": "1,2"}),
        ("Nope=1", {"Nope": "1"}),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            await client.update_issue(issue.id, fields=fields)
        assert refused.value.metadata["origin"] == "client"
        said = refused.value.message.split(": ", 1)[1]
        for args in (
            ["issue", "create", "--title", "refused", "--component", c],
            ["issue", "update", str(issue.id)],
            ["issue", "update", "--query", f"componentid:{c}", "--yes"],
        ):
            result = await _bugless(env, *args, "--field", spec, check=False)
            assert (result.returncode, result.stderr.strip()) == (2, f"error: --field: {said}")
    twice = await _bugless(
        env, "issue", "update", str(issue.id), "--field", "Cost=1", "--field", "Cost=2", check=False
    )
    assert (twice.returncode, twice.stderr.strip()) == (
        2,
        "error: --field: custom field 'Cost' is given twice",
    )
    assert (await client.get_issue(issue.id)).version == issue.version
    assert [i.id for i in (await client.search_issues(f"componentid:{c}")).issues] == [issue.id]
    changed = await _json(env, "issue", "update", str(issue.id), "--field", "found in= 4.2")
    assert {v["name"]: v["values"] for v in changed["custom_fields"]}["Found In"] == ["4.2"]


async def test_field_names_mean_the_issues_components_fields_and_change_in_one_entry(
    cli_env: dict[str, str], connect_as: ConnectAs
) -> None:
    """Two ``--field`` options are one change; a field of another component is no field here.

    The names are resolved among the fields of the issue's component (of
    the component it moves to, with ``--component``): a field defined on a
    sibling, by name or as ``customfield<ID>``, is refused with the names
    that do apply, and nothing is written, in a bulk update too.
    """
    env = cli_env
    (client,) = await signed_in(connect_as, "cli-bot")
    here, there = await _admin_component(connect_as), await _admin_component(connect_as)
    await client.create_custom_field(here.id, "Cost", v1.CustomFieldType.INTEGER)
    await client.create_custom_field(
        here.id, "Found In", v1.CustomFieldType.ENUM, options=["4.1", "4.2"]
    )
    rack = await client.create_custom_field(there.id, "Rack", v1.CustomFieldType.TEXT)
    issue = await client.create_issue("two fields", here.id)
    elsewhere = await client.create_issue("over there", there.id)

    both = await _json(
        env, "issue", "update", str(issue.id), "--field", "Cost=3", "--field", "Found In=4.2"
    )
    assert both["version"] == issue.version + 1  # one history entry holds both
    assert {v["name"]: v["values"] for v in both["custom_fields"]} == {
        "Cost": ["3"],
        "Found In": ["4.2"],
    }
    made = await _json(
        env,
        "issue",
        "create",
        "--title",
        "made with two",
        "--component",
        str(here.id),
        "--field",
        "cost=7",
        "--field",
        "found in=4.1",
    )
    assert {v["name"]: v["values"] for v in made["custom_fields"]} == {
        "Cost": ["7"],
        "Found In": ["4.1"],
    }

    not_here = "error: --field: no custom field {!r} applies here (known: 'Cost', 'Found In')"
    for spec, name in [("Rack=r1", "Rack"), (f"customfield{rack.id}=r1", f"customfield{rack.id}")]:
        for args in (
            ["issue", "update", str(issue.id)],
            ["issue", "create", "--title", "refused", "--component", str(here.id)],
            ["issue", "update", str(issue.id), str(elsewhere.id), "--yes"],
        ):
            refused = await _bugless(env, *args, "--field", spec, check=False)
            assert (refused.returncode, refused.stderr.strip()) == (2, not_here.format(name))
    assert (await client.get_issue(issue.id)).version == issue.version + 1
    assert (await client.get_issue(elsewhere.id)).version == elsewhere.version
    assert {i.id for i in (await client.search_issues(f"componentid:{here.id}")).issues} == {
        issue.id,
        int(made["id"]),  # an int64 in the JSON is a string
    }

    moved = await _json(
        env, "issue", "update", str(issue.id), "--component", str(there.id), "--field", "Rack=r1"
    )
    assert (int(moved["component_id"]), moved["version"]) == (there.id, issue.version + 2)
    assert {v["name"]: v["values"] for v in moved["custom_fields"]}["Rack"] == ["r1"]


async def test_edit_comment_and_redact(cli_env: dict[str, str], connect_as: ConnectAs) -> None:
    env = cli_env
    component = str((await _admin_component(connect_as)).id)
    created = await _json(
        env,
        "issue",
        "create",
        "--title",
        "edits",
        "--component",
        component,
        "--description",
        "desc with s3cretdescword",
    )
    issue_id = str(created["id"])
    commented = await _json(env, "issue", "comment", issue_id, "first wording")
    entry = str(commented["comment"]["version"])
    edited = await _json(env, "issue", "edit-comment", issue_id, entry, "second wording")
    assert edited["entry"]["edits_version"] == int(entry)
    history = (await _bugless(env, "issue", "history", issue_id)).stdout
    assert "first wording" in history
    assert f"(edits the comment of #{entry})" in history

    refused = await _bugless(env, "issue", "redact", issue_id, "--entry", entry, check=False)
    assert refused.returncode == 2  # not interactive, no --yes: nothing redacted
    assert "--yes" in refused.stderr
    both = await _bugless(
        env, "issue", "redact", issue_id, "--entry", entry, "--description", check=False
    )
    assert both.returncode == 2
    redacted = await _json(env, "issue", "redact", issue_id, "--entry", entry, "--yes")
    assert redacted["entry"]["redacted_version"] == int(entry)
    await _json(env, "issue", "redact", issue_id, "--description", "--yes")
    history = (await _bugless(env, "issue", "history", issue_id)).stdout
    assert "wording" not in history
    assert "s3cretdescword" not in history
    assert "(comment redacted)" in history
    found = await _json(env, "issue", "list", "s3cretdescword")
    assert found["issues"] == []

    edit_other = await _bugless(env, "issue", "edit-comment", issue_id, "1", "x", check=False)
    assert edit_other.returncode == 1  # a redacted description cannot be edited
    assert "redacted" in edit_other.stderr


async def test_show_with_comments_has_the_description_once_and_each_comment_at_its_text(
    cli_env: dict[str, str], connect_as: ConnectAs
) -> None:
    """``issue show --comments``: the description with the fields, then the comments after it.

    Entry 1 (the description) is not repeated as a comment; an edited
    comment is shown once, at its place with its latest text, marked
    edited (the edit entries are no comments of their own); a redacted one
    keeps its number and says so.
    """
    env = cli_env
    component = str((await _admin_component(connect_as)).id)
    created = await _json(
        env, "issue", "create", "--title", "read", "--component", component, "--description", "x"
    )
    issue_id = str(created["id"])
    await _bugless(env, "issue", "edit-comment", issue_id, "1", "orig-desc-words")  # 2
    for text in ("kept as written", "first wording", "to be redacted"):
        await _bugless(env, "issue", "comment", issue_id, text)  # entries 3, 4, 5
    await _bugless(env, "issue", "edit-comment", issue_id, "4", "second wording")  # 6
    await _bugless(env, "issue", "edit-comment", issue_id, "1", "edited-desc-words")  # 7
    await _bugless(env, "issue", "redact", issue_id, "--entry", "5", "--yes")  # 8

    shown = await _json(env, "issue", "show", issue_id, "--comments")
    assert shown["description"] == "edited-desc-words"
    assert [(c["version"], c["comment"]) for c in shown["comments"]] == [
        (3, "kept as written"),
        (4, "second wording"),
        (5, ""),
    ]
    assert [c["comment_redacted"] for c in shown["comments"]] == [False, False, True]

    text = (await _bugless(env, "issue", "show", issue_id, "--comments")).stdout
    assert text.count("edited-desc-words") == 1
    assert "orig-desc-words" not in text
    assert "first wording" not in text
    assert text.count("second wording") == 1
    numbered = [line.split()[0] for line in text.splitlines() if line.startswith("#")]
    assert numbered == ["#3", "#4", "#5"]
    lines = text.splitlines()
    description = next(i for i, line in enumerate(lines) if line.startswith("description"))
    assert "edited-desc-words" in lines[description]
    assert description < next(i for i, line in enumerate(lines) if line.startswith("#3"))
    assert next(line for line in lines if line.startswith("#4")).endswith("(edited)")
    assert not next(line for line in lines if line.startswith("#3")).endswith("(edited)")
    assert "(comment redacted)" in text


async def test_query_explain_shows_custom_field_terms() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [*BUGLESS_COMMAND, "query", "explain", '"Found In":4.2 customfield7>3 -has:customfield8'],
        capture_output=True,
        text=True,
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=True,
    )
    assert 'every custom field named "Found In" is "4.2"' in result.stdout
    assert "custom field 7 is greater than" in result.stdout
    assert "customfield8:any — custom field 8 is set" in result.stdout


async def test_query_explain_shows_mention_terms() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [*BUGLESS_COMMAND, "query", "explain", "mention:me OR -mention:ann"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "mention:me — mentions me (the signed-in user)" in result.stdout
    assert "mention:ann — mentions ann" in result.stdout
