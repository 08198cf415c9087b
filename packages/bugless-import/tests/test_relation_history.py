"""Relation history: when a relation was added or removed is kept, entry by entry.

Before, an import set only the relations as they are at the end (one change
by the import identity at the time of the import): a blocker added in 2017
and removed in 2018 left no trace, nor a sub-ticket moved from one parent to
another. A real Trac environment with MasterTicketsPlugin's and
TracSubtickets' fields, changed over time through Trac's own API (the rows
those plugins write), a real Roundup tracker's journal of ``superseder``,
``blockers`` and ``dependencies``, and Jira changelogs (Link, Epic Link,
Jira Cloud's parent) are imported into the real Model: each change is an
entry of its author at its time, blocking has its entry on both issues, an
issue outside the import is left out and counted, and a second run and a
``--refresh`` write nothing.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from import_support import MakeSettings, find, history, usernames
from relation_support import _changelog, _changes_only, _jira_issue, _link_item, _relation_changes
from roundup_support import ADMIN_PASSWORD, _as, _create, _install, _served

from bugless_import import run_import
from bugless_import.sources.jira import JiraImporter
from bugless_import.sources.roundup import RoundupImporter
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Ticket

T0 = datetime(2017, 3, 1, 9, 0, tzinfo=UTC)


def _day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def _change(env: Environment, number: int, author: str, when: datetime, **fields: str) -> None:
    """Change ticket ``number`` as Trac (and its plugins' fields) record it: change rows."""
    comment = fields.pop("comment", "")
    ticket = Ticket(env, number)
    for name, value in fields.items():
        ticket[name] = value
    ticket.save_changes(author, comment, when=when)


def _environment(path: Path) -> Environment:
    """Four tickets whose relations change over five days (each side as the plugins write it)."""
    env = Environment(
        str(path),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            *(("ticket-custom", name, "text") for name in ("blockedby", "blocking", "parents")),
        ],
    )
    for n in range(1, 5):
        ticket = Ticket(env)
        ticket.populate({"summary": f"Ticket {n}", "reporter": "ann", "status": "new"})
        ticket.insert(when=T0 + timedelta(hours=n))
    # MasterTicketsPlugin changes both tickets of a blocking relation.
    _change(env, 2, "bob", _day(1), blockedby="1", comment="Needs #1 first.")
    _change(env, 1, "bob", _day(1), blocking="2")
    _change(env, 3, "carol", _day(2), parents="1")
    _change(env, 3, "carol", _day(3), parents="2", comment="Moved under #2.")
    _change(env, 2, "bob", _day(4), blockedby="")
    _change(env, 1, "bob", _day(4), blocking="")
    _change(env, 4, "dan", _day(5), blockedby="2, 99")  # 99: the other project's
    _change(env, 2, "dan", _day(5), blocking="4")
    return env


