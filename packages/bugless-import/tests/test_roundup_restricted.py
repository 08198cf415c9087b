"""Roundup items its View permissions hide from ordinary readers stay restricted.

Roundup stores no "private" flag: a tracker restricts items in its schema,
with ``View`` permissions whose check function decides per item. This real
classic tracker gives issues a ``confidential`` and messages an ``internal``
property, and its ``User`` role views a confidential issue only on its nosy
list and an internal message only as its author. Before, the import (as the
admin, who views everything) brought both where everyone who reads the
component reads them. Now the issue is a restricted issue (left out and
named, or put into ``--restricted-component``), and the message and a file
of the issue that is hidden too are left out and named, their text never
sent.

The tracker's check on messages comes with a filter function, as Roundup's
documentation advises for a big class: the endpoint then asks the database
which messages the reader may view, as Roundup's own lists do, and never
runs the check once per message (it did, over every message of a tracker:
minutes on one with hundreds of thousands). The check logs each call to
show it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from import_support import MakeSettings, find, history
from roundup_support import ADMIN_PASSWORD, ROUNDUP_ADMIN, _as, _served

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_import import run_import
from bugless_import.sources.roundup import INTERFACES_PY, RoundupImporter
from bugless_proto import v1

#: The classic schema's plain View for users, and what this tracker has instead.
_PLAIN_VIEW = "    db.security.addPermissionToRole('User', 'View', cl)\n"
_SCHEMA = """
import os as _bugless_os


def _bugless_issue_visible(db, userid, itemid):
    return not db.issue.get(itemid, "confidential") or userid in db.issue.get(itemid, "nosy")


def _bugless_msg_visible(db, userid, itemid):
    with open(_bugless_os.path.join(db.config.TRACKER_HOME, "msg-checks.log"), "a") as log:
        log.write(itemid + "\\n")
    return not db.msg.get(itemid, "internal") or db.msg.get(itemid, "author") == userid


def _bugless_file_visible(db, userid, itemid):
    return not db.file.get(itemid, "internal") or db.file.get(itemid, "creator") == userid


def _bugless_msg_filter(db, userid, klass):
    return [{"filterspec": {"internal": False}}, {"filterspec": {"author": userid}}]


for _cl, _check, _filter in (("issue", _bugless_issue_visible, None),
                             ("msg", _bugless_msg_visible, _bugless_msg_filter),
                             ("file", _bugless_file_visible, None)):
    db.security.addPermissionToRole("User", db.security.addPermission(
        name="View", klass=_cl, check=_check, filter=_filter,
        description="confidential items: nosy only"))
"""


#: The ``User`` role as a Roundup before 2.1 has it: no ``filter_iter`` nor a
#: ``hasPermission`` of its own (its Security tested the role's permissions).
#: The import's account is an admin: serving it never asks ``User``'s role.
_BEFORE_2_1 = """

class _BuglessRoleBefore21(type(db.security.role["user"])):
    __slots__ = ()

    def __getattribute__(self, name):
        if name in ("filter_iter", "hasPermission"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)


db.security.role["user"].__class__ = _BuglessRoleBefore21
"""


def _install(home: Path) -> Path:
    """Issue 1 open to all, issue 2 confidential; issue 1's second message internal."""
    subprocess.run(
        [ROUNDUP_ADMIN, "-i", str(home), "install", "classic", "sqlite",
         "mail_domain=example.invalid,tracker_web=http://127.0.0.1:9/"],
        check=True, capture_output=True,
    )  # fmt: skip
    schema = (home / "schema.py").read_text(encoding="utf-8")
    schema = schema.replace(
        "issue = IssueClass(db, \"issue\",\n", "issue = IssueClass(db, \"issue\",\n"
        "                confidential=Boolean(),\n"
    ).replace("                inreplyto=String())", "                inreplyto=String(),\n"
              "                internal=Boolean())")  # fmt: skip
    schema = schema.replace('file = FileClass(db, "file",\n                name=String())',
                            'file = FileClass(db, "file",\n                name=String(),\n'
                            "                internal=Boolean())")  # fmt: skip
    assert (_PLAIN_VIEW in schema, schema.count("confidential"), schema.count("internal")) == (
        True,
        1,
        2,
    ), "the classic schema as this test knows it"
    schema = schema.replace(_PLAIN_VIEW, "    if cl == 'keyword':\n" + "    " + _PLAIN_VIEW)
    (home / "schema.py").write_text(schema + _SCHEMA, encoding="utf-8")
    (home / "interfaces.py").write_text(INTERFACES_PY, encoding="utf-8")
    subprocess.run(
        [ROUNDUP_ADMIN, "-i", str(home), "initialise", ADMIN_PASSWORD],
        check=True,
        capture_output=True,
    )
    db = _as(home, "admin")
    try:
        ann = db.user.create(username="ann", roles="User", address="ann@roundup.example.org")
        first = db.msg.create(content="The valve sticks.", author=ann, internal=False)
        secret = db.msg.create(content="Supplier X's part.", author=ann, internal=True)
        internal_file = db.file.create(name="contract.txt", content="terms", internal=True)
        public_file = db.file.create(name="photo.txt", content="a valve")
        db.issue.create(title="Valve sticks", messages=[first, secret], nosy=[ann],
                        files=[public_file, internal_file])  # fmt: skip
        hidden_msg = db.msg.create(content="Exploit details.", author=ann, internal=False)
        db.issue.create(title="Exploit in the uplink", messages=[hidden_msg], nosy=[ann],
                        confidential=True)  # fmt: skip
        db.commit()
    finally:
        db.close()
    (home / "msg-checks.log").unlink(missing_ok=True)  # creating a message runs it too
    return home


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracker of :func:`_install` on this Roundup."""
    return _install(tmp_path_factory.mktemp("roundup-restricted") / "tracker")


@pytest.fixture(scope="module")
def url(tracker: Path) -> Iterator[str]:
    """The tracker served by Roundup's WSGI application on a port it bound itself."""
    with _served(tracker) as address:
        yield address


