"""A history the Model refuses in the second pass is reported as what was refused.

An issue whose history changes a relation is sent in two passes: the entries
before its first relation change, then (once every issue exists) the whole
history. The Model may refuse that whole history for one of its relation
changes (a cycle the source allowed: reported, the entries imported without
them, ``test_relations.py``) or for an entry that has nothing to do with
relations. The second must not be called a refused relation history: it is
refused whatever the relations are, so the run stops as the first pass would
have stopped for that entry, naming the issue and the field at fault.
A Redmine served over loopback, the real Model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from import_support import FIXTURES, MakeSettings
from redmine_server import Redmine, serve
from relation_support import ANN, KEY, REX, _detail, _journal

from bugless_core.errors import InvalidArgument
from bugless_core.limits import MAX_COMMENT_LENGTH
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter


@pytest.fixture
def redmine(tmp_path: Path) -> Iterator[Redmine]:
    """7302 is blocked by 7301, then gets a note longer than a comment may be."""
    root = tmp_path / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    template = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))["issue"]
    (root / "issues" / "12.json").unlink()
    journals = {
        7301: [_journal(7301, 1, REX, _detail("relation", "blocks", new=7302))],
        7302: [
            _journal(7302, 1, REX, _detail("relation", "blocked", new=7301)),
            _journal(7302, 2, ANN, notes="x" * (MAX_COMMENT_LENGTH + 1)),
        ],
    }
    for number, entries in journals.items():
        issue = {**template, "id": number, "subject": f"Issue {number}", "journals": entries,
                 "created_on": "2019-04-30T09:00:00Z", "updated_on": "2019-05-02T09:00:00Z",
                 "status": {"id": 1, "name": "New"}, "closed_on": None, "attachments": [],
                 "relations": []}  # fmt: skip
        (root / "issues" / f"{number}.json").write_text(
            json.dumps({"issue": issue}), encoding="utf-8"
        )
    with serve(Redmine(root, KEY)) as server:
        yield server


async def test_a_refused_entry_that_is_no_relation_change_stops_the_run_naming_it(
    redmine: Redmine, tmp_path: Path, make_settings: MakeSettings
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    importer = RedmineImporter(redmine.url, {"api-key-file": str(key_file)})
    with pytest.raises(InvalidArgument) as refused:
        await run_import(importer, make_settings())
    # Not "refused its relation history", and not retried without relations
    # (which drew the same refusal, without the issue's name).
    assert refused.value.message.startswith("redmine:7302: history[1].comment: ")
    assert refused.value.metadata["field"] == "history[1].comment"
