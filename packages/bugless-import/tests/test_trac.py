"""A real Trac environment, made through Trac's own API, imported and compared.

Trac (from PyPI, the package's ``testing`` extra) creates an environment on
SQLite; tickets, comments, components and users are made with Trac's model
classes as Trac's own web handlers make them. The import is then compared
with what Trac itself reports, field by field and entry by entry.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from import_support import MakeSettings, find, history, usernames

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Component, Ticket
    from trac.web.session import DetachedSession

T0 = datetime(2015, 7, 1, 12, 0, tzinfo=UTC)
STATUS = {
    "new": v1.Status.NEW,
    "assigned": v1.Status.ASSIGNED,
    "closed/fixed": v1.Status.FIXED,
    "closed/wontfix": v1.Status.WONT_FIX_INFEASIBLE,
}
PRIORITY = {"major": v1.Priority.P2, "critical": v1.Priority.P1, "minor": v1.Priority.P3}


def _hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@pytest.fixture(scope="module")
def trac_env(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """Users, components and five tickets with comments, changes and closures."""
    path = tmp_path_factory.mktemp("trac") / "env"
    env = Environment(
        str(path),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "base_url", "https://trac.example.org/rocket"),
        ],
    )
    for sid, name, email in (
        ("ann", "Ann Trac", "ann@example.com"),
        ("tom", "Tom Tracker", "tom@trac.example.org"),
    ):
        session = DetachedSession(env, sid)
        session["name"], session["email"] = name, email
        session.save()
    for name in ("Engines", "Ground>Pad"):
        component = Component(env)
        component.name = name
        component.owner = "tom"
        component.insert()
    first = Ticket(env)
    first.populate(
        {"summary": "Engine does not stop", "description": "It '''keeps''' going.\n{{{\nlog\n}}}",
         "reporter": "tom", "owner": "", "component": "Engines", "priority": "critical",
         "type": "defect", "status": "new", "cc": "ann", "keywords": "engine safety"}
    )  # fmt: skip
    first.insert(when=_hours(0))
    first["owner"], first["status"] = "ann", "assigned"
    first.save_changes("tom", "Ann, please look.", when=_hours(1))
    first.save_changes("ann", "Reproduced on the pad.", when=_hours(2))
    first["priority"], first["cc"] = "major", "ann, tom"
    first.save_changes("ann", "", when=_hours(3))
    first["status"], first["resolution"] = "closed", "fixed"
    first.save_changes("ann", "Fixed in [changeset:42].", when=_hours(30))
    second = Ticket(env)
    second.populate(
        {"summary": "Pad lights flicker", "description": "", "reporter": "someone@example.net",
         "component": "Ground>Pad", "priority": "minor", "type": "enhancement", "status": "new"}
    )  # fmt: skip
    second.insert(when=_hours(5))
    second["status"], second["resolution"] = "closed", "wontfix"
    second.save_changes("tom", "Not worth it.", when=_hours(6))
    for n in range(3):
        more = Ticket(env)
        more.populate(
            {"summary": f"Checklist item {n}", "description": f"Item {n}", "reporter": "ann",
             "component": "Engines", "priority": "major", "type": "task", "status": "new"}
        )  # fmt: skip
        more.insert(when=_hours(10 + n))
        more.save_changes("tom", f"Noted {n}.", when=_hours(11 + n))
    edited = Ticket(env)
    edited.populate(
        {"summary": "Fuel gauge reads low", "description": "Reads ''low''.", "reporter": "tom",
         "component": "Engines", "priority": "major", "type": "defect", "status": "new"}
    )  # fmt: skip
    edited.insert(when=_hours(20))
    edited["description"] = "Reads '''10% low''' after refuelling."
    edited.save_changes("tom", "", when=_hours(21))
    edited["description"] = "Reads 10% low after refuelling, on pad 2 only."
    edited.save_changes("ann", "Narrowed it down.", when=_hours(22))
    return env


def _trac_entries(ticket: Ticket) -> list[tuple[datetime, str, str]]:
    """(time, author, comment) of each change group, as Trac's changelog gives it."""
    groups: dict[tuple[datetime, str], str] = {}
    for when, author, field, _old, new, _permanent in ticket.get_changelog():
        key = (when, author)
        groups.setdefault(key, "")
        if field == "comment":
            groups[key] = new
    return [(when, author, comment) for (when, author), comment in groups.items()]


