"""Label changes the source logged before the first import are in the issue's history.

Before, an import created the issue with its custom fields and hotlists as
they are now (the labels' mapping) and kept the entries' changes of them for
a refresh: who changed a field or put the issue on a hotlist, and when, was
lost, and the creation claimed the reporter had done it. A real Trac
environment (made through Trac's own API) logs keyword changes mapped to a
custom field of the component the ticket goes to and to a hotlist; the
import through the real Model writes each as a change of its entry, with the
Trac author and time.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from import_support import ADMIN, MakeSettings, find, history, usernames

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_import import run_import
from bugless_import.sources.trac import TracImporter
from bugless_import.write_issues import REFUSED_ISSUE
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Component, Ticket

T0 = datetime(2016, 3, 1, 8, 0, tzinfo=UTC)


def _hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class _Trac23(TracImporter):
    """Trac under a name of its own (the session's other Trac tests own theirs)."""

    name = "trac23"


def _custom_changes(entry: v1.HistoryEntry) -> list[tuple[str, str, str]]:
    return [(c.field_name, c.old_value, c.new_value) for c in entry.changes if c.field_name]


def _hotlist_changes(entry: v1.HistoryEntry) -> list[tuple[list[str], list[str]]]:
    return [(list(c.added), list(c.removed)) for c in entry.changes if c.field == "hotlist_ids"]


async def test_keyword_changes_before_the_import_are_label_changes_of_their_entries(
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    tmp_path: Path,
) -> None:
    target = await call(
        model.create_component, v1.CreateComponentRequest(caller=ADMIN, name="Pumps23")
    )
    await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=target.id,
            name="Urgency23",
            type=v1.CustomFieldType.ENUM,
            options=["High", "Low"],
        ),
    )
    env = Environment(
        str(tmp_path / "env"), create=True, options=[("trac", "database", "sqlite:db/trac.db")]
    )
    component = Component(env)
    component.name = "pumps"
    component.insert()
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Pump hums", "description": "Hums at night.", "reporter": "ann",
         "component": "pumps", "status": "new", "keywords": "calm"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket["keywords"] = "urgent louder"
    ticket.save_changes("tom", "Louder every day.", when=_hours(1))
    ticket["keywords"] = "calm"
    ticket.save_changes("zoe", "", when=_hours(2))
    ticket["keywords"] = "urgent"
    ticket.save_changes("ann", "Back again.", when=_hours(3))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[components]\npumps = "Pumps23"\n'
        '[labels]\nurgent = "field:Urgency23=High"\ncalm = "field:Urgency23=Low"\n'
        'louder = "hotlist:Loud pumps23"\n',
        encoding="utf-8",
    )

    report = await run_import(_Trac23(env.path, {}), make_settings(mapping=mapping))
    assert report.created == 1

    (issue,) = await find(model, "trac23:1")
    assert issue.component_id == target.id
    assert [(v.name, list(v.values)) for v in issue.custom_fields] == [("Urgency23", ["High"])]
    assert list(issue.hotlist_ids) == []
    entries = await history(model, issue.id)
    (loud,) = {h for e in entries for c in e.changes if c.field == "hotlist_ids" for h in c.added}
    # Put on the hotlist by tom, taken off by zoe: the issue ends on none.
    assert [_hotlist_changes(e) for e in entries] == [[], [([loud], [])], [([], [loud])], []]
    # The creation holds the value the ticket was created with; each later
    # value is the change of the Trac entry that made it, by its author.
    assert _custom_changes(entries[0]) == [("Urgency23", "", "Low")]
    assert [(e.created_at, e.comment, _custom_changes(e)) for e in entries[1:]] == [
        (_hours(1), "Louder every day.", [("Urgency23", "Low", "High")]),
        (_hours(2), "", [("Urgency23", "High", "Low")]),
        (_hours(3), "Back again.", [("Urgency23", "Low", "High")]),
    ]
    assert await usernames(auth, [e.author for e in entries]) == [
        "ann",
        "tom@trac23",
        "zoe@trac23",
        "ann",
    ]
    assert issue.modified_at == _hours(3)
    assert issue.version == 4


class _Trac35(TracImporter):
    """Trac under a name of its own (the session's other Trac tests own theirs)."""

    name = "trac35"


