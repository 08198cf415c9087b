"""``bugless component create`` names who may do what, and takes its parent by path.

The creator of a component gets no role by creating it (MODEL_CONTRACT), so
a bot or person who made one with the CLI could not define its custom
fields or change it: the command had no way to list an admin. ``--admin``,
``--editor`` and ``--viewer`` (``user:NAME``, ``group:NAME`` or a bare
username) make its ACL; ``component show`` prints it. Real services, the CLI
in subprocesses as a script runs it.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import asyncpg
from api_support import ConnectAs, bugless_cli, cli_json, signed_in

from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack


async def test_the_creator_names_itself_admin_and_defines_a_field(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    await signed_in(connect_as, "cli-bot", "viewer")
    name = f"Team-{secrets.token_hex(3)}"
    made = cli_json(
        served_api, "component", "create", name, "--admin", "cli-bot", "--viewer", "group:triage"
    )
    assert made["caller_role"] == "ADMIN"
    assert [(e["role"], e["principal"]) for e in made["acl"]] == [
        ("ADMIN", {"user": "cli-bot", "group": None}),
        ("VIEWER", {"user": None, "group": "triage"}),
    ]
    shown = bugless_cli(served_api, "component", "show", name).stdout
    assert "access       admin user:cli-bot, viewer group:triage" in shown
    bugless_cli(served_api, "component", "field", "create", name, "Found In", "--type", "text")
    issue = cli_json(
        served_api, "issue", "create", "--title", "t", "--component", name, "--field", "Found In=4"
    )
    assert [(v["name"], v["values"]) for v in issue["custom_fields"]] == [("Found In", ["4"])]

    child = cli_json(served_api, "component", "create", "Sub", "--parent", name)
    assert (child["path"], child["parent_id"], child["acl"]) == (f"{name}>Sub", made["id"], [])
    assert (
        "access       inherited" in bugless_cli(served_api, "component", "show", child["id"]).stdout
    )


async def test_a_bad_principal_is_refused_and_nothing_is_created(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    await signed_in(connect_as, "cli-bot")
    name = f"Refused-{secrets.token_hex(3)}"
    malformed = bugless_cli(
        served_api, "component", "create", name, "--admin", "team:x", check=False
    )
    assert malformed.returncode == 2
    assert "Invalid value for '--admin': 'team:x': use user:NAME or group:NAME" in malformed.stderr
    unknown = bugless_cli(served_api, "component", "create", name, "--editor", "ghost", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: --admin/--editor/--viewer: no bugless user is named 'ghost'"
    )
    missing = bugless_cli(
        served_api, "component", "create", name, "--parent", "No>Such", check=False
    )
    assert missing.returncode == 3
    listed = cli_json(served_api, "component", "list")
    assert name not in str(listed)


async def test_list_and_update_take_the_parent_by_path_too(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    await signed_in(connect_as, "cli-bot")
    name = f"Moves-{secrets.token_hex(3)}"
    top = cli_json(served_api, "component", "create", name, "--admin", "cli-bot")
    child = cli_json(served_api, "component", "create", "Child", "--parent", name)
    other = cli_json(served_api, "component", "create", "Other", "--parent", top["id"])

    listed = cli_json(served_api, "component", "list", "--parent", name)["components"]
    assert sorted(c["path"] for c in listed) == [f"{name}>Child", f"{name}>Other"]

    moved = cli_json(served_api, "component", "update", other["id"], "--parent", f"{name}>Child")
    assert (moved["path"], moved["parent_id"]) == (f"{name}>Child>Other", child["id"])
    back = cli_json(served_api, "component", "update", moved["id"], "--parent", top["id"])
    assert back["path"] == f"{name}>Other"
    missing = bugless_cli(
        served_api, "component", "update", back["id"], "--parent", "No>Such", check=False
    )
    assert (missing.returncode, missing.stderr.strip()) == (
        3,
        "error: component 'No>Such' not found",
    )


async def test_update_changes_the_access_list_entry_by_entry(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    """Before, only ``create`` set an ACL: a script could not change one afterwards."""
    await signed_in(connect_as, "cli-bot", "viewer")
    name = f"Access-{secrets.token_hex(3)}"
    cli_json(served_api, "component", "create", name, "--admin", "cli-bot", "--viewer", "group:qa")

    changed = cli_json(
        served_api, "component", "update", name, "--editor", "group:qa", "--viewer", "viewer"
    )
    entries = [(e["role"], e["principal"]) for e in changed["acl"]]
    assert entries == [
        ("ADMIN", {"user": "cli-bot", "group": None}),
        ("EDITOR", {"user": None, "group": "qa"}),
        ("VIEWER", {"user": "viewer", "group": None}),
    ]
    assert changed["version"] == 2
    removed = cli_json(served_api, "component", "update", name, "--remove", "user:viewer")
    assert [e["principal"] for e in removed["acl"]] == [
        {"user": "cli-bot", "group": None},
        {"user": None, "group": "qa"},
    ]

    typo = bugless_cli(
        served_api, "component", "update", name, "--remove", "group:qaa", check=False
    )
    assert typo.returncode == 2
    assert (
        "Invalid value for --remove: the access list has no entry for group:qaa "
        "(its entries: user:cli-bot, group:qa)"
    ) in typo.stderr
    stale = bugless_cli(
        served_api, "component", "update", name, "--viewer", "group:ops",
        "--expected-version", "2", check=False,
    )  # fmt: skip
    assert stale.returncode == 4, stale.stderr
    shown = bugless_cli(served_api, "component", "show", name).stdout
    assert "access       admin user:cli-bot, editor group:qa\n" in shown
    assert "version      3\n" in shown


async def test_update_finds_a_users_entry_however_the_name_is_spelt(
    served_api: dict[str, str], connect_as: ConnectAs
) -> None:
    """A username is one user in any case: --viewer VIEWER changes viewer's entry.

    Before, the entry was matched by the name as typed, so ``--viewer
    user:VIEWER`` beside viewer's ADMIN entry added a second entry for the
    same person and the demotion left them an admin; ``--remove user:Viewer``
    was refused as naming no entry.
    """
    await signed_in(connect_as, "cli-bot", "viewer")
    name = f"Spelt-{secrets.token_hex(3)}"
    cli_json(served_api, "component", "create", name, "--admin", "cli-bot", "--admin", "viewer")

    demoted = cli_json(served_api, "component", "update", name, "--viewer", "user:VIEWER")
    entries = [(e["role"], e["principal"]["user"]) for e in demoted["acl"]]
    assert entries == [("ADMIN", "cli-bot"), ("VIEWER", "viewer")]
    removed = cli_json(served_api, "component", "update", name, "--remove", "user:Viewer")
    assert [e["principal"]["user"] for e in removed["acl"]] == ["cli-bot"]

    twice = bugless_cli(
        served_api, "component", "update", name, "--editor", "viewer", "--viewer", "Viewer",
        check=False,
    )  # fmt: skip
    assert twice.returncode == 2, twice.stderr
    assert "user:Viewer is named more than once in --admin/--editor/--viewer" in " ".join(
        twice.stderr.split()
    )
    assert "version      3\n" in bugless_cli(served_api, "component", "show", name).stdout


async def test_update_of_a_list_giving_a_user_two_roles_makes_it_name_them(
    served_api: dict[str, str], connect_as: ConnectAs, bugless_stack: LocalStack
) -> None:
    """A list from before the Model refused a principal twice is not rewritten silently.

    The Model counts the higher of viewer's two entries (admin). Before, any
    access change (here adding group qa) wrote the list back with the last
    entry only: viewer became a viewer, exit 0. Now that change is refused
    (exit 2) naming viewer and both roles, and naming viewer in it saves one.
    """
    await signed_in(connect_as, "cli-bot", "viewer")
    name = f"Twice-{secrets.token_hex(3)}"
    made = cli_json(served_api, "component", "create", name, "--admin", "cli-bot")
    made = cli_json(served_api, "component", "update", name, "--admin", "viewer")
    schema = bugless_stack.env.get("BUGLESS_DATABASE_SCHEMA", "bugless")
    conn = await asyncpg.connect(
        bugless_stack.model_database_url, server_settings={"search_path": schema}
    )
    try:  # as only a release before 9eaca465 could write it
        await conn.execute(
            "UPDATE components SET acl = acl || jsonb_build_array(jsonb_build_object("
            "'p', acl->1->>'p', 'r', $2::int)) WHERE id = $1",
            int(made["id"]),
            int(v1.Role.VIEWER),
        )
    finally:
        await conn.close()
    shown = bugless_cli(served_api, "component", "show", name).stdout
    assert "access       admin user:cli-bot, admin user:viewer, viewer user:viewer" in shown

    added = bugless_cli(
        served_api, "component", "update", name, "--viewer", "group:qa", check=False
    )
    assert added.returncode == 2, added.stdout
    assert (
        "the access list gives user:viewer two entries (admin and viewer); give it one role in "
        "this change (--admin/--editor/--viewer user:viewer) or --remove user:viewer"
    ) in " ".join(added.stderr.split())
    assert (
        f"version      {made['version']}\n"
        in bugless_cli(served_api, "component", "show", name).stdout
    )

    kept = cli_json(
        served_api, "component", "update", name, "--viewer", "group:qa", "--editor", "viewer"
    )
    assert [
        (e["role"], e["principal"]["user"] or e["principal"]["group"]) for e in kept["acl"]
    ] == [
        ("ADMIN", "cli-bot"),
        ("EDITOR", "viewer"),
        ("VIEWER", "qa"),
    ]
