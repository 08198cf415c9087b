"""Relations between issues come along: duplicate of, parent, blocking.

Before, ``bugless import`` imported none ("this duplicates #12", "blocked by
#40" and sub-tasks were lost on moving in). Redmine (its REST API over
loopback, ``include=relations``), Jira (search JSON), GitHub (``gh api``
output of sub-issues and dependencies) a real Roundup (``superseder``) and
a real Trac with the custom fields MasterTicketsPlugin and TracSubtickets
keep are imported into the real Model; relations are set once
both issues exist, a second run and ``--refresh`` write nothing more, and
what cannot be set (an issue outside the import, a kind bugless does not
hold, a cycle the Model refuses, a value bugless already holds) is named in
the report.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import ADMIN, FIXTURES, MakeSettings, history, usernames
from redmine_server import Redmine, serve
from relation_support import KEY, _github_issue, _issue, _jira_issue, _link
from roundup_support import ADMIN_PASSWORD, _as, _create, _install, _served

from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import InvalidArgument
from bugless_dev.stack import LocalStack, RunningService
from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter
from bugless_import.sources.jira import JiraImporter
from bugless_import.sources.redmine import RedmineImporter
from bugless_import.sources.roundup import RoundupImporter
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.metrics import metric_total

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Ticket


def _relation(issue_id: int, to: int, kind: str) -> dict[str, Any]:
    return {"id": issue_id * 10 + to % 10, "issue_id": issue_id, "issue_to_id": to,
            "relation_type": kind, "delay": None}  # fmt: skip


#: Redmine issue -> its parent and the relations Redmine lists on it (on both
#: issues of each relation, as Redmine does; 7001's "blocked" is a reverse
#: type as an export may name it).
_REDMINE: dict[int, tuple[int | None, list[dict[str, Any]]]] = {
    7001: (None, [_relation(7002, 7001, "duplicates"), _relation(7003, 7001, "blocks"),
                  _relation(7001, 7005, "blocked")]),
    7002: (None, [_relation(7002, 7001, "duplicates"), _relation(7003, 7002, "relates")]),
    7003: (None, [_relation(7003, 7001, "blocks"), _relation(7003, 7002, "relates"),
                  _relation(7003, 7004, "precedes")]),
    7004: (7001, [_relation(7003, 7004, "precedes")]),
    7005: (7004, [_relation(7001, 7005, "blocked")]),
    7006: (None, [_relation(7006, 7999, "blocks")]),
}  # fmt: skip


@pytest.fixture
def redmine(tmp_path: Path) -> Iterator[Redmine]:
    """A Redmine of six issues with parents and relations, served over loopback."""
    root = tmp_path / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    template = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))["issue"]
    (root / "issues" / "12.json").unlink()
    for number, (parent, relations) in _REDMINE.items():
        issue = {**template, "id": number, "subject": f"Issue {number}", "journals": []}
        issue["relations"] = relations
        if parent is not None:
            issue["parent"] = {"id": parent}
        (root / "issues" / f"{number}.json").write_text(
            json.dumps({"issue": issue}), encoding="utf-8"
        )
    with serve(Redmine(root, KEY)) as server:
        yield server


async def test_redmine_parents_duplicates_and_blocking_are_set_once_both_issues_exist(
    redmine: Redmine,
    tmp_path: Path,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    options = {"api-key-file": str(key_file), "url": "https://redmine.example.org"}
    settings = make_settings()
    dry = await run_import(RedmineImporter(redmine.url, options), make_settings(dry_run=True))
    assert "  relations: 6 (3 blocking, 1 duplicate of, 2 sub-issue of); 5 to set, not set 1" in (
        dry.render()
    )

    report = await run_import(RedmineImporter(redmine.url, options), settings)
    assert report.created == 6
    assert any("include=journals,watchers,attachments,relations" in r for r in redmine.requests)
    ids = {n: (await _issue(model, f"redmine:{n}")).id for n in _REDMINE}
    one, two, three, four, five, six = [await _issue(model, f"redmine:{n}") for n in _REDMINE]
    assert two.duplicate_of_id == ids[7001]
    assert (four.parent_id, five.parent_id) == (ids[7001], ids[7004])
    assert sorted(one.blocked_by_ids) == sorted([ids[7003], ids[7005]])
    assert (three.blocking_ids, five.blocking_ids) == ([ids[7001]], [ids[7001]])
    assert (one.parent_id, one.duplicate_of_id, six.blocking_ids) == (0, 0, [])

    relations = report.relations
    assert relations is not None
    assert (relations.set, relations.present) == (5, 0)
    text = report.render()
    assert (
        "  relations: 6 (3 blocking, 1 duplicate of, 2 sub-issue of); "
        "set 5, already there 0, not set 1\n"
        "    not set (redmine:7999 not imported): redmine:7006 blocks redmine:7999\n"
        "  relations bugless does not hold, not imported: 2\n"
        "    redmine:7003 relates redmine:7002\n"
        "    redmine:7003 precedes redmine:7004\n"
    ) in text

    # The import identity sets them, now, as a change alone: no comment, so
    # the issue counts none more (before, "Relations imported from redmine:
    # duplicate of redmine:7001." was one, the importer its last commenter).
    entries = await history(model, two.id)
    last = entries[-1]
    assert await usernames(auth, [last.author]) == ["importer"]
    assert last.comment == ""
    assert [(c.field, c.new_value) for c in last.changes] == [("duplicate_of_id", str(ids[7001]))]
    assert two.comment_count == sum(1 for e in entries if e.comment and not e.edits_version)
    # Blocking is two-way: 7001 got an entry caused by 7003's change.
    assert any(e.caused_by_issue_id == ids[7003] for e in await history(model, ids[7001]))

    versions = {n: (await _issue(model, f"redmine:{n}")).version for n in _REDMINE}
    for again in (settings, make_settings(refresh=True)):
        rerun = await run_import(RedmineImporter(redmine.url, options), again)
        assert rerun.relations is not None
        assert (rerun.relations.set, rerun.relations.present) == (0, 5)
        assert {n: (await _issue(model, f"redmine:{n}")).version for n in _REDMINE} == versions

    # A parent someone set in bugless since is theirs: kept, and the report says so.
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=ADMIN, issue_id=ids[7005], expected_version=versions[7005],
            delta=v1.IssueDelta(
                fields=v1.IssueFields(parent_id=ids[7002]),
                update_mask=FieldMask(paths=["parent_id"]),
            ),
        ),
    )  # fmt: skip
    kept = await run_import(RedmineImporter(redmine.url, options), settings)
    assert (await _issue(model, "redmine:7005")).parent_id == ids[7002]
    assert (
        f"    not set: redmine:7005 sub-issue of redmine:7004: issue {ids[7005]} has parent_id "
        f"{ids[7002]} in bugless, which is kept\n"
    ) in kept.render()


async def test_jira_sub_tasks_and_duplicate_and_blocks_links_are_set(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    duplicate = ("Duplicate", "duplicates", "is duplicated by")
    blocks = ("Blocks", "blocks", "is blocked by")
    relates = ("Relates", "relates to", "relates to")
    issues = [
        _jira_issue("RELS-1", subtasks=[{"key": "RELS-2"}],
                    issuelinks=[_link(*duplicate, inward="RELS-3")]),
        _jira_issue("RELS-2", parent={"key": "RELS-1"},
                    issuelinks=[_link(*blocks, outward="OTHER-5")]),
        _jira_issue("RELS-3", issuelinks=[_link(*duplicate, outward="RELS-1"),
                                          _link(*relates, inward="RELS-4")]),
        _jira_issue("RELS-4", issuelinks=[_link(*blocks, outward="RELS-1"),
                                          _link(*relates, outward="RELS-3")]),
    ]  # fmt: skip
    (tmp_path / "search-0000.json").write_text(json.dumps({"issues": issues}), encoding="utf-8")
    report = await run_import(JiraImporter(str(tmp_path), {}), make_settings())
    assert report.created == 4
    one, two, three, four = [await _issue(model, f"jira:RELS-{n}") for n in range(1, 5)]
    assert (two.parent_id, three.duplicate_of_id, four.blocking_ids) == (one.id, one.id, [one.id])
    assert one.blocked_by_ids == [four.id]
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (3, 0)
    text = report.render()
    assert "    not set (jira:OTHER-5 not imported): jira:RELS-2 blocks jira:OTHER-5\n" in text
    assert (
        "  relations bugless does not hold, not imported: 1\n"
        '    jira:RELS-4 relates to jira:RELS-3 (type "Relates")\n'
    ) in text


async def test_jira_epic_links_make_sub_issues_of_the_epic(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """The classic "Epic Link" custom field (found by its name or type) and the newer parent.

    Before, an epic's children came in unrelated to it: only ``parent`` and
    ``subtasks`` were read.
    """
    epic_link = {"type": "string", "custom": "com.pyxis.greenhopper.jira:gh-epic-link"}
    pages = [
        {"names": {"customfield_10008": "Epic Link", "summary": "Summary"},
         "issues": [_jira_issue("EPIC-1"), _jira_issue("EPIC-2", customfield_10008="EPIC-1"),
                    # Jira Cloud since 2023: the parent, and the old field still filled
                    _jira_issue("EPIC-3", parent={"key": "EPIC-1"}, customfield_10008="EPIC-1")]},
        {"schema": {"customfield_10100": epic_link},  # another page: the type names it
         "issues": [_jira_issue("EPIC-4", customfield_10100="EPIC-1"),
                    _jira_issue("EPIC-5", customfield_10200="EPIC-1")]},
    ]  # fmt: skip
    for n, page in enumerate(pages):
        (tmp_path / f"search-{n:04}.json").write_text(json.dumps(page), encoding="utf-8")
    report = await run_import(JiraImporter(str(tmp_path), {}), make_settings())
    assert report.created == 5
    epic, *children = [await _issue(model, f"jira:EPIC-{n}") for n in range(1, 6)]
    assert [c.parent_id for c in children] == [epic.id, epic.id, epic.id, 0]
    assert "  relations: 3 (3 sub-issue of); set 3, already there 0, not set 0\n" in (
        report.render()
    )
    # A site's field that neither names: --option epic-link-field says which.
    named = JiraImporter(str(tmp_path), {"epic-link-field": "customfield_10200"})
    (five,) = [i for i in named.issues() if i.key == "EPIC-5"]
    assert [(r.kind, r.target) for r in five.relations] == [("parent", "EPIC-1")]
    with pytest.raises(InvalidArgument, match="epic-link-field='Epic Link'"):
        JiraImporter(str(tmp_path), {"epic-link-field": "Epic Link"})


async def test_github_sub_issues_and_dependencies_are_set(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    def write(name: str, items: list[dict[str, Any]]) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items), encoding="utf-8")  # one --paginate page

    write("issues.json", [_github_issue(n) for n in (1, 2, 3)])
    write("sub_issues/1.json", [_github_issue(2)])
    write("blocked_by/3.json", [_github_issue(1), _github_issue(9, "acme/elsewhere")])
    report = await run_import(GitHubImporter(str(tmp_path), {}), make_settings())
    assert report.created == 3
    one, two, three = [await _issue(model, f"github:acme/relations#{n}") for n in (1, 2, 3)]
    assert (two.parent_id, three.blocked_by_ids, one.blocking_ids) == (one.id, [one.id], [three.id])
    assert (
        "  relations: 3 (2 blocking, 1 sub-issue of); set 2, already there 0, not set 1\n"
        "    not set (github:acme/elsewhere#9 not imported): "
        "github:acme/elsewhere#9 blocks github:acme/relations#3\n"
    ) in report.render()


@pytest.fixture(scope="module")
def superseded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A classic tracker whose issues name superseders, two of them each other's."""
    home = tmp_path_factory.mktemp("roundup-superseder") / "tracker"
    _install(home)
    numbers = [_create(home, "admin", f"Issue {n}", f"Text {n}.") for n in range(1, 6)]
    db = _as(home, "admin")
    one, two, three, four, five = numbers
    db.issue.set(two, superseder=[one])
    db.issue.set(three, superseder=[two, one])
    db.issue.set(four, superseder=[five])
    db.issue.set(five, superseder=[four])  # Roundup does not refuse a cycle; bugless does
    db.commit()
    db.close()
    with _served(home) as url:
        yield url


