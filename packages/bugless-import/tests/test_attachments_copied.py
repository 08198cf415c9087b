"""A Trac ticket's attachments come into bugless as its files, at their time, by their uploader.

Before, every importer left the files behind and the report only counted
them ("attachments NOT copied"). Now a real Trac environment's attachments
(Trac's ``Attachment`` API finds them in ``files/attachments/ticket/…``)
are copied through a real Model on PostgreSQL, over mutual TLS: the bytes,
name, uploader (a matched account or a placeholder) and time come back
through GetAttachment/DownloadAttachment, the timeline shows each file at
its original place, a second run copies nothing, a file over the Model's
limit or missing from disk is reported by name and skipped (its entry says
so), and the web's issue page lists the file. A Redmine issue's attachments
come in the same way (test_redmine_attachments_copied).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from import_support import (
    ADMIN,
    PASSWORD,
    SAMPLE_LOG,
    SAMPLE_PNG,
    SMALL_FILE_LIMIT,
    MakeSettings,
    attachment_content,
    find,
    history,
    not_imported_files,
    usernames,
)

from bugless_core.attachments import AttachmentSettings, check_content_type, file_too_large
from bugless_core.clients import ServiceAddress
from bugless_core.errors import InvalidArgument
from bugless_core.importer import SourceIssue
from bugless_core.issue_references import imported_file_link
from bugless_dev.stack import LocalStack, RunningService
from bugless_import import run_import
from bugless_import.files import _refuses_the_file
from bugless_import.sources.trac import TracImporter
from bugless_import.write_issues import REFUSED_ISSUE
from bugless_proto import v1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.attachment import Attachment
    from trac.env import Environment
    from trac.ticket.model import Ticket

T0 = datetime(2017, 5, 2, 9, 0, tzinfo=UTC)


def _hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class _Trac41(TracImporter):
    """Trac under a name of its own (the session's other Trac tests own theirs)."""

    name = "trac41"


def _attach(env: Environment, author: str, hours: float, name: str, content: bytes) -> str:
    attachment = Attachment(env, "ticket", 1)
    attachment.author, attachment.description = author, f"the {name}"
    attachment.insert(name, io.BytesIO(content), len(content), t=_hours(hours))
    return str(attachment.path)


def _environment(path: Path) -> Environment:
    """Ticket 1: a comment, then four files (one too large, one gone from disk)."""
    env = Environment(str(path), create=True, options=[("trac", "database", "sqlite:db/trac.db")])
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Engine does not stop", "description": "It keeps going.",
         "reporter": "ann", "component": "component1", "status": "new"}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    ticket.save_changes("ann", "Logs follow.", when=_hours(1))
    _attach(env, "ann", 2, "engine log.txt", SAMPLE_LOG)
    _attach(env, "zed", 3, "screen.png", SAMPLE_PNG)
    _attach(env, "ann", 4, "core.dump", b"\0" * (SMALL_FILE_LIMIT + 1))
    os.remove(_attach(env, "ann", 5, "lost.txt", b"gone before the import"))
    ticket.save_changes("ann", "Fixed.", when=_hours(6))
    return env


async def _issue_page(stack: LocalStack, issue_id: int) -> httpx.Response:
    """The web's page of ``issue_id``, to the importer (an admin), signed in on a new replica."""
    web = stack.start_web(name="web-import-files")
    try:
        async with httpx.AsyncClient(base_url=str(web.url), timeout=30) as browser:
            form = await browser.get("/signin")
            token = re.search(r'name="csrf-token" content="([^"]+)"', form.text)
            assert token is not None, "the sign-in page carries no CSRF token"
            signed_in = await browser.post(
                "/signin",
                data={"username": "importer", "password": PASSWORD, "_csrf": token.group(1)},
            )
            assert signed_in.status_code == 303, signed_in.text[:500]
            return await browser.get(f"/issues/{issue_id}")
    finally:
        stack.stop_service(web)


