"""Trac tickets its permission policies hide from its readers are restricted issues.

Core Trac has no "private" flag: a ticket is restricted by a permission
policy refusing ``TICKET_VIEW`` on it. A real Trac 1.6 environment with
Trac's own ``AuthzPolicy`` (``tracopt.perm.authz_policy``; its authz file
shows ticket 2 to the group ``security`` only) is imported: before, ticket 2
was imported where its component maps, for everyone who reads that to
read. Now it is left out and named in the report, or, with
``--restricted-component``, imported there and nowhere else.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import pytest
from import_support import ADMIN, MakeSettings, _component, find

from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import InvalidArgument
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack
from bugless_import import run_import
from bugless_import.sources.trac import TracImporter
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "pkg_resources is deprecated")
    from trac.env import Environment
    from trac.ticket.model import Ticket

_POLICIES = (
    "AuthzPolicy, DefaultWikiPolicy, DefaultTicketPolicy, DefaultPermissionPolicy, "
    "LegacyAttachmentPolicy"
)
#: ``bugless model serve`` as the release before the import asked CheckViewers.
PREVIOUS_MODEL = Path(__file__).with_name("previous_model.py")
#: ``bugless model serve`` as a release before CheckViewers.
#: ``bugless model serve`` of a release without CheckViewers.
MODEL_WITHOUT_CHECK_VIEWERS = ("-m", "bugless_testing.older_model", "CheckViewers")
HIDDEN = (
    f"a ticket Trac's permission policies ({_POLICIES}) hide from every signed-in user, who "
    "may view its other tickets"
)


def _environment(tmp_path: Path, authz: str, *, anonymous_views: bool = True) -> Path:
    """Tickets 1 and 2 (component "Engines") under AuthzPolicy with the authz file ``authz``."""
    (tmp_path / "authz.ini").write_text(authz, encoding="utf-8")
    path = tmp_path / "env"
    env = Environment(
        str(path),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "permission_policies", _POLICIES),
            ("authz_policy", "authz_file", str(tmp_path / "authz.ini")),
            ("components", "tracopt.perm.authz_policy.*", "enabled"),
        ],
    )
    if not anonymous_views:
        env.db_transaction("DELETE FROM permission WHERE username='anonymous'")
        env.db_transaction("DELETE FROM permission WHERE username='authenticated'")
        env.db_transaction("INSERT INTO permission VALUES ('developers', 'TICKET_VIEW')")
        env.db_transaction("INSERT INTO permission VALUES ('ann', 'developers')")
    for number in (1, 2):
        ticket = Ticket(env)
        ticket.populate(
            {"summary": f"Ticket {number}", "description": "Details.", "reporter": "tom",
             "component": "component1", "status": "new", "type": "defect"}
        )  # fmt: skip
        ticket.insert()
    env.shutdown()
    return path


#: Ticket 2 for the group security only.
_SECURITY_ONLY = "[groups]\nsecurity = ann\n\n[ticket:2]\n@security = TICKET_VIEW\n* =\n"


async def test_a_ticket_trac_hides_from_its_readers_is_left_out_and_named(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    env = _environment(tmp_path, _SECURITY_ONLY)
    importer = TracImporter(str(env), {"project": "hidden1"})
    report = await run_import(importer, make_settings(component_root="TracHidden1"))

    assert report.created == 1
    assert await find(model, "trac:hidden1#2") == []
    assert len(await find(model, "trac:hidden1#1")) == 1
    assert report.restricted_issues == [("trac:hidden1#2", HIDDEN)]
    assert "restricted issues not imported: 1" in report.render()


async def test_a_hidden_ticket_goes_into_the_restricted_component(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    env = _environment(tmp_path, _SECURITY_ONLY)
    secure = await _component(model, "TracSecure2", "security")
    settings = make_settings(component_root="TracHidden2", restricted_component="TracSecure2")
    report = await run_import(TracImporter(str(env), {"project": "hidden2"}), settings)

    assert report.created == 2
    (hidden,) = await find(model, "trac:hidden2#2")
    assert hidden.component_id == secure.id
    (shown,) = await find(model, "trac:hidden2#1")
    where = await call(
        model.get_component, v1.GetComponentRequest(caller=ADMIN, component_id=shown.component_id)
    )
    assert where.path == "TracHidden2>component1"


def test_where_only_a_group_reads_tickets_the_reader_is_named_or_the_run_refuses(
    tmp_path: Path,
) -> None:
    """No signed-in user as such may view tickets: hidden ones cannot be told.

    The run stops before anything is read (an error, not every ticket
    restricted), until ``--option reader=`` names one of their readers.
    """
    authz = "[ticket:2]\nann =\n"
    env = _environment(tmp_path, authz, anonymous_views=False)
    with pytest.raises(InvalidArgument, match="no signed-in user as such"):
        list(TracImporter(str(env), {}).issues())
    restricted = {i.key: i.restricted for i in TracImporter(str(env), {"reader": "ann"}).issues()}
    assert restricted["1"] == ""
    assert "hide from the reader 'ann' (--option reader)" in restricted["2"]
    with pytest.raises(InvalidArgument, match="the user 'tom'"):
        list(TracImporter(str(env), {"reader": "tom"}).issues())


async def test_people_a_restricted_ticket_names_who_cannot_view_its_component_are_named(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """Its reporter (an account outside the component's group) and a CC (a placeholder).

    Before, the report said nothing of them: rv-tom reported ticket 2 and
    was on its CC list in Trac, and in bugless neither sees it nor hears of
    it. The run warns (the Model's CheckViewers, as a frontend asks after a
    save) and imports: the issue names them as Trac did.
    """
    bugless_stack.add_user("rv-ann", "pw-rv-ann", groups=["rv-sec"])
    bugless_stack.add_user("rv-tom", "pw-rv-tom")
    secure = await _component(model, "TracSecureRV", "rv-sec")
    importer = TracImporter(str(_named_people(tmp_path, "rv")), {"project": "rv"})
    settings = make_settings(component_root="TracHiddenRV", restricted_component="TracSecureRV")

    dry = await run_import(importer, dataclasses.replace(settings, dry_run=True))
    assert dry.restricted_unseen == [
        (
            "trac:rv#2",
            "rv-tom (reporter, cc): no access; zed-rv (source) (cc): no account yet (the run "
            "makes a placeholder, which cannot sign in)",
        )
    ]
    report = await run_import(importer, settings)

    (hidden,) = await find(model, "trac:rv#2")
    assert hidden.component_id == secure.id
    assert report.restricted_unseen == [
        (
            "trac:rv#2",
            "rv-tom (reporter, cc): no access; zed-rv@trac (cc): cannot sign in (a placeholder "
            "or a disabled account)",
        )
    ]
    assert (
        "  restricted issues naming people who cannot view TracSecureRV: 1 issue (bugless will "
        "neither show them the issue nor mail them about it: give them access, or leave them "
        "out)\n    trac:rv#2: rv-tom (reporter, cc): no access;" in report.render()
    )


def _named_people(tmp_path: Path, prefix: str) -> Path:
    """Tickets 1 and 2 by PREFIX-tom for PREFIX-ann, CC zed-PREFIX; 2 for group security only."""
    (tmp_path / "authz.ini").write_text(
        f"[groups]\nsecurity = {prefix}-ann\n\n[ticket:2]\n@security = TICKET_VIEW\n* =\n",
        encoding="utf-8",
    )
    env = Environment(
        str(tmp_path / "env"),
        create=True,
        options=[
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "permission_policies", _POLICIES),
            ("authz_policy", "authz_file", str(tmp_path / "authz.ini")),
            ("components", "tracopt.perm.authz_policy.*", "enabled"),
        ],
    )
    for number, cc in ((1, f"zed-{prefix}"), (2, f"{prefix}-tom, zed-{prefix}")):
        ticket = Ticket(env)
        ticket.populate(
            {"summary": f"Ticket {number}", "description": "Details.", "reporter": f"{prefix}-tom",
             "owner": f"{prefix}-ann", "cc": cc, "component": "component1", "status": "assigned"}
        )  # fmt: skip
        ticket.insert()
    env.shutdown()
    return tmp_path / "env"


async def test_a_model_before_the_import_asked_check_viewers_leaves_a_warning_and_imports(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """A Model of the previous release refuses CheckViewers to the import identity.

    The people are not checked; the run says so in a warning and imports
    (nothing it writes depends on the answer), rather than stopping at a
    PERMISSION_DENIED of a call that only informs the report.
    """
    secure = await _component(model, "TracSecurePV", "pv-sec")
    ready = tmp_path / "previous-model.json"
    process = spawn(
        "model-previous",
        [sys.executable, str(PREVIOUS_MODEL), "model", "serve", "--port", "0",
         "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "previous-model.log",
        ready_file=ready,
    )  # fmt: skip
    previous = bugless_stack.wait_started("model", process)
    try:
        settings = make_settings(
            model=ServiceAddress("127.0.0.1", previous.port),
            component_root="TracHiddenPV",
            restricted_component="TracSecurePV",
        )
        importer = TracImporter(str(_named_people(tmp_path, "pv")), {"project": "pv"})
        report = await run_import(importer, settings)
    finally:
        bugless_stack.stop_service(previous)

    (hidden,) = await find(model, "trac:pv#2")
    assert hidden.component_id == secure.id
    assert report.restricted_unseen == []
    assert (
        "TracSecurePV: who of the people the restricted issues name may view it was not "
        "checked: /bugless.v1.Model/CheckViewers may not be called by service identity "
        "'import'"
    ) in report.warnings


async def test_a_model_without_check_viewers_leaves_a_warning_naming_it_to_upgrade(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, bugless_stack: LocalStack
) -> None:
    """A Model of a release before CheckViewers does not serve it (MethodNotServed).

    The people are not checked and the run imports, as when a Model refuses
    the call; the warning is the error's own, naming the Model to upgrade.
    Before, the import caught the call's GRPCError itself and said only "a
    release before this import's".
    """
    secure = await _component(model, "TracSecureNS", "ns-sec")
    ready = tmp_path / "model-without.json"
    process = spawn(
        "model-without-check-viewers",
        [sys.executable, *MODEL_WITHOUT_CHECK_VIEWERS, "model", "serve", "--port", "0",
         "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "model-without.log",
        ready_file=ready,
    )  # fmt: skip
    older = bugless_stack.wait_started("model", process)
    try:
        settings = make_settings(
            model=ServiceAddress("127.0.0.1", older.port),
            component_root="TracHiddenNS",
            restricted_component="TracSecureNS",
        )
        importer = TracImporter(str(_named_people(tmp_path, "ns")), {"project": "ns"})
        report = await run_import(importer, settings)
    finally:
        bugless_stack.stop_service(older)

    (hidden,) = await find(model, "trac:ns#2")
    assert hidden.component_id == secure.id
    assert report.restricted_unseen == []
    assert (
        "TracSecureNS: who of the people the restricted issues name may view it was not "
        "checked: the Model does not serve CheckViewers, so it is of a release older than its "
        "caller's: upgrade the Model first, as docs/upgrades.md orders"
    ) in report.warnings, report.warnings