async def test_every_ticket_matches_trac_field_by_field_and_entry_by_entry(
    trac_env: Environment,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
) -> None:
    report = await run_import(TracImporter(trac_env.path, {}), make_settings())
    assert report.created + report.unchanged == 6
    assert report.unmapped == [("labels", "engine", 1), ("labels", "safety", 1)]
    assert "Imported>Ground>Pad" in report.components_to_create
    for ticket_id in range(1, 6):
        ticket = Ticket(trac_env, ticket_id)
        (issue,) = await find(model, f"trac:{ticket_id}")
        await _compare(ticket, issue, model, auth)


async def _compare(
    ticket: Ticket, issue: v1.Issue, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    values: dict[str, Any] = ticket.values
    assert issue.title == values["summary"]
    status = values["status"] + (f"/{values['resolution']}" if values["resolution"] else "")
    assert issue.status is STATUS[status]
    assert issue.priority is PRIORITY[values["priority"]]
    assert issue.created_at == ticket["time"]
    assert issue.modified_at == ticket["changetime"]
    component = await call(
        model.get_component,
        v1.GetComponentRequest(
            caller=v1.Caller(user_id="t", admin=True), component_id=issue.component_id
        ),
    )
    assert component.path == f"Imported>{values['component']}"
    reporter, assignee = await usernames(auth, [issue.reporter, issue.assignee or issue.reporter])
    expected_reporter = {"tom": "tom@trac", "ann": "ann", "someone@example.net": "someone@trac"}
    assert reporter == expected_reporter[values["reporter"]]
    if values["owner"] and values["owner"] != "< default >":
        assert assignee == {"ann": "ann"}[values["owner"]], "matched by e-mail"
    cc = await usernames(auth, list(issue.cc))
    assert sorted(cc) == sorted(
        {"ann": "ann", "tom": "tom@trac"}[p.strip()] for p in values["cc"].split(",") if p.strip()
    )
    entries = await history(model, issue.id)
    trac = _trac_entries(ticket)
    assert len(entries) == 1 + len(trac)
    authors = await usernames(auth, [e.author for e in entries[1:]])
    for entry, author, (when, trac_author, comment) in zip(entries[1:], authors, trac, strict=True):
        assert entry.created_at == when
        assert author == {"ann": "ann", "tom": "tom@trac"}[trac_author]
        # [changeset:42] links to the Trac's changeset page (trac.ini's base_url).
        changeset = "[changeset:42](https://trac.example.org/rocket/changeset/42)"
        assert entry.comment == comment.replace("'''", "**").replace("[changeset:42]", changeset)
        assert entry.imported_from == f"trac:{ticket.id}"
    if status.startswith("closed"):
        assert issue.closed_at == trac[-1][0]
    else:
        assert issue.closed_at is None


async def test_the_dry_run_lists_who_matched_whom_and_the_placeholder_names_to_be(
    trac_env: Environment, make_settings: MakeSettings
) -> None:
    """Before, a match was only counted, and ``someone@example.net@trac`` was announced
    for what became ``someone@trac``."""
    report = await run_import(TracImporter(trac_env.path, {}), make_settings(dry_run=True))
    assert ("ann", "ann", "email") in report.matches
    assert "    ann -> ann (by email)" in report.render().splitlines()
    assert "someone@trac" in report.placeholders
    assert "someone@example.net@trac" not in report.placeholders
    assert "ghost@trac" not in report.placeholders, "every ticket and change has an author"


async def test_description_edits_are_edits_of_the_first_entry(
    trac_env: Environment, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """Trac's ``description`` changes: entry 1 keeps the original, each edit follows it."""
    await run_import(TracImporter(trac_env.path, {}), make_settings())
    (issue,) = await find(model, "trac:6")
    assert issue.description == "Reads 10% low after refuelling, on pad 2 only."
    entries = await history(model, issue.id)
    assert [(e.created_at, e.comment, e.edits_version) for e in entries] == [
        (_hours(20), "Reads *low*.", 0),
        (_hours(21), "Reads **10% low** after refuelling.", 1),
        (_hours(22), "Reads 10% low after refuelling, on pad 2 only.", 1),
        (_hours(22), "Narrowed it down.", 0),
    ]
    assert entries[0].edited_in_version == 3
