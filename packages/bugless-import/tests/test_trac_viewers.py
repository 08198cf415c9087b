"""The report names, for every imported issue, the people it names who cannot view it.

Before, only ``--restricted-component``'s issues were checked: a Trac
ticket every Trac user could read, whose component maps to a bugless
component only a group reads, came in naming its reporter and CC as Trac
did, and nothing said that bugless would neither show it to them nor mail
them about it. A real Trac environment (made through Trac's API) is
imported through the real Model and Authenticator; the Model's
CheckViewers judges each issue's people against its component.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
from import_support import MakeSettings, _component, find

from bugless_core.errors import InvalidArgument
from bugless_core.limits import MAX_COMMENT_LENGTH
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' and crypt's deprecation notices
    from trac.env import Environment
    from trac.ticket.model import Ticket


def _environment(tmp_path: Path) -> Path:
    """Ticket 1 in component1, ticket 2 in component2; both reported by vw-tom."""
    path = tmp_path / "env"
    env = Environment(str(path), create=True, options=[("trac", "database", "sqlite:db/trac.db")])
    for number, component, owner, cc in (
        (1, "component1", "vw-ann", "vw-tom, zed-vw"),
        (2, "component2", "", "zed-vw"),
    ):
        ticket = Ticket(env)
        ticket.populate(
            {"summary": f"Ticket {number}", "description": "Details.", "reporter": "vw-tom",
             "owner": owner, "cc": cc, "component": component, "status": "new"}
        )  # fmt: skip
        ticket.insert()
    env.shutdown()
    return path


async def test_people_an_issue_names_who_cannot_view_its_component_are_named(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    # vw-ann reads TracViewersCore through her group, vw-tom does not;
    # zed-vw has no account (a placeholder, which the report lists as one,
    # not here). component2 goes to a component no access list covers.
    bugless_stack.add_user("vw-ann", "pw-vw-ann", groups=["vw-core"])
    bugless_stack.add_user("vw-tom", "pw-vw-tom")
    await _component(model, "TracViewersCore", "vw-core")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[components]\ncomponent1 = "TracViewersCore"\ncomponent2 = "TracViewersOpen"\n',
        encoding="utf-8",
    )
    importer = TracImporter(str(_environment(tmp_path)), {"project": "vw"})
    settings = make_settings(mapping=mapping)
    expected = [("trac:vw#1", "TracViewersCore: vw-tom (reporter, cc): no access")]

    dry = await run_import(importer, dataclasses.replace(settings, dry_run=True))
    assert (dry.unseen, dry.viewers_judged) == (expected, 2)
    report = await run_import(importer, settings)
    assert (report.unseen, report.viewers_judged) == (expected, 2)
    assert report.created == 2
    assert len(await find(model, "trac:vw#1")) == 1
    lines = report.render().splitlines()
    (heading,) = [line for line in lines if "cannot view them in their component" in line]
    assert heading.startswith(
        "  issues naming people who cannot view them in their component: 1 issue of 2 issues "
        "judged (the source showed them the issue;"
    )
    assert "could not in the source is not judged" in heading
    assert lines[lines.index(heading) + 1] == (
        "    trac:vw#1 in TracViewersCore: vw-tom (reporter, cc): no access"
    )


async def test_a_resumed_run_lists_the_earlier_runs_issues_apart(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """A run stopped at ticket 2, run again: ticket 1 is judged again but listed as earlier.

    Before, the resumed run's list held ticket 1 as if this run had written
    it, and counted it among the issues it judged. The report file is
    rewritten by each run, so ticket 1 stays in it, judged as the access
    list is now, under a heading of its own.
    """
    bugless_stack.add_user("rsm-ann", "pw-rsm-ann", groups=["rsm-core"])
    bugless_stack.add_user("rsm-tom", "pw-rsm-tom")
    await _component(model, "TracResumeCore", "rsm-core")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[components]\ncomponent1 = "TracResumeCore"\n', encoding="utf-8")
    path = tmp_path / "env"
    env = Environment(str(path), create=True, options=[("trac", "database", "sqlite:db/trac.db")])
    for number, reporter in ((1, "rsm-tom"), (2, "rsm-tom"), (3, "rsm-ann")):
        ticket = Ticket(env)
        ticket.populate(
            {"summary": f"Ticket {number}", "description": "Details.", "reporter": reporter,
             "component": "component1", "status": "new"}
        )  # fmt: skip
        ticket.insert()
        if number == 2:  # over the Model's limit: the first run stops here
            ticket.save_changes("rsm-ann", "x" * (MAX_COMMENT_LENGTH + 1))
    env.shutdown()
    importer = TracImporter(str(path), {"project": "rsm"})
    settings = make_settings(mapping=mapping, batch_size=50, concurrency=1)

    with pytest.raises(InvalidArgument):
        await run_import(importer, settings)
    assert len(await find(model, "trac:rsm#1")) == 1
    assert await find(model, "trac:rsm#2") == []
    env = Environment(str(path))
    with env.db_transaction as db:
        db("UPDATE ticket_change SET newvalue='Shorter.' WHERE ticket=2 AND field='comment'")
    env.shutdown()

    report = await run_import(TracImporter(str(path), {"project": "rsm"}), settings)
    # Ticket 3 landed in the stopped run's batch, unrecorded: found as it is.
    assert (report.done_before, report.created, report.unchanged) == (1, 1, 1)
    no_access = "TracResumeCore: rsm-tom (reporter): no access"
    assert (report.unseen, report.viewers_judged) == ([("trac:rsm#2", no_access)], 2)
    assert (report.unseen_before, report.viewers_judged_before) == ([("trac:rsm#1", no_access)], 1)
    lines = report.render().splitlines()
    (heading,) = [line for line in lines if line.startswith("  issues naming people")]
    assert heading.startswith(
        "  issues naming people who cannot view them in their component: 1 issue of 2 issues "
        "judged ("
    )
    assert lines[lines.index(heading) + 1] == f"    trac:rsm#2 in {no_access}"
    (earlier,) = [line for line in lines if line.startswith("  issues an earlier run imported")]
    assert earlier.startswith(
        "  issues an earlier run imported naming people who cannot view them in their "
        "component: 1 issue of 1 issue judged again (as the access lists are now"
    )
    assert lines[lines.index(earlier) + 1] == f"    trac:rsm#1 in {no_access}"
    assert (settings.state_dir / "trac-report.txt").read_text(encoding="utf-8").count(
        "trac:rsm#1 in"
    ) == 1