async def test_trac_attachments_are_copied_once_at_their_time_by_their_uploader(
    small_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    bugless_stack: LocalStack,
    tmp_path: Path,
) -> None:
    env = _environment(tmp_path / "env")
    importer = _Trac41(env.path, {})
    settings = small_settings()

    dry = await run_import(importer, small_settings(dry_run=True))
    total = (
        len(SAMPLE_LOG) + len(SAMPLE_PNG) + SMALL_FILE_LIMIT + 1 + len(b"gone before the import")
    )
    assert (dry.attachments, dry.attachment_issues, dry.attachment_bytes) == (4, 1, total)
    assert (
        f"attachments: 4 files on 1 issue, 4.5 KiB ({total} bytes) would be copied" in dry.render()
    )
    assert dry.files_sent == 0

    report = await run_import(importer, settings)
    assert report.created == 1
    assert (report.files_sent, report.bytes_sent) == (2, len(SAMPLE_LOG) + len(SAMPLE_PNG))
    skipped = {name: why for _, name, why in report.files_skipped}
    assert sorted(skipped) == ["core.dump", "lost.txt"]
    assert "limit" in skipped["core.dump"]
    assert "unreadable" in skipped["lost.txt"]
    assert "trac41:1: 'core.dump' not copied" in report.render()

    (issue,) = await find(model, "trac41:1")
    listed = await model.list_attachments(
        v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
    )
    files = list(listed.attachments)
    assert [(f.name, f.size, f.created_at) for f in files] == [
        ("engine log.txt", len(SAMPLE_LOG), _hours(2)),
        ("screen.png", len(SAMPLE_PNG), _hours(3)),
    ]
    assert await usernames(auth, [f.uploader for f in files]) == ["ann", "zed@trac41"]
    got, content = await attachment_content(bugless_stack, files[0].id)
    assert content == SAMPLE_LOG
    assert got.content_type == "text/plain"
    assert (await attachment_content(bugless_stack, files[1].id))[1] == SAMPLE_PNG
    one = await model.get_attachment(
        v1.GetAttachmentRequest(caller=ADMIN, attachment_id=files[1].id)
    )
    assert (one.name, one.content_type, one.created_at) == ("screen.png", "image/png", _hours(3))

    # The timeline: each file at its place, the source's description the
    # file's own (no comment of its entry); a file left out keeps its
    # entry, which records it as not imported, with why: no comment either.
    entries = await history(model, issue.id)
    shown = [(e.created_at, e.comment, [a.name for a in e.attachments]) for e in entries[1:]]
    assert shown[:3] == [
        (_hours(1), "Logs follow.", []),
        (_hours(2), "", ["engine log.txt"]),
        (_hours(3), "", ["screen.png"]),
    ]
    assert [a.description for e in entries for a in e.attachments] == [
        "the engine log.txt",
        "the screen.png",
    ]
    assert [f.description for f in files] == ["the engine log.txt", "the screen.png"]
    # The description, "Logs follow." and "Fixed.": neither a described
    # file nor a file left out is a comment (each was one before).
    assert issue.comment_count == 3
    assert shown[3:] == [(_hours(4), "", []), (_hours(5), "", []), (_hours(6), "Fixed.", [])]
    assert [not_imported_files(e) for e in entries[4:6]] == [
        [f"core.dump ({skipped['core.dump']}): the core.dump"],
        [f"lost.txt ({skipped['lost.txt']}): the lost.txt"],
    ]
    assert all(e.imported_from == "trac41:1" for e in entries)

    # Again: nothing sent; a refresh sends no file the Model holds for the
    # issue (it would attach nothing twice anyway) and attaches nothing.
    again = await run_import(importer, settings)
    assert (again.done_before, again.files_sent, again.entries_written) == (1, 0, 0)
    refreshed = await run_import(importer, small_settings(refresh=True))
    assert (refreshed.unchanged, refreshed.entries_written) == (1, 0)
    assert (refreshed.files_sent, refreshed.bytes_sent) == (0, 0)
    listed = await model.list_attachments(
        v1.ListAttachmentsRequest(caller=ADMIN, issue_id=issue.id)
    )
    assert [f.id for f in listed.attachments] == [f.id for f in files]

    # The web's issue page shows the files, each with its description, and
    # the files left out by name.
    page = await _issue_page(bugless_stack, issue.id)
    assert page.status_code == 200, page.text[:500]
    assert page.text.count('<span class="field">Source files not imported</span>') == 2
    assert "core.dump (" in page.text
    assert "engine log.txt" in page.text
    assert page.text.count('<div class="attachment-description markdown"><p>the screen.png') == 2
    assert "screen.png" in page.text
    assert f"/attachments/{files[0].id}" in page.text


class _Trac42(TracImporter):
    name = "trac42"


class _Trac42Before(_Trac42):
    """The importer of a release that did not copy files (nor record that it did not)."""

    def issues(self) -> Iterator[SourceIssue]:
        for issue in super().issues():
            yield dataclasses.replace(issue, attachments=())