async def test_roundup_superseders_make_duplicates_and_a_cycle_is_reported_not_fatal(
    superseded_url: str, tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "sup"}
    settings = make_settings()
    report = await run_import(RoundupImporter(superseded_url, options), settings)
    assert report.created == 5
    one, two, three, four, five = [await _issue(model, f"roundup:sup#{n}") for n in range(1, 6)]
    assert (two.duplicate_of_id, three.duplicate_of_id) == (one.id, one.id)
    assert (four.duplicate_of_id, five.duplicate_of_id) == (five.id, 0)
    text = report.render()
    # The journal's superseder changes set them with the history; the
    # relation pass finds them there.
    assert "  relations: 5 (5 duplicate of); set 0, already there 3, not set 2\n" in text
    assert (
        "  relation changes in the history: 3 imported with their entries, 0 left out (an "
        "issue outside the import), 1 refused by the Model (below)\n"
    ) in text
    assert (
        "  WARNING: roundup:sup#5: the Model refused its relation history (history[0]."
        f"duplicate_of: issue {four.id} is a duplicate of issue {five.id}; duplicate_of_id "
        "would close a cycle); its entries were imported without their relation changes"
    ) in text
    assert (
        "    not set: roundup:sup#3 duplicate of roundup:sup#2: bugless holds one "
        "'duplicate of'; roundup:sup#1 is set\n"
    ) in text
    assert (
        f"    not set: roundup:sup#5 duplicate of roundup:sup#4: duplicate_of_id: issue "
        f"{four.id} is a duplicate of issue {five.id}\n"
    ) in text
    # Why, as a change of the entry that had them, not a comment.
    entries = [e for e in await history(model, five.id) if e.imported_from]
    left_out = [c for e in entries for c in e.changes if c.field == "relations_not_imported"]
    assert [c.field_name for c in left_out] == ["Source relation changes not imported"]
    assert left_out[0].added[0].startswith("history[0].")
    assert not any("not imported" in e.comment for e in entries)
    again = await run_import(RoundupImporter(superseded_url, options), settings)
    assert again.relations is not None
    assert (again.relations.set, again.relations.present, len(again.relations.refused)) == (
        0, 3, 2,
    )  # fmt: skip


