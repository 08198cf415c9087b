"""Redmine categories named in journals, over REST without ``--option project``.

Categories are per project and Redmine lists them per project only: a
journal's ``category_id`` 7 -> 8 must become the categories' names, read
from the projects the issue was in, not components named ``7`` and ``8``.
"""

from __future__ import annotations

import json
from pathlib import Path

from import_support import ADMIN, MakeSettings, find, history, redmine_tree
from redmine_server import PROJECT_ID, Redmine, serve

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1

KEY = "fedcba9876543210fedcba9876543210fedcba98"
#: A category of the second project, where 8213 was before it moved.
ANTENNAS = {"id": 21, "project": {"id": 2, "name": "Ground segment"}, "name": "Antennas"}


def _tree(tmp_path: Path) -> Path:
    """8212: Telemetry -> Ground; 8213 moved from project 2 (Antennas -> Ground); 8214: 9 -> 8.

    Category 9 is no project's any more: deleted in Redmine.
    """
    root = redmine_tree(tmp_path, 8212)
    categories = json.loads((root / "issue_categories.json").read_text(encoding="utf-8"))
    categories["issue_categories"].append(ANTENNAS)
    (root / "issue_categories.json").write_text(json.dumps(categories), encoding="utf-8")
    for number, old, project_move in ((8213, "21", True), (8214, "9", False)):
        path = root / "issues" / f"{number}.json"
        issue = json.loads(path.read_text(encoding="utf-8"))
        details = issue["issue"]["journals"][0]["details"]
        category = next(d for d in details if d["name"] == "category_id")
        category["old_value"] = old
        if project_move:
            details.append(
                {"property": "attr", "name": "project_id", "old_value": "2", "new_value": "1"}
            )
        path.write_text(json.dumps(issue), encoding="utf-8")
    return root


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY, encoding="utf-8")
    return path


def _category_changes(importer: RedmineImporter) -> dict[str, list[tuple[str, str]]]:
    return {
        issue.key: [
            (c.old, c.new) for e in issue.entries for c in e.changes if c.field == "component"
        ]
        for issue in importer.issues()
    }


async def test_journal_category_ids_become_names_from_every_project_the_issue_was_in(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    with serve(Redmine(_tree(tmp_path), KEY, projects={2})) as server:
        importer = RedmineImporter(server.url, {"api-key-file": str(_key_file(tmp_path))})
        assert _category_changes(importer) == {
            "8212": [("Telemetry", "Ground")],
            "8213": [("Antennas", "Ground")],
            "8214": [("category 9 (deleted)", "Ground")],
        }
        report = await run_import(importer, make_settings(component_root="Cat8212"))
    asked = [r.split("?")[0] for r in server.requests]
    assert asked.count(f"/projects/{PROJECT_ID}/issue_categories.json") == 1, "once a project"
    assert asked.count("/projects/2/issue_categories.json") == 1
    assert report.created == 3
    assert sorted(report.components_to_create) == [
        "Cat8212",
        "Cat8212>Antennas",
        "Cat8212>Ground",
        "Cat8212>Telemetry",
        "Cat8212>category 9 (deleted)",
    ], "no component named by a raw id"
    assert report.unnamed == [
        (
            "#8214 journal 821500, category_id 9",
            "kept as the component 'category 9 (deleted)' (not among the categories of the "
            "issue's projects: 1)",
        )
    ]
    assert "ids the source no longer names, kept under a stand-in: 1\n    #8214" in (
        report.render()
    )
    for number, before in (("8212", "Telemetry"), ("8213", "Antennas")):
        (issue,) = await find(model, f"redmine:{number}")
        entries = await history(model, issue.id)
        created = next(c for c in entries[0].changes if c.field == "component_id")
        moved = next(c for c in entries[1].changes if c.field == "component_id")
        paths = [await _path(model, int(v)) for v in (created.new_value, moved.new_value)]
        assert paths == [f"Cat8212>{before}", "Cat8212>Ground"], number


def test_a_project_whose_categories_are_forbidden_leaves_the_name_unknown(
    tmp_path: Path,
) -> None:
    tree = _tree(tmp_path)
    with serve(Redmine(tree, KEY, projects={2}, forbidden_projects={2})) as server:
        importer = RedmineImporter(server.url, {"api-key-file": str(_key_file(tmp_path))})
        changes = _category_changes(importer)
    assert changes["8213"] == [("category 21 (name unknown)", "Ground")]
    assert changes["8214"] == [("category 9 (deleted)", "Ground")], "project 1 answered"
    assert (
        "not among the categories of the issue's projects: 1, 2"
        in (importer.unnamed["#8213 journal 821400, category_id 21"])
    )


def test_exported_files_name_the_categories_of_each_project_as_rest_does(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    everything = json.loads((tree / "issue_categories.json").read_text(encoding="utf-8"))
    (tree / "issue_categories.json").unlink()
    for project in (1, 2):
        own = [c for c in everything["issue_categories"] if c["project"]["id"] == project]
        folder = tree / "projects" / str(project)
        folder.mkdir(parents=True)
        (folder / "issue_categories.json").write_text(
            json.dumps({"issue_categories": own, "total_count": len(own)}), encoding="utf-8"
        )
    assert _category_changes(RedmineImporter(str(tree), {})) == {
        "8212": [("Telemetry", "Ground")],
        "8213": [("Antennas", "Ground")],
        "8214": [("category 9 (deleted)", "Ground")],
    }


async def _path(model: v1.ModelStub, component_id: int) -> str:
    component = await call(
        model.get_component, v1.GetComponentRequest(caller=ADMIN, component_id=component_id)
    )
    return component.path
