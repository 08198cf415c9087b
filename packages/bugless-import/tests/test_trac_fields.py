"""Trac's milestone, version and custom fields reach the mapping; a dry run counts attachments.

Before, a Trac import read none of them and said nothing: a team's milestones
and its ``[ticket-custom]`` fields vanished, and so (silently) did every
attached file. Now each is a label (``milestone:2.0``, ``platform:Windows``)
that a dry run lists as unmapped and the mapping file sends to a hotlist or a
custom field, with its changes in the history; a dry run counts the
attachments it would copy (test_attachments_copied copies them).
"""

from __future__ import annotations

import io
import os
import subprocess
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from import_support import MakeSettings, _hotlist_ids, _labels_of, find, history

from bugless_core.errors import FailedPrecondition
from bugless_import import run_import
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1
from bugless_testing.program import BUGLESS_SCRIPT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.attachment import Attachment
    from trac.env import Environment
    from trac.ticket.model import Ticket

T0 = datetime(2016, 2, 1, 8, 0, tzinfo=UTC)


def _hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class _Trac31(TracImporter):
    """Trac under a name of its own: the session's other Trac tests own ``trac:1``..."""

    name = "trac31"


def _environment(path: Path) -> Environment:
    """One ticket with a milestone, a version, custom fields and an attachment."""
    env = Environment(
        str(path),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "base_url", "https://trac31.example.org/rocket"),
            ("ticket-custom", "platform", "select"),
            ("ticket-custom", "platform.options", "Linux|Windows"),
            ("ticket-custom", "customer", "text"),
            ("ticket-custom", "notes", "textarea"),
        ],
    )
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Engine does not stop", "description": "It keeps going.", "reporter": "ann",
         "component": "component1", "priority": "major", "type": "defect", "status": "new",
         "milestone": "milestone1", "version": "1.0", "platform": "Linux",
         "customer": "ACME GmbH", "notes": "A long paragraph of prose."}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket["platform"], ticket["milestone"] = "Windows", "milestone2"
    ticket.save_changes("ann", "Also on Windows; moving it.", when=_hours(1))
    attachment = Attachment(env, "ticket", 1)
    attachment.author = "ann"
    attachment.insert("engine log.txt", io.BytesIO(b"T+5 no stop\n"), 12, t=_hours(2))
    return env


async def test_milestones_versions_and_custom_fields_are_labels_the_mapping_sends_on(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env")
    importer = _Trac31(env.path, {})
    dry = await run_import(importer, make_settings(dry_run=True))
    assert dry.unmapped == [
        ("labels", "customer:ACME GmbH", 1),
        ("labels", "milestone:milestone2", 1),
        ("labels", "platform:Windows", 1),
        ("labels", "version:1.0", 1),
    ], "the current values are listed to be mapped; a textarea is not a label"
    assert dry.attachments == 1
    assert "attachments: 1 file on 1 issue, 12 bytes would be copied" in dry.render()

    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[labels]\n"milestone:milestone1" = "hotlist:Trac31 M1"\n'
        '"milestone:milestone2" = "hotlist:Trac31 M2"\n'
        '"customer:ACME GmbH" = "field:Customer=ACME GmbH"\n',
        encoding="utf-8",
    )
    report = await run_import(importer, make_settings(mapping=mapping))
    assert report.created == 1
    # Once per issue, as the dry run counts: before, 'platform:Windows' was
    # counted again at each change of the labels in the history ("3 times"),
    # and a label mapped to a field the component lacks at each look-up of
    # the issue's labels (creation, now, before and after each change: 4).
    assert report.unmapped == [
        ("labels", "customer:ACME GmbH (no field 'Customer' here)", 1),
        ("labels", "platform:Windows", 1),
        ("labels", "version:1.0", 1),
    ]
    (issue,) = await find(model, "trac31:1")
    hotlists = await _hotlist_ids(model, ["Trac31 M1", "Trac31 M2"])
    assert list(issue.hotlist_ids) == [hotlists["Trac31 M2"]]

    # In Trac, after the first import: back to the first milestone.
    ticket = Ticket(env, 1)
    ticket["milestone"] = "milestone1"
    ticket.save_changes("ann", "Needed sooner.", when=_hours(3))
    refreshed = await run_import(importer, make_settings(mapping=mapping, refresh=True))
    assert refreshed.extended == 1
    (issue,) = await find(model, "trac31:1")
    assert list(issue.hotlist_ids) == [hotlists["Trac31 M1"]]
    last = (await history(model, issue.id))[-1]
    assert (last.created_at, last.comment) == (_hours(3), "Needed sooner.")
    assert _labels_of(last) == [
        ("hotlist_ids", [str(hotlists["Trac31 M1"])], [str(hotlists["Trac31 M2"])], "")
    ]


class _Trac33(TracImporter):
    name = "trac33"


def _one_ticket(path: Path, summary: str, created: datetime) -> str:
    env = Environment(str(path), create=True, options=[("trac", "database", "sqlite:db/trac.db")])
    ticket = Ticket(env)
    ticket.populate({"summary": summary, "reporter": "ann", "status": "new", "type": "task"})
    ticket.insert(when=created)
    ticket.save_changes("ann", f"About {summary}.", when=created + timedelta(hours=1))
    return str(env.path)


async def test_a_second_environment_is_not_taken_for_the_first_and_a_project_keeps_it_apart(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """Before, the second environment's ticket 1 was 'unchanged' issue trac:1 of the first."""
    rocket = _one_ticket(tmp_path / "rocket", "Engine does not stop", _hours(0))
    ground = _one_ticket(tmp_path / "ground", "Pad lights flicker", _hours(-5000))
    await run_import(_Trac33(rocket, {}), make_settings(state_dir=tmp_path / "s1"))
    (first,) = await find(model, "trac33:1")
    with pytest.raises(FailedPrecondition, match="another source with the same external ids"):
        await run_import(_Trac33(ground, {}), make_settings(state_dir=tmp_path / "s2"))
    (still,) = await find(model, "trac33:1")
    assert (still.title, still.version) == (first.title, first.version)

    report = await run_import(
        _Trac33(ground, {"project": "ground"}), make_settings(state_dir=tmp_path / "s3")
    )
    assert report.created == 1
    (apart,) = await find(model, "trac33:ground#1")
    assert apart.title == "Pad lights flicker"
    assert apart.id != first.id


def test_the_command_says_nothing_about_pkg_resources(tmp_path: Path) -> None:
    """Before, every ``bugless import trac`` began with Trac's pkg_resources warning."""
    env = _one_ticket(tmp_path / "quiet", "Quiet", _hours(0))
    done = subprocess.run(
        [BUGLESS_SCRIPT, "import", "trac", env, "--dry-run",
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("BUGLESS_", "PYTHONWARN"))},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "source: 1 issue, " in done.stdout