async def test_relation_changes_are_entries_of_their_author_at_their_time(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    env = _environment(tmp_path / "env")
    importer = TracImporter(env.path, {"project": "hist"})
    dry = await run_import(importer, make_settings(dry_run=True))
    assert (dry.relation_changes, dry.relation_changes_left_out) == (6, 1)
    settings = make_settings()
    report = await run_import(importer, settings)
    assert report.created == 4
    one, two, three, four = [(await find(model, f"trac:hist#{n}"))[0] for n in range(1, 5)]
    assert (one.blocking_ids, two.blocked_by_ids) == ([], [])
    assert (two.blocking_ids, four.blocked_by_ids) == ([four.id], [two.id])
    assert three.parent_id == two.id

    one_history = await history(model, one.id)
    assert _relation_changes(one_history) == [
        (_day(1), "blocking_ids", f"+{two.id}"),
        (_day(4), "blocking_ids", f"-{two.id}"),
    ]
    two_history = await history(model, two.id)
    assert _relation_changes(two_history) == [
        (_day(1), "blocked_by_ids", f"+{one.id}"),
        (_day(4), "blocked_by_ids", f"-{one.id}"),
        (_day(5), "blocking_ids", f"+{four.id}"),
    ]
    assert _relation_changes(await history(model, three.id)) == [
        (_day(2), "parent_id", f"->{one.id}"),
        (_day(3), "parent_id", f"{one.id}->{two.id}"),
    ]
    assert _relation_changes(await history(model, four.id)) == [
        (_day(5), "blocked_by_ids", f"+{two.id}"),
    ]
    # Ticket 1's side of the blocking is written with ticket 2's (its own
    # rows, which MasterTicketsPlugin writes too, would repeat them).
    caused = [e for e in one_history if e.caused_by_issue_id == two.id]
    assert [e.created_at for e in caused] == [_day(1), _day(4)]
    own = [e for e in two_history if e.created_at in {_day(1), _day(4)}]
    assert [e.author for e in caused] == [e.author for e in own]
    assert await usernames(auth, [own[0].author]) in (["bob"], ["bob@trac"])
    assert [e.comment[:10] for e in own] == ["Needs [#1]", ""]
    moved = [e for e in await history(model, three.id) if e.created_at == _day(3)]
    assert [e.comment[:16] for e in moved] == ["Moved under [#2]"]
    for entries in (one_history, two_history):
        times = [e.created_at or T0 for e in entries]
        assert times == sorted(times)
    text = report.render()
    assert (
        "  relation changes in the history: 6 imported with their entries, 1 left out "
        "(an issue outside the import)\n"
    ) in text
    assert "    not set (trac:hist#99 not imported): trac:hist#99 blocks trac:hist#4\n" in text
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (0, 2)

    versions = [i.version for i in (one, two, three, four)]
    for again in (settings, make_settings(refresh=True)):
        again_report = await run_import(TracImporter(env.path, {"project": "hist"}), again)
        assert again_report.entries_written == 0
        now = [(await find(model, f"trac:hist#{n}"))[0].version for n in range(1, 5)]
        assert now == versions
    # The source goes on: a refresh appends the newer relation change.
    _change(env, 3, "carol", _day(6), parents="")
    refreshed = await run_import(
        TracImporter(env.path, {"project": "hist"}), make_settings(refresh=True)
    )
    assert (refreshed.extended, refreshed.unchanged, refreshed.entries_written) == (1, 3, 1)
    (three,) = await find(model, "trac:hist#3")
    assert three.parent_id == 0
    assert _relation_changes(await history(model, three.id))[-1] == (
        _day(6),
        "parent_id",
        f"{two.id}->",
    )


async def test_a_roundup_journal_of_superseders_blockers_and_dependencies(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    home = tmp_path / "tracker"
    _install(home, 'blockers=Multilink("issue"), dependencies=Multilink("issue")')
    one, two, three, four = [_create(home, "admin", f"H{n}", f"Text {n}.") for n in range(4)]
    steps: list[dict[str, dict[str, list[str]]]] = [
        {two: {"blockers": [one]}},
        {three: {"superseder": [one]}},
        {two: {"blockers": []}},
        {three: {"superseder": [two]}},  # one journal record: -one +two
        {four: {"dependencies": [two, three]}},
    ]
    for changes in steps:
        db = _as(home, "admin")
        for issue, values in changes.items():
            db.issue.set(issue, **values)
        db.commit()
        db.close()
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "jnl"}
    settings = make_settings()
    with _served(home) as url:
        report = await run_import(RoundupImporter(url, options), settings)
        assert report.created == 4
        h1, h2, h3, h4 = [
            (await find(model, f"roundup:jnl#{n}"))[0] for n in (one, two, three, four)
        ]
        assert (h2.blocked_by_ids, h3.duplicate_of_id) == ([], h2.id)
        assert h4.blocked_by_ids == sorted([h2.id, h3.id])
        assert _changes_only(await history(model, h2.id)) == [
            ("blocked_by_ids", f"+{h1.id}"),
            ("blocked_by_ids", f"-{h1.id}"),
            ("blocking_ids", f"+{h4.id}"),
        ]
        assert _changes_only(await history(model, h1.id)) == [
            ("blocking_ids", f"+{h2.id}"),
            ("blocking_ids", f"-{h2.id}"),
        ]
        assert _changes_only(await history(model, h3.id)) == [
            ("duplicate_of_id", f"->{h1.id}"),
            ("duplicate_of_id", f"{h1.id}->{h2.id}"),
            ("blocking_ids", f"+{h4.id}"),
        ]
        assert (report.relation_changes, report.relation_changes_left_out) == (7, 0)
        assert report.relations is not None
        assert (report.relations.set, report.relations.present) == (0, 3)
        again = await run_import(RoundupImporter(url, options), make_settings(refresh=True))
        assert again.entries_written == 0


async def test_a_roundup_tracker_whose_superseder_and_dependencies_are_links(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """A schema holding one superseder and one dependency per issue (``Link``, as
    bugs.python.org's superseder is): their journal keeps the value before each
    change, not the multilink's +/- lists. It ended the run in a traceback
    (unpacking the old id); now each change is the entry's relation change."""
    home = tmp_path / "tracker"
    _install(home, 'superseder=Link("issue"), dependencies=Link("issue")')
    one, two, three, four = [_create(home, "admin", f"L{n}", f"Text {n}.") for n in range(4)]
    steps: list[dict[str, dict[str, str | None]]] = [
        {three: {"superseder": one}},
        {three: {"superseder": two}},
        {four: {"dependencies": two}},
        {four: {"dependencies": None}},
        {four: {"dependencies": three}},
    ]
    for changes in steps:
        db = _as(home, "admin")
        for issue, values in changes.items():
            db.issue.set(issue, **values)
        db.commit()
        db.close()
    secret = tmp_path / "password"
    secret.write_text(ADMIN_PASSWORD, encoding="utf-8")
    options = {"user": "admin", "password-file": str(secret), "tracker": "lnk"}
    with _served(home) as url:
        report = await run_import(RoundupImporter(url, options), make_settings())
        assert report.created == 4
        h1, h2, h3, h4 = [
            (await find(model, f"roundup:lnk#{n}"))[0] for n in (one, two, three, four)
        ]
        assert (h3.duplicate_of_id, h4.blocked_by_ids) == (h2.id, [h3.id])
        assert _changes_only(await history(model, h3.id)) == [
            ("duplicate_of_id", f"->{h1.id}"),
            ("duplicate_of_id", f"{h1.id}->{h2.id}"),
            ("blocking_ids", f"+{h4.id}"),
        ]
        assert _changes_only(await history(model, h4.id)) == [
            ("blocked_by_ids", f"+{h2.id}"),
            ("blocked_by_ids", f"-{h2.id}"),
            ("blocked_by_ids", f"+{h3.id}"),
        ]
        assert (report.relation_changes, report.relation_changes_left_out) == (6, 0)


async def test_a_jira_changelog_of_links_epic_links_and_parents(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    day = "2021-05-0{}T10:00:00.000+0000"
    history_of = {
        # Jira logs a link on both issues: the blocked one's items are read.
        "HIST-1": [_changelog(day.format(2), _link_item("blocks", "HIST-2"))],
        "HIST-2": [
            _changelog(day.format(2), _link_item("is blocked by", "HIST-1")),
            _changelog(day.format(3), _link_item("is blocked by", "HIST-1", removed=True)),
            _changelog(day.format(4), _link_item("duplicates", "HIST-3")),
        ],
        "HIST-3": [
            _changelog(day.format(2), {"field": "Epic Link", "from": None, "fromString": None,
                                       "to": "10001", "toString": "HIST-1"}),
            _changelog(day.format(5), {"field": "IssueParentAssociation", "from": "10001",
                                       "fromString": "HIST-1", "to": "10004",
                                       "toString": "HIST-4"}),
            _changelog(day.format(6), _link_item("is blocked by", "OUT-9")),
        ],
        "HIST-4": [],
    }  # fmt: skip
    issues = [
        {**_jira_issue(key), "changelog": {"histories": histories}}
        for key, histories in history_of.items()
    ]
    issues[1]["fields"]["issuelinks"] = [
        {"type": {"name": "Duplicate", "outward": "duplicates", "inward": "is duplicated by"},
         "outwardIssue": {"key": "HIST-3"}},
    ]  # fmt: skip
    issues[2]["fields"]["parent"] = {"key": "HIST-4"}
    (tmp_path / "search-0000.json").write_text(json.dumps({"issues": issues}), encoding="utf-8")
    report = await run_import(JiraImporter(str(tmp_path), {}), make_settings())
    assert report.created == 4
    j1, j2, j3, j4 = [(await find(model, f"jira:HIST-{n}"))[0] for n in range(1, 5)]
    assert (j2.blocked_by_ids, j2.duplicate_of_id, j3.parent_id) == ([], j3.id, j4.id)
    assert _relation_changes(await history(model, j2.id)) == [
        (datetime(2021, 5, 2, 10, tzinfo=UTC), "blocked_by_ids", f"+{j1.id}"),
        (datetime(2021, 5, 3, 10, tzinfo=UTC), "blocked_by_ids", f"-{j1.id}"),
        (datetime(2021, 5, 4, 10, tzinfo=UTC), "duplicate_of_id", f"->{j3.id}"),
    ]
    assert _changes_only(await history(model, j1.id)) == [
        ("blocking_ids", f"+{j2.id}"),
        ("blocking_ids", f"-{j2.id}"),
    ]
    assert _changes_only(await history(model, j3.id)) == [
        ("parent_id", f"->{j1.id}"),
        ("parent_id", f"{j1.id}->{j4.id}"),
    ]
    assert (report.relation_changes, report.relation_changes_left_out) == (6, 1)
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (0, 2)
