"""A Jira site's own issue link types are read by what their phrases say.

Before, only the stock type names ``Blocks`` and ``Duplicate`` were read: a
site's "Dependency" (depends on / is depended on by) or a parent-child type
was reported as a relation bugless does not hold, its changelog items were
dropped from the history, and a type named ``Blocks`` whose phrases run the
other way round ("is blocked by" outward) was set backwards. Now a type is
read by its phrases where they are clear, and the rest are reported with
the type's name, in a real import into the real Model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from import_support import MakeSettings, find, history
from relation_support import _changelog, _jira_issue, _link, _link_item, _relation_changes

from bugless_import import run_import
from bugless_import.sources.jira import JiraImporter, link_meaning
from bugless_proto import v1

DEPENDENCY = ("Dependency", "depends on", "is depended on by")
#: Named like the stock type, phrased the other way round.
TURNED_BLOCKS = ("Blocks", "is blocked by", "blocks")
HIERARCHY = ("Hierarchy", "is parent of", "is child of")
INCIDENT = ("Problem/Incident", "causes", "is caused by")
#: Its phrases contradict each other: not clear, reported.
ODD = ("Odd", "blocks", "duplicates")


def test_a_link_type_means_what_its_phrases_say() -> None:
    def meaning(name: str, outward: str, inward: str) -> tuple[str, bool, str]:
        return link_meaning({"name": name, "outward": outward, "inward": inward})

    assert meaning("Blocks", "blocks", "is blocked by") == ("blocks", False, "")
    assert meaning("Duplicate", "duplicates", "is duplicated by") == ("duplicate_of", False, "")
    assert meaning(*DEPENDENCY) == ("blocks", True, "Dependency")
    assert meaning(*TURNED_BLOCKS) == ("blocks", True, "Blocks")
    assert meaning(*HIERARCHY) == ("parent", True, "Hierarchy")
    assert meaning("Needs", "", "Is Depended On By") == ("blocks", True, "Needs")
    assert meaning("Blocks", "prevents", "is prevented by") == ("blocks", False, "")
    assert meaning(*INCIDENT) == ("causes", False, "Problem/Incident")
    assert meaning(*ODD) == ("blocks / duplicates", False, "Odd")
    assert meaning("Relates", "relates to", "relates to") == ("relates to", False, "Relates")


async def test_a_sites_own_link_types_are_set_by_their_phrases_and_the_rest_named(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    links: dict[str, list[dict[str, Any]]] = {
        "LT-1": [_link(*DEPENDENCY, inward="LT-2"), _link(*INCIDENT, outward="LT-5")],
        "LT-2": [_link(*DEPENDENCY, outward="LT-1"), _link(*ODD, outward="LT-6")],
        "LT-3": [_link(*TURNED_BLOCKS, outward="LT-4")],
        "LT-4": [_link(*TURNED_BLOCKS, inward="LT-3")],
        "LT-5": [_link(*HIERARCHY, outward="LT-6"), _link(*INCIDENT, inward="LT-1")],
        "LT-6": [_link(*HIERARCHY, inward="LT-5"), _link(*ODD, inward="LT-2")],
    }
    issues = [_jira_issue(key, issuelinks=listed) for key, listed in links.items()]
    # A sub-task's parent field and the parent-child link name one relation.
    issues[5]["fields"]["parent"] = {"key": "LT-5"}
    # The dependency's changelog item, on the dependent issue (and its other side).
    issues[1]["changelog"] = {
        "histories": [_changelog("2021-05-03T10:00:00.000+0000", _link_item("depends on", "LT-1"))]
    }
    issues[0]["changelog"] = {
        "histories": [
            _changelog("2021-05-03T10:00:00.000+0000", _link_item("is depended on by", "LT-2"))
        ]
    }
    (tmp_path / "search-0000.json").write_text(json.dumps({"issues": issues}), encoding="utf-8")
    report = await run_import(JiraImporter(str(tmp_path), {}), make_settings())
    assert report.created == 6
    one, two, three, four, five, six = [(await find(model, f"jira:LT-{n}"))[0] for n in range(1, 7)]
    assert (one.blocking_ids, two.blocked_by_ids) == ([two.id], [one.id])
    assert (four.blocking_ids, three.blocked_by_ids) == ([three.id], [four.id])
    assert (six.parent_id, five.parent_id, two.duplicate_of_id) == (five.id, 0, 0)
    assert _relation_changes(await history(model, two.id)) == [
        (datetime(2021, 5, 3, 10, tzinfo=UTC), "blocked_by_ids", f"+{one.id}")
    ]
    assert report.relation_changes == 1
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (2, 1)
    assert (
        "  relations: 3 (2 blocking, 1 sub-issue of); set 2, already there 1, not set 0\n"
        "  relations bugless does not hold, not imported: 2\n"
        '    jira:LT-1 causes jira:LT-5 (type "Problem/Incident")\n'
        '    jira:LT-2 blocks / duplicates jira:LT-6 (type "Odd")\n'
    ) in report.render()