async def test_a_move_in_the_history_drops_the_fields_the_new_component_lacks_as_a_live_move(
    make_settings: MakeSettings,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    # Urgency35 applies in Pumps35 only; Valves35 has a field of its own
    # with a default. A live move from one to the other drops the Urgency35
    # value and gives Size35 its default; the ticket's move in Trac's log
    # must leave the imported issue the same, not holding a value of a field
    # its component no longer has.
    pumps = await call(
        model.create_component, v1.CreateComponentRequest(caller=ADMIN, name="Pumps35")
    )
    valves = await call(
        model.create_component, v1.CreateComponentRequest(caller=ADMIN, name="Valves35")
    )
    made = {}
    for component, name, options, default in (
        (pumps, "Urgency35", ["High", "Low"], []),
        (valves, "Size35", ["Small", "Big"], ["Small"]),
    ):
        made[name] = await call(
            model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=component.id, name=name,
                type=v1.CustomFieldType.ENUM, options=options, default_values=default,
            ),
        )  # fmt: skip
    env = Environment(
        str(tmp_path / "env"), create=True, options=[("trac", "database", "sqlite:db/trac.db")]
    )
    for name in ("pumps", "valves"):
        component = Component(env)
        component.name = name
        component.insert()
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Hum is a valve", "description": "Hums.", "reporter": "ann",
         "component": "pumps", "status": "new", "keywords": "urgent"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket["component"] = "valves"
    ticket.save_changes("tom", "It is the valve.", when=_hours(1))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[components]\npumps = "Pumps35"\nvalves = "Valves35"\n'
        '[labels]\nurgent = "field:Urgency35=High"\n',
        encoding="utf-8",
    )

    report = await run_import(_Trac35(env.path, {}), make_settings(mapping=mapping))
    assert report.created == 1

    (issue,) = await find(model, "trac35:1")
    assert issue.component_id == valves.id
    assert [(v.name, list(v.values)) for v in issue.custom_fields] == [("Size35", ["Small"])]
    created, moved = await history(model, issue.id)
    assert _custom_changes(created) == [("Urgency35", "", "High")]
    imported_move = _custom_changes(moved)
    assert imported_move == [("Urgency35", "High", ""), ("Size35", "", "Small")]
    # The same move made live records the same changes.
    native = await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title="Hum is a valve", component_id=pumps.id),
            custom_fields=[v1.CustomFieldValue(field_id=made["Urgency35"].id, values=["High"])],
        ),
    )
    live = await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=ADMIN, issue_id=native.id, expected_version=native.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(component_id=valves.id),
                update_mask=FieldMask(paths=["component_id"]),
            ),
        ),
    )  # fmt: skip
    assert live.entry is not None
    assert live.issue is not None
    assert _custom_changes(live.entry) == imported_move
    assert [(v.name, list(v.values)) for v in live.issue.custom_fields] == [("Size35", ["Small"])]


class _Trac36(TracImporter):
    """Trac under a name of its own (the session's other Trac tests own theirs)."""

    name = "trac36"


async def test_a_move_maps_the_labels_to_the_new_components_fields(
    make_settings: MakeSettings,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    # Both components have a field named Urgency36, each its own. The
    # ticket's keyword stays "urgent" through its move: in Valves36 the
    # issue holds Valves36's Urgency36=High, as an import of a ticket
    # created there would, not only loses Pumps36's.
    fields = {}
    for name in ("Pumps36", "Valves36"):
        component = await call(
            model.create_component, v1.CreateComponentRequest(caller=ADMIN, name=name)
        )
        fields[name] = await call(
            model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=component.id, name="Urgency36",
                type=v1.CustomFieldType.ENUM, options=["High", "Low"],
            ),
        )  # fmt: skip
    env = Environment(
        str(tmp_path / "env"), create=True, options=[("trac", "database", "sqlite:db/trac.db")]
    )
    for name in ("pumps", "valves"):
        component = Component(env)
        component.name = name
        component.insert()
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Hum is a valve", "description": "Hums.", "reporter": "ann",
         "component": "pumps", "status": "new", "keywords": "urgent"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket["component"] = "valves"
    ticket.save_changes("tom", "It is the valve.", when=_hours(1))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[components]\npumps = "Pumps36"\nvalves = "Valves36"\n'
        '[labels]\nurgent = "field:Urgency36=High"\n',
        encoding="utf-8",
    )

    report = await run_import(_Trac36(env.path, {}), make_settings(mapping=mapping))
    assert report.created == 1

    (issue,) = await find(model, "trac36:1")
    assert [(v.field_id, list(v.values)) for v in issue.custom_fields] == [
        (fields["Valves36"].id, ["High"])
    ]
    _, moved = await history(model, issue.id)
    assert sorted((c.field, c.old_value, c.new_value) for c in moved.changes if c.field_name) == [
        (f"customfield{fields['Pumps36'].id}", "High", ""),
        (f"customfield{fields['Valves36'].id}", "", "High"),
    ]


