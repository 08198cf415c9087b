"""Comments and issues the source shows only to some readers are left out and named.

bugless has no per-comment visibility: a Redmine private note or a Jira
comment restricted to a role or a group, imported as a comment, would be
read by everyone who may read the issue. Before, both were imported as
ordinary comments; now the import leaves them out (keeping a journal's
changes, which Redmine shows to everyone) and its report names each one.
Likewise a Redmine private issue or a Jira issue with a security level:
the import would put it in the component its fields map to, whoever may
read that.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from import_support import FIXTURES, MakeSettings, find, history, redmine_tree
from redmine_server import Redmine, serve

from bugless_core.errors import InvalidArgument
from bugless_import import run_import
from bugless_import.sources.jira import JiraImporter
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1

KEY = "fedcba9876543210fedcba9876543210fedcba98"


async def test_redmine_private_notes_are_left_out_and_their_changes_kept(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    tree = redmine_tree(tmp_path, 8512)
    path = tree / "issues" / "8512.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    journals = data["issue"]["journals"]
    # "Looking." with the status and priority change: the note is private.
    journals[1]["private_notes"] = True
    journals.append(
        {
            "id": 851299,
            "user": {"id": 5, "name": "Ann R"},
            "notes": "The customer's VPN password is hunter2.",
            "created_on": "2019-04-06T09:00:00Z",
            "private_notes": True,
            "details": [],
        }
    )
    path.write_text(json.dumps(data), encoding="utf-8")
    private = tree / "issues" / "8514.json"
    hidden = json.loads(private.read_text(encoding="utf-8"))
    hidden["issue"]["is_private"] = True
    private.write_text(json.dumps(hidden), encoding="utf-8")
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")

    with serve(Redmine(tree, KEY)) as server:
        importer = RedmineImporter(server.url, {"api-key-file": str(key_file)})
        report = await run_import(importer, make_settings())

    (issue,) = await find(model, "redmine:8512")
    entries = await history(model, issue.id)
    comments = [e.comment for e in entries if e.comment]
    assert "Looking." not in comments
    assert not any("hunter2" in c for c in comments)
    assert "Fixed the buffer." in comments, "a note that is not private is imported"
    changes = [[(c.field, c.old_value, c.new_value) for c in e.changes] for e in entries[1:]]
    assert [("status", "NEW", "ACCEPTED"), ("priority", "P2", "P1")] in changes, (
        "the private note's journal keeps its changes"
    )
    assert len(entries) == 4, "created, moved, the changes, fixed: the note alone is no entry"
    assert report.withheld == [
        (
            "#8512 journal 851301",
            'private note by Ann R of 2019-04-02T09:00:00Z (Redmine shows it to those with "View '
            'private notes")',
        ),
        (
            "#8512 journal 851299",
            'private note by Ann R of 2019-04-06T09:00:00Z (Redmine shows it to those with "View '
            'private notes")',
        ),
    ]
    text = report.render()
    assert "restricted comments not imported: 2 (bugless has no per-comment visibility" in text
    assert "    #8512 journal 851299: private note by Ann R" in text
    assert "hunter2" not in text, "the report names the note, never its text"
    assert await find(model, "redmine:8514") == [], "a private issue is not imported"
    assert len(await find(model, "redmine:8513")) == 1
    assert report.restricted_issues == [
        (
            "redmine:8514",
            "a private issue (Redmine shows it to its author, its assignee and those with "
            '"View private issues")',
        )
    ]
    assert "restricted issues not imported: 1 (the source shows them only to some" in text


async def test_jira_comments_restricted_to_a_role_or_group_are_left_out(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    root = tmp_path / "jira"
    shutil.copytree(FIXTURES / "jira", root)
    for page in root.glob("*.json"):
        page.write_text(page.read_text(encoding="utf-8").replace("ROCK-", "PRV-"), encoding="utf-8")
    page = root / "search-0000.json"
    data = json.loads(page.read_text(encoding="utf-8"))
    (first,) = [i for i in data["issues"] if i["key"] == "PRV-1"]
    comments = first["fields"]["comment"]["comments"]
    comments[1]["visibility"] = {"type": "role", "value": "Developers"}
    page.write_text(json.dumps(data), encoding="utf-8")
    later = root / "search-0001.json"
    data = json.loads(later.read_text(encoding="utf-8"))
    (second,) = [i for i in data["issues"] if i["key"] == "PRV-2"]
    second["fields"]["security"] = {"id": "10000", "name": "Staff only"}
    later.write_text(json.dumps(data), encoding="utf-8")
    # A comment the search did not return, from the issue's comment pages.
    extra = dict(comments[0], id="77", body="Internal: the vendor's contract number is 4711.")
    extra["visibility"] = {"type": "group", "value": "jira-staff", "identifier": "a1b2"}
    (root / "comments-PRV-1.json").write_text(json.dumps({"comments": [extra]}), encoding="utf-8")

    report = await run_import(JiraImporter(str(root), {}), make_settings())

    (issue,) = await find(model, "jira:PRV-1")
    comments_now = [e.comment for e in await history(model, issue.id) if e.comment]
    assert "*Looking* into it." in comments_now, "an unrestricted comment is imported"
    assert not any("does not work for me" in c for c in comments_now)
    assert not any("4711" in c for c in comments_now)
    assert report.withheld == [
        (
            "PRV-1 comment 2",
            "by Bob of 2020-02-02T23:30:00.000-0500, visible to the role 'Developers' only",
        ),
        (
            "PRV-1 comment 77",
            "by Ann K of 2020-02-01T10:00:00.000+0100, visible to the group 'jira-staff' only",
        ),
    ]
    assert "restricted comments not imported: 2" in report.render()
    assert await find(model, "jira:PRV-2") == [], "an issue behind a security level is not"
    assert report.restricted_issues == [
        (
            "jira:PRV-2",
            "issue security level 'Staff only' (Jira shows it to that level's members only)",
        )
    ]


def _service_desk_export(tmp_path: Path, project: str) -> Path:
    """The Jira fixtures as a service desk ``project``: comment 2 internal, a third by property."""
    root = tmp_path / "jira"
    shutil.copytree(FIXTURES / "jira", root)
    for page in root.glob("*.json"):
        text = page.read_text(encoding="utf-8").replace("ROCK-", f"{project}-")
        page.write_text(text, encoding="utf-8")
    page = root / "search-0000.json"
    data = json.loads(page.read_text(encoding="utf-8"))
    (first,) = [i for i in data["issues"] if i["key"] == f"{project}-1"]
    comments = first["fields"]["comment"]["comments"]
    comments[0]["jsdPublic"] = True
    comments[1]["jsdPublic"] = False
    # Read with expand=properties: the property says it, jsdPublic absent.
    comments.append(
        dict(
            comments[0],
            id="3",
            body="Agent note: refund approved by finance.",
            properties=[{"key": "sd.public.comment", "value": {"internal": True}}],
        )
    )
    del comments[2]["jsdPublic"]
    page.write_text(json.dumps(data), encoding="utf-8")
    return root


async def test_jira_service_desk_internal_comments_are_left_out_by_default(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """An agents' note would be read by a customer with an account: left out and named.

    Before, ``jsdPublic: false`` was not read and the note became an
    ordinary comment.
    """
    root = _service_desk_export(tmp_path, "JSD")

    report = await run_import(JiraImporter(str(root), {}), make_settings())

    (issue,) = await find(model, "jira:JSD-1")
    comments_now = [e.comment for e in await history(model, issue.id) if e.comment]
    assert "*Looking* into it." in comments_now, "a public comment is imported"
    assert not any("does not work for me" in c for c in comments_now)
    assert not any("refund" in c for c in comments_now)
    internal = (
        "(Jira Service Management shows it to the service desk's agents only; --option "
        "internal-comments=import imports such comments)"
    )
    assert report.withheld == [
        ("JSD-1 comment 2", f"internal comment by Bob of 2020-02-02T23:30:00.000-0500 {internal}"),
        (
            "JSD-1 comment 3",
            f"internal comment by Ann K of 2020-02-01T10:00:00.000+0100 {internal}",
        ),
    ]
    text = report.render()
    assert "restricted comments not imported: 2" in text
    assert "refund" not in text


async def test_jira_internal_comments_are_imported_when_the_option_says_so(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """``--option internal-comments=import``: for a deployment where only agents have accounts."""
    root = _service_desk_export(tmp_path, "JSE")

    importer = JiraImporter(str(root), {"internal-comments": "import"})
    report = await run_import(importer, make_settings())

    (issue,) = await find(model, "jira:JSE-1")
    comments_now = [e.comment for e in await history(model, issue.id) if e.comment]
    assert any("does not work for me" in c for c in comments_now)
    assert "Agent note: refund approved by finance." in comments_now
    assert report.withheld == []


def test_an_unknown_internal_comments_value_is_refused(tmp_path: Path) -> None:
    """A misspelt value must not silently import (or leave out) agents' notes."""
    with pytest.raises(InvalidArgument) as refused:
        JiraImporter(str(tmp_path), {"internal-comments": "yes"})
    assert refused.value.message.startswith(
        "--option internal-comments='yes': give leave-out (the default: Jira Service "
        "Management's internal comments are not imported) or import"
    )
