"""A refused client command names the option or argument at fault, not the field's wire path.

Through the real ``bugless`` command against the session's API, Model and
Authenticator: ``--assignee: no bugless user is named 'x'`` where the server
wrote ``delta.fields.assignee: ...``, ``NOTE: ...`` where it wrote ``note: ...``.
One test per command group (issue; hotlist, saved-search and component;
hotlist items; comment edits, redaction, attachments and custom fields; the
webhook commands are in test_webhooks, whose API has a notifier). The Python
client (what bots use) still reads the wire path, in the message and the
``field`` metadata.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from api_support import ConnectAs, bugless_cli, signed_in

from bugless_api.cli._option_names import (
    ISSUE_CREATE_OPTIONS,
    ISSUE_UPDATE_OPTIONS,
    in_option_terms,
    option_for,
)
from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_proto import v1

NOBODY = f"nosuch{secrets.token_hex(3)}"
UNKNOWN = f"no bugless user is named '{NOBODY}'"


async def test_issue_commands_name_the_option_the_refused_value_came_from(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    (client,) = await signed_in(connect_as, "cli-bot")
    component = await client.create_component(f"Names-{secrets.token_hex(3)}")
    issue = await client.create_issue("named", component.id)
    other = await client.create_issue("other", component.id)
    one, two, c = str(issue.id), str(other.id), str(component.id)
    long_comment = "y" * (limits.MAX_COMMENT_LENGTH + 1)
    update = ["issue", "update", one]
    create = ["issue", "create", "--title", "t", "--component", c]
    missing = "9" * 9
    too_long = f"is {len(long_comment)} characters long; at most {limits.MAX_COMMENT_LENGTH}"
    cases = [
        ([*update, "--assignee", NOBODY], 1, f"--assignee: {UNKNOWN}"),
        ([*update, "--cc-add", "cli-bot", "--cc-add", NOBODY], 1, f"--cc-add: {UNKNOWN}"),
        ([*update, "--title", ""], 1, "--title: required and must not be blank"),
        ([*update, "--parent", one], 1, "--parent: an issue cannot be its own parent"),
        ([*update, "--blocking-add", missing], 3, f"--blocking-add: issue {missing} not found"),
        ([*update, two, "--verifier", NOBODY, "--yes"], 1, f"--verifier: {UNKNOWN}"),
        ([*create, "--assignee", NOBODY], 1, f"--assignee: {UNKNOWN}"),
        ([*create, "--cc", NOBODY], 1, f"--cc: {UNKNOWN}"),
        ([*create, "--blocking", missing], 3, f"--blocking: issue {missing} not found"),
        (["issue", "comment", one, long_comment], 1, f"TEXT: {too_long} are accepted"),
    ]
    for args, code, said in cases:
        result = bugless_cli(served_api, *args, check=False)
        assert (result.returncode, result.stderr.strip()) == (code, f"error: {said}"), args[:4]
    assert (await client.get_issue(issue.id)).version == issue.version  # nothing was written
    # One issue of several refused: its row names the option too (--json keeps the wire's).
    bulk = bugless_cli(
        served_api, "issue", "update", one, two, "--blocked-by-add", one, "--yes", check=False
    )
    assert bulk.returncode == 1, bulk.stderr
    row = next(line for line in bulk.stdout.splitlines() if line.startswith(one))
    assert "not changed: --blocked-by-add: " in row, bulk.stdout
    # Bots read the wire path.
    with pytest.raises(InvalidArgument) as refused:
        await client.update_issue(issue.id, expected_version=issue.version, assignee=NOBODY)
    assert refused.value.message == f"delta.fields.assignee: {UNKNOWN}"
    assert refused.value.metadata["field"] == "delta.fields.assignee"


async def test_hotlist_saved_search_and_component_commands_name_their_options(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    (client,) = await signed_in(connect_as, "cli-bot")
    tag = secrets.token_hex(3)
    hotlist = await client.create_hotlist(f"Names-{tag}")
    component = await client.create_component(f"Names-{tag}")
    h, c, missing, long_name = str(hotlist.id), str(component.id), "9" * 9, "n" * 1000
    long_text = "d" * (limits.MAX_DESCRIPTION_LENGTH + 1)
    name_too_long = f"is {len(long_name)} characters long; at most {limits.MAX_NAME_LENGTH}"
    too_long = f"is {len(long_text)} characters long; at most {len(long_text) - 1} are accepted"
    no_parent = f"--parent: component {missing} not found"
    reader = ["saved-search", "create", f"s-{tag}", "is:open", "--reader"]
    cases = [
        (["hotlist", "create", f"h-{tag}", "--editor", NOBODY], 1, f"--editor: {UNKNOWN}"),
        (["hotlist", "create", long_name], 1, f"NAME: {name_too_long} are accepted"),
        (["hotlist", "update", h, "--owner", NOBODY], 1, f"--owner: {UNKNOWN}"),
        (["hotlist", "update", h, "--editor", NOBODY], 1, f"--editor: {UNKNOWN}"),
        ([*reader, f"user:{NOBODY}"], 1, f"--reader: {UNKNOWN}"),
        (["component", "create", f"c-{tag}", "--parent", missing], 3, no_parent),
        (["component", "update", c, "--description", long_text], 1, f"--description: {too_long}"),
    ]
    for args, code, said in cases:
        result = bugless_cli(served_api, *args, check=False)
        assert (result.returncode, result.stderr.strip()) == (code, f"error: {said}"), args[:3]


def test_a_path_the_command_did_not_set_is_left_as_the_server_wrote_it() -> None:
    assert option_for("delta.custom_fields_set[0].values[2]", ISSUE_UPDATE_OPTIONS) == "--field"
    assert option_for("cc[3]", ISSUE_CREATE_OPTIONS) == "--cc"
    assert option_for("delta.update_mask", ISSUE_UPDATE_OPTIONS) is None
    unchanged = "delta: the change is empty: change a field or add a comment"
    assert in_option_terms(unchanged, "delta", ISSUE_UPDATE_OPTIONS) == unchanged
    assert in_option_terms("issue 5 not found", None, ISSUE_UPDATE_OPTIONS) == "issue 5 not found"
    assert (
        in_option_terms("fields.title: is 501 characters long", None, ISSUE_CREATE_OPTIONS)
        == "--title: is 501 characters long"
    )


def _refusals(env: dict[str, str], cases: list[tuple[list[str], int, str]]) -> None:
    for args, code, said in cases:
        result = bugless_cli(env, *args, check=False)
        assert (result.returncode, result.stderr.strip()) == (code, f"error: {said}"), args[:4]


async def test_hotlist_item_commands_name_their_arguments_and_options(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    (client,) = await signed_in(connect_as, "cli-bot")
    tag = secrets.token_hex(3)
    hotlist = await client.create_hotlist(f"Items-{tag}")
    component = await client.create_component(f"Items-{tag}")
    issue = await client.create_issue("on the hotlist", component.id)
    await client.add_to_hotlist(hotlist.id, [issue.id])
    hotlist = await client.get_hotlist(hotlist.id)  # its items move its version (ec84b392)
    h, i, missing = str(hotlist.id), str(issue.id), "9" * 9
    long_note = "n" * (limits.MAX_COMMENT_LENGTH + 1)
    too_long = f"is {len(long_note)} characters long; at most {limits.MAX_COMMENT_LENGTH}"
    not_on = f"issue {missing} is not on hotlist {h}"
    _refusals(
        served_api,
        [
            (["hotlist", "add", h, i, "--note", long_note], 1, f"--note: {too_long} are accepted"),
            (
                ["hotlist", "add", h, i, "--position", "-5"],
                1,
                "--position: use a 0-based position, or -1 to append",
            ),
            (["hotlist", "add", h, missing], 3, f"ISSUE_IDS: issue {missing} not found"),
            (["hotlist", "remove", h, missing], 3, f"ISSUE_IDS: issue {missing} not found"),
            (["hotlist", "note", h, i, long_note], 1, f"NOTE: {too_long} are accepted"),
            (["hotlist", "note", h, missing, "x"], 3, f"ISSUE_ID: {not_on}"),
            (["hotlist", "rank", h, missing, "0"], 3, f"ISSUE_ID: {not_on}"),
            (["hotlist", "rerank", h, missing], 3, f"ISSUE_IDS: {not_on}"),
            (["hotlist", "rename", h, " "], 1, "NAME: required and must not be blank"),
        ],
    )
    after = await client.get_hotlist(hotlist.id)
    assert (after.name, after.version) == (hotlist.name, hotlist.version)  # nothing was written


async def test_comment_edit_redact_attach_and_field_commands_name_their_options(
    served_api: dict[str, str], connect_as: ConnectAs, tmp_path: Path
) -> None:
    (client, robot) = await signed_in(connect_as, "cli-bot", "robot")
    tag = secrets.token_hex(3)
    admins = [
        v1.AclEntry(principal=v1.Principal(user=name), role=v1.Role.ADMIN)
        for name in ("robot", "cli-bot")
    ]
    component = await robot.create_component(f"Fields-{tag}", acl=admins)
    issue = await client.create_issue("edits", component.id, description="d")
    field = await client.create_custom_field(component.id, f"Os{tag}", "enum", options=["a"])
    c, i, f, missing = str(component.id), str(issue.id), str(field.id), "9" * 9
    long_text = "t" * (limits.MAX_COMMENT_LENGTH + 1)
    too_long = f"is {len(long_text)} characters long; at most {limits.MAX_COMMENT_LENGTH}"
    not_an_option = f"'zz' is not an option of custom field 'Os{tag}'; use one of 'a'"
    attached = tmp_path / "notes.txt"
    attached.write_text("hello")
    create_field = ["component", "field", "create", c]
    update_field = ["component", "field", "update", c, f]
    no_field = f"no custom field {missing} applies to component {c}"
    _refusals(
        served_api,
        [
            (["issue", "edit-comment", i, "1", long_text], 1, f"TEXT: {too_long} are accepted"),
            (
                ["issue", "edit-comment", i, "99", "x"],
                3,
                f"ENTRY: issue {i} has no history entry 99",
            ),
            (
                ["issue", "redact", i, "--entry", "99", "--yes"],
                3,
                f"--entry: issue {i} has no history entry 99",
            ),
            (
                ["issue", "redact", i, "--attachment", missing, "--yes"],
                3,
                f"--attachment: issue {i} has no attachment {missing}",
            ),
            (
                ["issue", "redact", i, "--attachment-description", missing, "--yes"],
                3,
                f"--attachment-description: issue {i} has no attachment {missing}",
            ),
            (
                ["issue", "attach", i, str(attached), "--comment", long_text],
                1,
                f"--comment: {too_long} are accepted",
            ),
            (["issue", "update", i, "--field", f"Os{tag}=zz"], 2, f"--field: {not_an_option}"),
            (
                ["issue", "update", i, "--field", "nosuch=1"],
                2,
                f"--field: no custom field 'nosuch' applies here (known: 'Os{tag}')",
            ),
            ([*create_field, " ", "--type", "text"], 1, "NAME: required and must not be blank"),
            (
                [*create_field, f"E{tag}", "--type", "enum", "--option", "a", "--option", "a"],
                1,
                "--option: 'a' is listed twice",
            ),
            (
                [*create_field, f"U{tag}", "--type", "user", "--default", NOBODY],
                1,
                f"--default: {UNKNOWN}",
            ),
            ([*update_field, "--name", " "], 1, "--name: required and must not be blank"),
            ([*update_field, "--default", "zz"], 1, f"--default: {not_an_option}"),
            ([*update_field, "--option", "q", "--option", "q"], 1, "--option: 'q' is listed twice"),
            (
                ["component", "field", "update", c, missing, "--name", "x"],
                2,
                f"FIELD_ID: {no_field}",
            ),
            (["component", "field", "delete", c, missing], 2, f"FIELD_ID: {no_field}"),
        ],
    )
    assert (await client.get_issue(issue.id)).version == issue.version  # nothing was written
    (unchanged,) = await client.list_custom_fields(component.id)
    assert unchanged == field