class _Trac37(TracImporter):
    """Trac under a name of its own (the session's other Trac tests own theirs)."""

    name = "trac37"


def _gates_and_pipes(path: Path, *, ends_in: str) -> Environment:
    """Ticket 1, created in pipes, moved to gates, then (unless it ends there) back to pipes."""
    env = Environment(str(path), create=True, options=[("trac", "database", "sqlite:db/trac.db")])
    for name in ("pipes", "gates"):
        component = Component(env)
        component.name = name
        component.insert()
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Gate leaks", "description": "Leaks.", "reporter": "ann",
         "component": "pipes", "status": "new"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket.save_changes("tom", "Looking.", when=_hours(1))
    ticket["component"] = "gates"
    ticket.save_changes("tom", "It is the gate.", when=_hours(2))
    if ends_in == "pipes":
        ticket["component"] = "pipes"
        ticket.save_changes("ann", "The pipe after all.", when=_hours(3))
    return env


async def test_a_history_passing_through_a_component_requiring_a_field_is_history_not_an_edit(
    make_settings: MakeSettings,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    """Gates37 requires Risk37 today; a ticket that was there once and left is imported.

    Its states are history: Trac let it sit in "gates" without a Risk37
    (there was none then), and it ends in Pipes37, where nothing is
    required. Before, the Model refused the issue at the move into Gates37
    ("give it a value", which no value of the ticket's last state could
    answer). A ticket that ends in Gates37 is refused, naming the field, the
    component it ends in and what to do, nothing written.
    """
    for name in ("Pipes37", "Gates37"):
        await call(model.create_component, v1.CreateComponentRequest(caller=ADMIN, name=name))
    gates = await call(model.get_component, v1.GetComponentRequest(caller=ADMIN, path="Gates37"))
    pipes = await call(model.get_component, v1.GetComponentRequest(caller=ADMIN, path="Pipes37"))
    risk = await call(
        model.create_custom_field,
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=gates.id, name="Risk37",
            type=v1.CustomFieldType.ENUM, options=["High", "Low"], required=True,
        ),
    )  # fmt: skip
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[components]\npipes = "Pipes37"\ngates = "Gates37"\n', encoding="utf-8")
    settings = make_settings(mapping=mapping)

    passed = _gates_and_pipes(tmp_path / "passed", ends_in="pipes")
    report = await run_import(_Trac37(passed.path, {"project": "passed"}), settings)
    assert report.created == 1
    (issue,) = await find(model, "trac37:passed#1")
    assert (issue.component_id, list(issue.custom_fields)) == (pipes.id, [])
    entries = await history(model, issue.id)
    moves = [
        (c.old_value, c.new_value)
        for e in entries[1:]
        for c in e.changes
        if c.field == "component_id"
    ]
    assert moves == [(str(pipes.id), str(gates.id)), (str(gates.id), str(pipes.id))]
    assert [_custom_changes(e) for e in entries[1:]] == [[], [], []]

    ended = _gates_and_pipes(tmp_path / "ended", ends_in="gates")
    with pytest.raises(InvalidArgument) as refused:
        await run_import(_Trac37(ended.path, {"project": "ended"}), make_settings(mapping=mapping))
    assert refused.value.metadata[REFUSED_ISSUE] == "trac37:ended#1"
    assert refused.value.metadata["field"] == "history"
    assert refused.value.message == (
        f"trac37:ended#1: history: custom field 'Risk37' (id {risk.id}) is required in Gates37, "
        "where the issue ends, and it ends without a value for it (one required only where its "
        "history passed through is not asked for): give its last state a value (a source label "
        "the mapping maps to it), or the field a default, then import again"
    )
    assert await find(model, "trac37:ended#1") == []
