"""A refusal gets "upgrade the Model first" when, and only when, an earlier Model is at fault.

A Model of a release before ``ImportedEntry.files_not_imported`` and
``relations_not_imported`` drops them unread, so an entry holding only them
is empty to it and refused by its place (``history[i]``). The import then
says to upgrade the Model first. This release's Model refuses an entry by
its place for another reason too (a description edit carrying a change):
there the advice would send the admin after the wrong fault. The real
Model, the earlier one (``model_before_files_not_imported.py``) on the same
database, and a Redmine served over loopback.
"""

from __future__ import annotations

import datetime
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from import_support import ADMIN, FIXTURES, MakeSettings, find
from redmine_server import Redmine, serve
from relation_support import KEY, REX, _detail, _journal

from bugless_core.clients import ServiceAddress, call
from bugless_core.errors import InvalidArgument
from bugless_dev.stack import LocalStack, RunningService
from bugless_import import run_import, runner
from bugless_import.report import ImportReport
from bugless_import.sources.redmine import RedmineImporter
from bugless_import.write_issues import REFUSED_ISSUE, _stops_at
from bugless_proto import v1

_THEN = datetime.datetime(2021, 6, 1, 9, 0, tzinfo=datetime.UTC)
_UPGRADE = "upgrade the Model first"


async def test_a_description_edit_with_files_not_imported_is_not_blamed_on_the_model(
    bugless_stack: LocalStack, model: v1.ModelStub
) -> None:
    """This release refuses it by its place ("changes no fields"): the refusal stands as it is.

    Before, any refusal of a whole entry holding files_not_imported said to
    upgrade the Model, though this Model knows the field.
    """
    tag = secrets.token_hex(3)
    component = await call(
        model.create_component, v1.CreateComponentRequest(caller=ADMIN, name=f"Edit{tag}")
    )
    left_out = v1.NotImportedFile(name="core.dump", reason="over the limit")
    external_id = f"trac:{tag}-1"
    request = v1.ImportIssueRequest(
        caller=v1.Caller(user_id=ADMIN.user_id, admin=True, import_issues=True),
        external_id=external_id,
        fields=v1.IssueFields(title="Edited", component_id=component.id),
        reporter="src-ann",
        created_at=_THEN,
        history=[
            v1.ImportedEntry(
                author="src-ann", created_at=_THEN + datetime.timedelta(hours=1),
                comment="The new description.", edits_description=True,
                files_not_imported=[left_out],
            )
        ],
    )  # fmt: skip
    channel = bugless_stack.client_address("model", identity="import").channel()
    try:
        importer = bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
        with pytest.raises(InvalidArgument) as refused, _stops_at(external_id, request):
            await call(importer.import_issue, request)
    finally:
        channel.close()
    assert refused.value.message == (
        "history[0]: a description edit changes no fields (give them their own entry)"
    )
    assert _UPGRADE not in refused.value.message
    assert refused.value.metadata[REFUSED_ISSUE] == external_id
    assert await find(model, external_id) == []


@pytest.fixture
def redmine(tmp_path: Path) -> Iterator[Redmine]:
    """7402's parent becomes 7401 after 7401's became 7402: a cycle Redmine's journal allowed."""
    root = tmp_path / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    template = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))["issue"]
    (root / "issues" / "12.json").unlink()
    journals: dict[int, list[dict[str, Any]]] = {
        7401: [_journal(7401, 1, REX, _detail("attr", "parent_id", new=7402))],
        7402: [_journal(7402, 2, REX, _detail("attr", "parent_id", new=7401))],
    }
    for number, entries in journals.items():
        issue = {**template, "id": number, "subject": f"Issue {number}", "journals": entries,
                 "created_on": "2019-04-30T09:00:00Z", "updated_on": "2019-05-02T09:00:00Z",
                 "status": {"id": 1, "name": "New"}, "closed_on": None, "attachments": [],
                 "relations": []}  # fmt: skip
        (root / "issues" / f"{number}.json").write_text(
            json.dumps({"issue": issue}), encoding="utf-8"
        )
    with serve(Redmine(root, KEY)) as server:
        yield server


async def test_an_earlier_model_refusing_an_entry_left_without_its_relations_is_named(
    redmine: Redmine,
    earlier_model: RunningService,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    """The retry without relation changes leaves an entry of only why: upgrade the Model first.

    The Model refuses 7402's parent cycle; the run sends 7402 again, its
    entry holding only relations_not_imported, which the earlier Model drops
    ("an entry needs a comment, a field change or a file"). Before, the
    refusal was judged against the first request, whose entry changed the
    parent, and stood bare.
    """
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    address = earlier_model.address
    assert address is not None
    settings = make_settings(model=ServiceAddress(address.host, address.port))

    with pytest.raises(InvalidArgument) as refused:
        await run_import(RedmineImporter(redmine.url, {"api-key-file": str(key_file)}), settings)

    assert refused.value.metadata[REFUSED_ISSUE] == "redmine:7402"
    assert "history[0]: an entry needs a comment, a field change or a file" in (
        refused.value.message
    )
    assert refused.value.message.endswith(
        "; that entry records only why its relation changes were left out "
        "(ImportedEntry.relations_not_imported), which a Model of a release before this "
        "import's does not know: upgrade the Model first, as docs/upgrades.md orders, then run "
        "the import again"
    )
    (issue,) = await find(model, "redmine:7402")
    assert issue.parent_id == 0


async def test_a_refused_retry_leaves_no_warning_that_the_issue_was_imported(
    redmine: Redmine,
    earlier_model: RunningService,
    make_settings: MakeSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ "imported without their relation changes" is said only once the retry is written.

    The earlier Model refuses 7402's retry, so nothing of 7402 is imported.
    Before, the warning (and the count of refused relation changes) was
    added before the retry was sent, so the run's report said it was. The
    report the run fills is read by keeping it as it is made.
    """
    made: list[ImportReport] = []

    class KeptReport(ImportReport):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runner, "ImportReport", KeptReport)
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    address = earlier_model.address
    assert address is not None
    settings = make_settings(model=ServiceAddress(address.host, address.port))

    with pytest.raises(InvalidArgument) as refused:
        await run_import(RedmineImporter(redmine.url, {"api-key-file": str(key_file)}), settings)

    assert refused.value.metadata[REFUSED_ISSUE] == "redmine:7402"
    (report,) = made
    assert not [w for w in report.warnings if "without their relation changes" in w], (
        report.warnings
    )
