"""`bugless api serve` and the client commands, as an operator and a script run them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from api_support import Bots, bugless_cli, cli_json

from bugless_dev.processes import BUGLESS_COMMAND


def test_serve_refuses_to_start_without_a_client_ca(bots: Bots) -> None:
    result = subprocess.run(
        [
            *BUGLESS_COMMAND,
            "api",
            "serve",
            "--model",
            "127.0.0.1:1",
            "--auth",
            "127.0.0.1:2",
            "--tls-cert",
            str(bots.stack.server.cert),
            "--tls-key",
            str(bots.stack.server.key),
        ],
        capture_output=True,
        text=True,
        timeout=180,  # a CLI process starting on a loaded CI machine
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_API")},
    )
    assert result.returncode == 2
    assert "mutual TLS is required" in result.stderr


def test_a_script_drives_issues_end_to_end(served_api: dict[str, str]) -> None:
    env = served_api
    component = cli_json(env, "component", "create", f"Cli-{os.getpid()}-{time.time_ns()}")
    created = cli_json(
        env,
        "issue",
        "create",
        "--title",
        "cli made me",
        "--component",
        str(component["id"]),
        "--priority",
        "P1",
    )
    issue_id = created["id"]
    assert created["reporter"] == "cli-bot"
    assert created["priority"] == "P1"

    updated = cli_json(
        env,
        "issue",
        "update",
        str(issue_id),
        "--priority",
        "P0",
        "--assignee",
        "cli-bot",
        "--status",
        "fixed",
    )
    assert (updated["priority"], updated["assignee"], updated["status"]) == (
        "P0",
        "cli-bot",
        "FIXED",
    )

    commented = cli_json(env, "issue", "comment", str(issue_id), "done")
    assert commented["issue"]["comment_count"] == 1
    assert (commented["comment"]["comment"], commented["comment"]["author"]) == ("done", "cli-bot")

    listed = cli_json(env, "issue", "list", f"c:{component['id']} is:closed")
    assert [i["id"] for i in listed["issues"]] == [issue_id]
    assert listed["issues"][0]["reporter"] == "cli-bot"  # --json: whole issues

    # The table asks for its columns only (read_mask); each shows what was written.
    table = bugless_cli(env, "issue", "list", f"c:{component['id']}").stdout
    assert table.splitlines()[0].split() == ["ID", "P", "STATUS", "ASSIGNEE", "COMPONENT", "TITLE"]
    assert table.splitlines()[1].split() == [
        str(issue_id),
        "P0",
        "FIXED",
        "cli-bot",
        component["path"],
        "cli",
        "made",
        "me",
    ]

    hotlist = cli_json(env, "hotlist", "create", f"cli-{time.time_ns()}")
    bugless_cli(env, "hotlist", "add", str(hotlist["id"]), str(issue_id))
    shown = cli_json(env, "hotlist", "show", str(hotlist["id"]))
    assert [i["issue_id"] for i in shown["items"]] == [issue_id]


def test_exit_codes_tell_scripts_what_went_wrong(served_api: dict[str, str]) -> None:
    env = served_api
    missing = bugless_cli(env, "issue", "show", "99999999", check=False)
    assert missing.returncode == 3
    assert "not found" in missing.stderr

    component = cli_json(env, "component", "create", f"Codes-{time.time_ns()}")
    created = cli_json(env, "issue", "create", "--title", "x", "--component", str(component["id"]))
    bugless_cli(env, "issue", "comment", str(created["id"]), "first")
    stale = bugless_cli(
        env,
        "issue",
        "update",
        str(created["id"]),
        "--priority",
        "P3",
        "--expected-version",
        "1",
        check=False,
    )
    assert stale.returncode == 4
    assert "is at version 2, not 1" in stale.stderr

    bad_query = bugless_cli(env, "issue", "list", "status:", check=False)
    assert bad_query.returncode == 2
    assert "^" in bad_query.stderr
    for query, fault, says in (
        ("is:open c:999999", "999999", "there is no component 999999 that you may view"),
        ("h:999999", "999999", "there is no hotlist 999999 that you may view"),
        ("component:nosuch", "nosuch", "there is no component named 'nosuch'"),
    ):
        unknown = bugless_cli(env, "issue", "list", query, check=False)
        assert unknown.returncode == 2, unknown.stderr
        assert says in unknown.stderr
        # Marked in the query as a syntax error is, not at a path of the Model's tree.
        assert "query.filter" not in unknown.stderr
        assert f"at column {query.rindex(fault) + 1}: {says}" in unknown.stderr
        assert unknown.stderr.rstrip().endswith("^" * len(fault))

    bad_priority = bugless_cli(
        env, "issue", "update", str(created["id"]), "--priority", "P9", check=False
    )
    assert bad_priority.returncode == 2


def test_missing_configuration_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    env["BUGLESS_CLIENT_CONFIG"] = str(tmp_path / "none.toml")
    result = bugless_cli(env, "issue", "list", check=False)
    assert result.returncode == 2
    assert "not configured: --api" in result.stderr


def test_config_file_supplies_the_connection(served_api: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text(
        "\n".join(
            f'{name} = "{served_api[f"BUGLESS_{name.upper()}"]}"'
            for name in ("api", "cert", "key", "ca")
        )
    )
    env = {k: v for k, v in served_api.items() if k not in {"BUGLESS_API", "BUGLESS_CERT"}}
    env["BUGLESS_CLIENT_CONFIG"] = str(config)
    assert "components" in cli_json(env, "component", "list")


def test_a_query_that_does_not_parse_is_bad_usage_in_every_command_that_sends_one(
    served_api: dict[str, str],
) -> None:
    """2, as the exit table says, though the API (where the language lives) refuses it.

    ``issue list`` did; ``saved-search create`` and ``update --query`` exited 1,
    the status of a service refusing the request. A value the API refuses that
    is not a query (a reader it does not know) stays 1. Nothing is saved.
    """
    env = served_api
    name = f"unparsed-{time.time_ns()}"
    listed = bugless_cli(env, "issue", "list", "is:open status:", check=False)
    created = bugless_cli(env, "saved-search", "create", name, "is:open status:", check=False)
    assert [listed.returncode, created.returncode] == [2, 2], created.stderr
    for refused in (listed, created):
        assert "expected a value after 'status:'" in refused.stderr
        assert refused.stderr.rstrip().endswith("^")
        assert "Traceback" not in refused.stderr
    saved = cli_json(env, "saved-search", "create", name, "is:open")
    updated = bugless_cli(
        env, "saved-search", "update", saved["id"], "--query", "status:", check=False
    )
    assert updated.returncode == 2, updated.stderr
    assert "--query: " in updated.stderr
    unknown_reader = bugless_cli(
        env, "saved-search", "create", name + "-shared", "is:open", "--reader", "nobody-here",
        check=False,
    )  # fmt: skip
    assert unknown_reader.returncode == 1, unknown_reader.stderr
    assert "--reader" in unknown_reader.stderr
    mine = cli_json(env, "saved-search", "list", "--mine")["saved_searches"]
    assert [(s["name"], s["query"]) for s in mine if s["name"].startswith(name)] == [
        (name, "is:open")
    ]