def test_the_roundup_schema_is_read_in_two_requests_whatever_it_has(
    superseded_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, one request per optional property (superseder, blockers, dependencies)."""
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    importer = RoundupImporter(superseded_url, {"user": "admin", "password-file": str(secret)})
    asked: list[str] = []
    real_get = RoundupImporter.get

    def counted(self: RoundupImporter, path: str, **query: object) -> Any:
        asked.append(path)
        return real_get(self, path, **query)

    monkeypatch.setattr(RoundupImporter, "get", counted)
    schema = importer.issue_properties()
    assert {"superseder", "title", "messages"} <= schema
    assert "blockers" not in schema  # not in classic's schema
    assert asked == ["data/issue", "data/issue/1"]
    asked.clear()
    assert len(list(importer.issues())) == 5
    assert asked.count("data/issue") == 2, "the schema's listing of one issue, then the pages"


async def test_roundup_blockers_and_dependencies_make_blocking_relations(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """A tracker with Roundup's documented ``blockers`` and bpo's ``dependencies``.

    Before, only ``superseder`` was read: the issues came in unblocked.
    """
    home = tmp_path / "tracker"
    _install(home, 'blockers=Multilink("issue"), dependencies=Multilink("issue")')
    one, two, three, four = [_create(home, "admin", f"B{n}", f"Text {n}.") for n in range(4)]
    db = _as(home, "admin")
    db.issue.set(two, blockers=[one])
    db.issue.set(three, dependencies=[one, two])
    db.issue.set(four, blockers=[three], dependencies=[three])  # both name one relation
    db.commit()
    db.close()
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "blk"}
    with _served(home) as url:
        report = await run_import(RoundupImporter(url, options), make_settings())
        assert report.created == 4
        b1, b2, b3, b4 = [await _issue(model, f"roundup:blk#{n}") for n in (one, two, three, four)]
        assert sorted(b1.blocking_ids) == sorted([b2.id, b3.id])
        assert (b2.blocking_ids, b3.blocking_ids, b4.blocked_by_ids) == ([b3.id], [b4.id], [b3.id])
        assert "  relations: 4 (4 blocking); set 0, already there 4, not set 0\n" in (
            report.render()
        ), "set with the journal's changes, in the history"
        again = await run_import(RoundupImporter(url, options), make_settings())
    assert again.relations is not None
    assert (again.relations.set, again.relations.present) == (0, 4)


async def test_trac_plugin_relation_fields_are_relations_not_labels(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    env = Environment(
        str(tmp_path / "env"),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            *(("ticket-custom", name, "text") for name in ("blockedby", "blocking", "parents")),
        ],
    )
    t0 = datetime(2017, 3, 1, 9, 0, tzinfo=UTC)
    values = [
        {"blocking": "2"},
        {"blockedby": "1", "parents": "1"},
        {"parents": "1, 2"},  # TracSubtickets allows two parents; bugless holds one
        {"blockedby": "#3"},
    ]
    for n, extra in enumerate(values, start=1):
        ticket = Ticket(env)
        ticket.populate({"summary": f"Ticket {n}", "reporter": "ann", "status": "new", **extra})
        ticket.insert(when=t0 + timedelta(hours=n))
    ticket = Ticket(env, 4)
    ticket["blockedby"] = "3, 99"  # 99 is not in this environment
    ticket.save_changes(
        "ann", "Also blocked by the other project's 99.", when=t0 + timedelta(days=1)
    )
    importer = TracImporter(env.path, {"project": "rel"})
    dry = await run_import(importer, make_settings(dry_run=True))
    assert dry.unmapped == [], "no 'blockedby:3' labels"
    report = await run_import(importer, make_settings())
    assert report.created == 4
    one, two, three, four = [await _issue(model, f"trac:rel#{n}") for n in range(1, 5)]
    assert (two.blocked_by_ids, four.blocked_by_ids) == ([one.id], [three.id])
    assert (two.parent_id, three.parent_id) == (one.id, one.id)
    assert "label" not in str([c.field for e in await history(model, four.id) for c in e.changes])
    text = report.render()
    assert "  relations: 6 (3 blocking, 3 sub-issue of); set 4, already there 0, not set 2\n" in (
        text
    )
    assert "    not set (trac:rel#99 not imported): trac:rel#99 blocks trac:rel#4\n" in text
    assert (
        "    not set: trac:rel#3 sub-issue of trac:rel#2: bugless holds one 'sub-issue of'; "
        "trac:rel#1 is set\n"
    ) in text


@pytest.fixture(scope="module")
def counted_model(bugless_stack: LocalStack) -> Iterator[RunningService]:
    """A Model of this module's own whose ``/metrics`` counts the calls it answers."""
    service = bugless_stack.start_model("--metrics-port", "0", name="model-relations")
    try:
        yield service
    finally:
        bugless_stack.stop_service(service)


async def test_a_second_run_reads_the_relations_in_one_call_and_changes_nothing(
    counted_model: RunningService, tmp_path: Path, make_settings: MakeSettings
) -> None:
    async def calls() -> dict[str, int]:
        return {
            method: int(
                await metric_total(
                    counted_model.metrics_port, "grpc_server_handled_total", grpc_method=method
                )
            )
            for method in ("BatchGetIssues", "BatchChangeIssues", "GetIssue", "ChangeIssue")
        }

    issues = [_jira_issue("RELRUN-1")] + [
        _jira_issue(f"RELRUN-{n}", parent={"key": "RELRUN-1"}) for n in range(2, 12)
    ]
    (tmp_path / "search-0000.json").write_text(json.dumps({"issues": issues}), encoding="utf-8")
    settings = make_settings(model=ServiceAddress("127.0.0.1", counted_model.port))
    before = await calls()
    first = await run_import(JiraImporter(str(tmp_path), {}), settings)
    assert first.relations is not None
    assert first.relations.set == 10
    middle = await calls()
    assert {m: middle[m] - before[m] for m in middle} == {
        "BatchGetIssues": 1, "BatchChangeIssues": 1, "GetIssue": 0, "ChangeIssue": 0,
    }, "one read of the ten sub-issues, one change of them all (before: 10 + 10 calls)"  # fmt: skip
    again = await run_import(JiraImporter(str(tmp_path), {}), settings)
    assert again.relations is not None
    assert (again.relations.set, again.relations.present) == (0, 10)
    after = await calls()
    assert {m: after[m] - middle[m] for m in after} == {
        "BatchGetIssues": 1, "BatchChangeIssues": 0, "GetIssue": 0, "ChangeIssue": 0,
    }, "before, each holder was read with a GetIssue of its own"  # fmt: skip
