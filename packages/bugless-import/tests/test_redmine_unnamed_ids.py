"""Redmine statuses, priorities and trackers a journal names by an id Redmine no longer lists.

A status deleted in Redmine stays in the journals that used it (``status_id``
9 -> 2) while ``/issue_statuses.json`` lists it no more. Before, the raw id
stood in for its name: the history held a status named "9", which the
mapping file could not tell from a real one and the report did not explain.
"""

from __future__ import annotations

import json
from pathlib import Path

from import_support import MakeSettings, find, history, redmine_tree
from redmine_server import Redmine, serve

from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1

KEY = "0123abcd0123abcd0123abcd0123abcd0123abcd"


def _tree(tmp_path: Path) -> Path:
    """8312 and 8313 were once in status 9; 8312 at priority 12, 8313 a tracker 7's."""
    root = redmine_tree(tmp_path, 8312)
    for number, extra in ((8312, ("priority_id", "12", "3")), (8313, ("tracker_id", "7", "1"))):
        path = root / "issues" / f"{number}.json"
        issue = json.loads(path.read_text(encoding="utf-8"))
        details = issue["issue"]["journals"][1]["details"]
        status = next(d for d in details if d["name"] == "status_id")
        status["old_value"] = "9"
        details[:] = [d for d in details if d["name"] != extra[0]]
        name, old, new = extra
        details.append({"property": "attr", "name": name, "old_value": old, "new_value": new})
        path.write_text(json.dumps(issue), encoding="utf-8")
    return root


def _changes(importer: RedmineImporter, field: str) -> dict[str, list[tuple[str, str]]]:
    return {
        issue.key: [(c.old, c.new) for e in issue.entries for c in e.changes if c.field == field]
        for issue in importer.issues()
    }


async def test_ids_no_longer_listed_get_one_stand_in_each_mapped_and_reported(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[statuses]\n"status 9 (deleted)" = "ACCEPTED"\n', encoding="utf-8")
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    with serve(Redmine(_tree(tmp_path), KEY)) as server:
        importer = RedmineImporter(server.url, {"api-key-file": str(key_file)})
        statuses = _changes(importer, "status")
        assert statuses["8312"][0] == ("status 9 (deleted)", "in progress")
        assert statuses["8313"][0] == ("status 9 (deleted)", "in progress"), "the same stand-in"
        assert _changes(importer, "priority")["8312"] == [("priority 12 (deleted)", "high")]
        assert _changes(importer, "type")["8313"] == [("tracker 7 (deleted)", "bug")]
        report = await run_import(importer, make_settings(mapping=mapping))

    assert report.created == 3

    def kept(field: str, name: str, table: str, section: str) -> str:
        return (
            f"kept as the {field} {name!r} (no longer among the {table} Redmine lists; "
            f"map it in the mapping file's [{section}])"
        )

    assert report.unnamed == [
        (
            "#8312 journal 831301, status_id 9",
            kept("status", "status 9 (deleted)", "statuses", "statuses"),
        ),
        (
            "#8312 journal 831301, priority_id 12",
            kept("priority", "priority 12 (deleted)", "priorities", "priorities"),
        ),
        (
            "#8313 journal 831401, status_id 9",
            kept("status", "status 9 (deleted)", "statuses", "statuses"),
        ),
        (
            "#8313 journal 831401, tracker_id 7",
            kept("type", "tracker 7 (deleted)", "trackers", "types"),
        ),
    ]
    assert ("priorities", "priority 12 (deleted)") in [(s, v) for s, v, _ in report.unmapped]
    assert ("types", "tracker 7 (deleted)") in [(s, v) for s, v, _ in report.unmapped]
    assert "status 9 (deleted)" not in [v for _, v, _ in report.unmapped], "it is mapped"
    rendered = report.render()
    assert "ids the source no longer names, kept under a stand-in: 4\n    #8312 journal" in rendered
    for number in ("8312", "8313"):
        (issue,) = await find(model, f"redmine:{number}")
        created = (await history(model, issue.id))[0]
        status = next(c for c in created.changes if c.field == "status")
        assert status.new_value == "ACCEPTED", f"{number}: created in the mapped stand-in"


def test_an_export_without_the_list_leaves_the_name_unknown(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "issue_statuses.json").unlink()
    importer = RedmineImporter(str(tree), {})
    assert _changes(importer, "status")["8312"][0] == (
        "status 9 (name unknown)",
        "status 2 (name unknown)",
    )
    assert (
        "no list of statuses was read; map it"
        in (importer.unnamed["#8312 journal 831301, status_id 9"])
    )
