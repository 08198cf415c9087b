"""A refresh applies the source's label changes since to the mapped hotlists and fields.

One real source (a Trac environment made through Trac's own API: keyword
changes) and one fixture source (a GitHub export: ``labeled``/``unlabeled``
timeline events). Each change becomes a hotlist or custom field change of the
entry with the source's author and time; a second refresh changes nothing.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from import_support import ADMIN, MakeSettings, _hotlist_ids, _labels_of, find, history, usernames

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Component, Ticket
    from trac.web.session import DetachedSession

T0 = datetime(2016, 2, 1, 8, 0, tzinfo=UTC)


def _hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class _Trac21(TracImporter):
    """Trac under another name: the session's other Trac tests own ``trac:1``..."""

    name = "trac21"


def _mapping(path: Path, lines: str) -> Path:
    path.write_text(f"[labels]\n{lines}", encoding="utf-8")
    return path


async def test_trac_keyword_changes_reach_hotlists_and_fields_on_refresh(
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    tmp_path: Path,
) -> None:
    env = Environment(
        str(tmp_path / "env"),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "base_url", "https://trac21.example.org/valves"),
        ],
    )
    session = DetachedSession(env, "ann")
    session["name"], session["email"] = "Ann Trac", "ann@example.com"
    session.save()
    component = Component(env)
    component.name = "Valves21"
    component.insert()
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Valve sticks", "description": "Sticks when cold.", "reporter": "ann",
         "component": "Valves21", "priority": "major", "type": "defect", "status": "new",
         "keywords": "valve"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    mapping = _mapping(
        tmp_path / "mapping.toml",
        'valve = "hotlist:Trac21 valves"\nstuck = "hotlist:Trac21 stuck"\n'
        'urgent = "field:Urgency21=High"\n',
    )
    importer = _Trac21(env.path, {})
    await run_import(importer, make_settings(mapping=mapping))
    (issue,) = await find(model, "trac21:1")
    hotlists = await _hotlist_ids(model, ["Trac21 valves", "Trac21 stuck"])
    assert list(issue.hotlist_ids) == [hotlists["Trac21 valves"]]
    await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=issue.component_id,
            name="Urgency21",
            type=v1.CustomFieldType.ENUM,
            options=["High", "Low"],
        ),
    )

    # In Trac, after the first import: two keyword changes by ann.
    ticket = Ticket(env, 1)
    ticket["keywords"] = "stuck urgent"
    ticket.save_changes("ann", "", when=_hours(1))
    ticket["keywords"] = "urgent"
    ticket.save_changes("ann", "Unstuck by warming it.", when=_hours(2))

    refresh = make_settings(mapping=mapping, refresh=True)
    report = await run_import(importer, refresh)
    assert report.extended == 1
    (issue,) = await find(model, "trac21:1")
    assert list(issue.hotlist_ids) == []
    assert [(v.name, list(v.values)) for v in issue.custom_fields] == [("Urgency21", ["High"])]
    entries = await history(model, issue.id)
    valves, stuck = hotlists["Trac21 valves"], hotlists["Trac21 stuck"]
    assert [(e.created_at, e.comment, _labels_of(e)) for e in entries[1:]] == [
        (
            _hours(1),
            "",
            [
                ("hotlist_ids", [str(stuck)], [str(valves)], ""),
                ("Urgency21", [], [], "High"),
            ],
        ),
        (_hours(2), "Unstuck by warming it.", [("hotlist_ids", [], [str(stuck)], "")]),
    ]
    assert await usernames(auth, [e.author for e in entries[1:]]) == ["ann", "ann"]

    again = await run_import(importer, refresh)
    assert (again.extended, again.unchanged) == (0, 1)
    assert len(await history(model, issue.id)) == len(entries)
    (issue,) = await find(model, "trac21:1")
    assert list(issue.hotlist_ids) == []
    assert [list(v.values) for v in issue.custom_fields] == [["High"]]


REPO = "https://api.github.com/repos/acme/labels21"


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 2101, "type": "User", "url": f"https://x/{login}"}


def _write_export(root: Path, labels: list[str], events: list[dict[str, Any]]) -> None:
    issue = {
        "url": f"{REPO}/issues/1",
        "repository_url": REPO,
        "html_url": "https://github.com/acme/labels21/issues/1",
        "number": 1,
        "title": "Labels move after the import",
        "user": _user("ann"),
        "labels": [{"name": name} for name in labels],
        "state": "open",
        "created_at": "2023-04-01T09:00:00Z",
        "updated_at": events[-1]["created_at"] if events else "2023-04-01T09:00:00Z",
        "closed_at": None,
        "body": "Watch the labels.",
    }
    (root / "timeline").mkdir(parents=True, exist_ok=True)
    (root / "issues.json").write_text(json.dumps([issue]), encoding="utf-8")
    (root / "timeline" / "1.json").write_text(json.dumps(events), encoding="utf-8")


def _event(kind: str, label: str, at: str, login: str = "ann") -> dict[str, Any]:
    return {"event": kind, "actor": _user(login), "label": {"name": label}, "created_at": at}


async def test_github_label_events_reach_hotlists_on_refresh(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    root = tmp_path / "gh"
    mapping = _mapping(
        tmp_path / "mapping.toml", 'flaky = "hotlist:GH21 flaky"\nperf = "hotlist:GH21 perf"\n'
    )
    first = [_event("labeled", "flaky", "2023-04-01T10:00:00+02:00")]
    _write_export(root, ["flaky"], first)
    importer = GitHubImporter(str(root), {})
    await run_import(importer, make_settings(mapping=mapping))
    (issue,) = await find(model, "github:acme/labels21#1")
    hotlists = await _hotlist_ids(model, ["GH21 flaky", "GH21 perf"])
    flaky, perf = hotlists["GH21 flaky"], hotlists["GH21 perf"]
    assert list(issue.hotlist_ids) == [flaky]
    created = len(await history(model, issue.id))

    later = [
        _event("labeled", "perf", "2023-04-02T09:00:00Z"),
        _event("unlabeled", "flaky", "2023-04-03T09:00:00Z"),
        _event("labeled", "unmapped", "2023-04-04T09:00:00Z"),
    ]
    _write_export(Path(root), ["perf", "unmapped"], first + later)
    refresh = make_settings(mapping=mapping, refresh=True)
    await run_import(importer, refresh)
    (issue,) = await find(model, "github:acme/labels21#1")
    assert list(issue.hotlist_ids) == [perf]
    entries = (await history(model, issue.id))[created:]
    assert [(str(e.created_at), _labels_of(e)) for e in entries] == [
        ("2023-04-02 09:00:00+00:00", [("hotlist_ids", [str(perf)], [], "")]),
        ("2023-04-03 09:00:00+00:00", [("hotlist_ids", [], [str(flaky)], "")]),
    ]

    again = await run_import(importer, refresh)
    assert again.unchanged == 1
    assert len(await history(model, issue.id)) == created + 2