@pytest.fixture
def options(tmp_path: Path) -> dict[str, str]:
    """Signed in as the admin, who views every item."""
    secret = tmp_path / "roundup-password"
    secret.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    return {"user": "admin", "password-file": str(secret)}


async def test_hidden_issues_messages_and_files_never_reach_the_component_everyone_reads(
    tracker: Path,
    url: str,
    options: dict[str, str],
    make_settings: MakeSettings,
    model: v1.ModelStub,
) -> None:
    importer = RoundupImporter(url, {**options, "tracker": "secret1"})
    report = await run_import(importer, make_settings(component_root="RoundupSecret1"))

    assert report.created == 1
    assert await find(model, "roundup:secret1#2") == []
    assert report.restricted_issues == [
        (
            "roundup:secret1#2",
            "an issue Roundup's View permissions hide from readers with the roles user",
        )
    ]
    (valve,) = await find(model, "roundup:secret1#1")
    entries = await history(model, valve.id)
    text = [e.comment for e in entries] + [valve.description]
    assert not [t for t in text if "Supplier" in t or "Exploit" in t]
    assert [a.name for e in entries for a in e.attachments] == ["photo.txt"]
    withheld = dict(report.withheld)
    assert withheld["issue1 msg2"].startswith("message by ")
    assert "hide it from the tracker's ordinary readers" in withheld["issue1 msg2"]
    assert withheld["issue1 file1"].startswith("file 'contract.txt' of ")
    assert "restricted issues not imported: 1" in report.render()
    assert not (tracker / "msg-checks.log").exists(), "the messages' check was run one by one"


async def test_a_tracker_with_an_older_interfaces_py_stops_the_run_saying_what_to_add(
    url: str, options: dict[str, str]
) -> None:
    importer = RoundupImporter(url, options)
    real = importer.get

    def before(path: str, **query: Any) -> Any:
        return None if path.startswith("bugless_hidden/") else real(path, **query)

    importer.get = before  # type: ignore[method-assign]
    with pytest.raises(FailedPrecondition, match="bugless_hidden/issue: no such endpoint"):
        next(importer.issues())


async def test_unchecked_restrictions_import_what_the_account_sees_where_no_endpoint_is(
    url: str, options: dict[str, str]
) -> None:
    """``restrictions=unchecked``: a tracker whose schema restricts nothing needs no endpoint."""
    with pytest.raises(InvalidArgument, match="restrictions= takes checked or unchecked"):
        RoundupImporter(url, {**options, "restrictions": "no"})
    importer = RoundupImporter(url, {**options, "restrictions": "unchecked"})
    real = importer.get

    def before(path: str, **query: Any) -> Any:
        assert not path.startswith("bugless_hidden/"), "not asked"
        return real(path, **query)

    importer.get = before  # type: ignore[method-assign]
    assert [i.restricted for i in importer.issues()] == ["", ""]
    assert importer.withheld == {}
    (warning,) = importer.warnings
    assert warning.startswith("--option restrictions=unchecked: Roundup's View permissions were")


async def test_a_roundup_before_2_1_is_judged_item_by_item_with_the_same_result(
    tmp_path: Path,
    options: dict[str, str],
    make_settings: MakeSettings,
    model: v1.ModelStub,
) -> None:
    """The class-level checks of Roundup 2.1+ are missing: each item is asked in turn.

    On such a tracker the endpoint asked the role's ``hasPermission`` and
    ``filter_iter``, which Roundup before 2.1 does not have, and Roundup
    answered 400 (an AttributeError), stopping the run. This tracker's
    ``User`` role lacks them as 2.0's does.
    """
    home = _install(tmp_path / "tracker")
    # After the set-up: creating an issue runs the nosy reactor, which asks
    # ann's (User's) permissions through the role, as 2.6's Security does.
    with (home / "schema.py").open("a", encoding="utf-8") as schema:
        schema.write(_BEFORE_2_1)
    with _served(home) as address:
        importer = RoundupImporter(address, {**options, "tracker": "secret21"})
        answer = importer.get("bugless_hidden/issue")
        assert answer == {"hidden": ["2"], "roles": ["user"], "per_item": True}
        report = await run_import(importer, make_settings(component_root="RoundupSecret21"))

    assert report.created == 1
    assert await find(model, "roundup:secret21#2") == []
    assert [i for i, _ in report.restricted_issues] == ["roundup:secret21#2"]
    (valve,) = await find(model, "roundup:secret21#1")
    entries = await history(model, valve.id)
    assert not [e for e in entries if "Supplier" in e.comment or "Exploit" in e.comment]
    assert [a.name for e in entries for a in e.attachments] == ["photo.txt"]
    assert sorted(dict(report.withheld)) == ["issue1 file1", "issue1 msg2"]
    checked = (home / "msg-checks.log").read_text(encoding="utf-8").split()
    assert sorted(set(checked), key=int) == ["1", "2", "3"], "every message asked in turn"