async def test_a_refresh_of_an_issue_imported_before_files_were_copied_keeps_its_history(
    small_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """Its history position counts no file entries: adding them now would repeat entries."""
    env = _environment(tmp_path / "env")
    settings = small_settings()
    assert (await run_import(_Trac42Before(env.path, {}), settings)).created == 1
    done = settings.state_dir / "trac42-done.jsonl"
    records = [json.loads(line) for line in done.read_text(encoding="utf-8").splitlines()]
    assert [r.pop("files") for r in records] == [True]  # what that release wrote: no "files"
    done.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (issue,) = await find(model, "trac42:1")
    before = await history(model, issue.id)

    refreshed = await run_import(_Trac42(env.path, {}), small_settings(refresh=True))
    assert (refreshed.unchanged, refreshed.entries_written, refreshed.files_sent) == (1, 0, 0)
    assert {why for *_, why in refreshed.files_skipped} == {
        "the issue was imported before files were copied"
    }
    assert await history(model, issue.id) == before


def test_only_a_refusal_of_the_file_itself_is_remembered() -> None:
    """Its type or size, as the Model's own checks word it; not an upload that went short."""
    settings = AttachmentSettings(denied_types=("application/x-msdownload",))
    for what in ("content", "header.content_type"):
        with pytest.raises(InvalidArgument) as refused:
            check_content_type(settings, "application/x-msdownload", what)
        assert _refuses_the_file(refused.value), refused.value.message
    assert _refuses_the_file(file_too_large(4096))
    assert not _refuses_the_file(InvalidArgument("header.size: 10 bytes declared, 5 were sent"))


async def test_a_trac_text_naming_a_file_the_model_refused_says_so_instead_of_linking_it(
    small_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """``attachment:core.dump`` of a refused file is its name and why, not a link.

    Before, the text linked bugless's copy by the file's SHA-256 although
    there was none, and the web sent the reader on to the issue's files, as
    if it were among them. A file copied keeps its link.
    """
    env = Environment(
        str(tmp_path / "env"), create=True, options=[("trac", "database", "sqlite:db/trac.db")]
    )
    ticket = Ticket(env)
    ticket.populate(
        {"summary": "Core dumps", "status": "new", "reporter": "ann",
         "description": "See attachment:core.dump and attachment:\"engine log.txt\"."}
    )  # fmt: skip
    ticket.insert(when=_hours(0))
    dump = b"\0" * (SMALL_FILE_LIMIT + 1)
    _attach(env, "ann", 1, "core.dump", dump)
    _attach(env, "ann", 2, "engine log.txt", SAMPLE_LOG)
    ticket.save_changes(
        "ann", "The [[Image(core.dump)]] [attachment:core.dump dump].", when=_hours(3)
    )

    report = await run_import(_Trac41(env.path, {"project": "refused"}), small_settings())
    (why,) = [why for _, name, why in report.files_skipped if name == "core.dump"]
    assert "limit" in why
    (issue,) = await find(model, "trac41:refused#1")
    log_link = imported_file_link("trac41:refused#1", hashlib.sha256(SAMPLE_LOG).hexdigest())
    assert issue.description == (
        f"See attachment:core.dump (not imported: {why}) and "
        f'[attachment:"engine log.txt"]({log_link}).'
    )
    (comment,) = [e.comment for e in await history(model, issue.id) if e.created_at == _hours(3)]
    assert comment == f"The core.dump (not imported: {why}) dump (not imported: {why})."
    assert hashlib.sha256(dump).hexdigest() not in issue.description + comment


@pytest.mark.parametrize("batch_size", [0, 50])
async def test_a_model_before_files_not_imported_is_named_to_be_upgraded_first(
    batch_size: int,
    make_settings: MakeSettings,
    earlier_model: RunningService,
    model: v1.ModelStub,
    tmp_path: Path,
) -> None:
    """A Model of an earlier release refuses an entry of files not copied: upgrade it first.

    It does not know ImportedEntry.files_not_imported, so the entry is
    empty to it ("an entry needs a comment, a field change or a file");
    before, the run stopped with that alone, as if the source were at fault.
    """
    env = Environment(
        str(tmp_path / "env"), create=True, options=[("trac", "database", "sqlite:db/trac.db")]
    )
    ticket = Ticket(env)
    ticket.populate({"summary": "Dumps", "status": "new", "reporter": "ann"})
    ticket.insert(when=_hours(0))
    _attach(env, "ann", 1, "core.dump", b"\0" * (SMALL_FILE_LIMIT + 1))
    project = f"earlier{batch_size}"
    address = earlier_model.address
    assert address is not None
    settings = make_settings(
        model=ServiceAddress(address.host, address.port), batch_size=batch_size
    )

    with pytest.raises(InvalidArgument) as refused:
        await run_import(_Trac41(env.path, {"project": project}), settings)

    assert refused.value.metadata[REFUSED_ISSUE] == f"trac41:{project}#1"
    assert "history[0]: an entry needs a comment, a field change or a file" in str(
        refused.value.message
    )
    assert refused.value.message.endswith(
        "; that entry records only files the import could not copy "
        "(ImportedEntry.files_not_imported), which a Model of a release before this import's "
        "does not know: upgrade the Model first, as docs/upgrades.md orders, then run the "
        "import again"
    )
    assert await find(model, f"trac41:{project}#1") == []
