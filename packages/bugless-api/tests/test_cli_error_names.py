"""A refused ``bugless issue`` command names the option at fault, not the field's wire path.

Through the real ``bugless`` command against the session's API, Model and
Authenticator: ``--assignee: no bugless user is named 'x'`` where the server
wrote ``delta.fields.assignee: ...``. The Python client (what bots use) still
reads the wire path, in the message and the ``field`` metadata.
"""

from __future__ import annotations

import secrets

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
