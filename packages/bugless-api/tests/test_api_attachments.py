"""Attachments through the API with real certificates: client, ACLs, search, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import subprocess
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, signed_in

from bugless_api.client import BuglessClient
from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied
from bugless_dev.processes import BUGLESS_COMMAND
from bugless_proto import v1
from bugless_testing.rss import MIB, peak_rss, reset_peak, rss


async def test_a_file_goes_up_and_comes_down_by_username(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    """Uploads stream through the gateway; uploaders come back as usernames."""
    robot, outsider = await signed_in(connect_as, "robot", "outsider")
    component = await robot.create_component(
        f"Files-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="robot"), role=v1.Role.ADMIN)],
    )
    issue = await robot.create_issue("it crashed", component.id)
    source = tmp_path / "crash.log"
    content = secrets.token_bytes(700_000)
    source.write_bytes(content)
    done = await robot.attach(issue.id, source, comment="the log")
    attachment = done.attachment
    assert attachment is not None
    assert done.entry is not None
    assert (attachment.name, attachment.size, attachment.uploader) == (
        "crash.log",
        len(content),
        "robot",
    )
    assert attachment.sha256 == hashlib.sha256(content).hexdigest()
    assert [a.uploader for a in done.entry.attachments] == ["robot"]
    assert [a.id for a in await robot.list_attachments(issue.id)] == [attachment.id]
    target = tmp_path / "copy.log"
    got = await robot.download_attachment(attachment.id, target)
    assert got.id == attachment.id
    assert target.read_bytes() == content
    history = await robot.list_history(issue.id)
    assert [a.uploader for a in history.entries[-1].attachments] == ["robot"]
    found = await robot.search_issues(f"componentid:{component.id} attachment:crash")
    assert [i.id for i in found.issues] == [issue.id]
    found = await robot.search_issues(f"componentid:{component.id} -has:attachment")
    assert list(found.issues) == []

    for call in (
        outsider.get_attachment(attachment.id),
        outsider.download_attachment(attachment.id, tmp_path / "stolen"),
        outsider.list_attachments(issue.id),
        outsider.delete_attachment(attachment.id),
        outsider.attach(issue.id, source),
    ):
        with pytest.raises(NotFound):
            await call
    assert not (tmp_path / "stolen").exists()

    deleted = await robot.delete_attachment(attachment.id)
    assert deleted.entry is not None
    assert deleted.entry.deleted_attachment_id == attachment.id
    assert await robot.list_attachments(issue.id) == []


async def test_only_the_uploader_or_an_admin_deletes(connect_as: ConnectAs, tmp_path: Path) -> None:
    robot, outsider = await signed_in(connect_as, "robot", "outsider")
    component = await robot.create_component(f"Shared-{secrets.token_hex(3)}")
    issue = await robot.create_issue("open component", component.id)
    source = tmp_path / "note.txt"
    source.write_text("hello")
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    with pytest.raises(PermissionDenied, match="uploader"):
        await outsider.delete_attachment(done.attachment.id)


async def test_a_file_that_cannot_be_read_is_the_callers_error_not_the_apis(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    """A local read failure names the file (a usage error), never "the API is unreachable"."""
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Unread-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a file that cannot be read", component.id)
    # A regular file that opens but whose first read fails (EIO), even for
    # root: the failure comes mid-call, after the header has been sent.
    unreadable = Path("/proc/self/mem")
    with pytest.raises(InvalidArgument, match="/proc/self/mem: Input/output error") as caught:
        await robot.attach(issue.id, unreadable)
    assert caught.value.metadata["origin"] == "client"
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(InvalidArgument, match=r"gone\.log: No such file") as caught:
        await robot.attach(issue.id, tmp_path / "gone.log")
    assert caught.value.metadata["origin"] == "client"
    assert await robot.list_attachments(issue.id) == []
    # The call was abandoned, not the connection: the next upload goes through.
    readable = tmp_path / "fine.log"
    readable.write_bytes(b"fine")
    done = await robot.attach(issue.id, readable)
    assert done.attachment is not None
    assert [a.name for a in await robot.list_attachments(issue.id)] == ["fine.log"]


async def test_a_destination_that_cannot_be_written_is_the_callers_error_and_leaves_no_file(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    """Local write failures name the destination and what was wrong, as attach's read ones do."""
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Unwritten-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a file that cannot be written", component.id)
    source = tmp_path / "source.bin"
    content = secrets.token_bytes(300_000)
    source.write_bytes(content)
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    attachment_id = done.attachment.id
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    # sysfs refuses new files even to root, who may write to any chmod-ed directory.
    missing = downloads / "missing" / "out.bin"
    refusals = {
        missing: f"{missing}: cannot be written: no directory {missing.parent}",
        downloads: f"{downloads}: is a directory",
        Path("/sys/out.bin"): "/sys/out.bin: cannot be written: Permission denied",
        Path("/dev/null"): "/dev/null: not a regular file",
    }
    for destination, message in refusals.items():
        with pytest.raises(InvalidArgument) as caught:
            await robot.download_attachment(attachment_id, destination)
        assert (str(caught.value), caught.value.metadata["origin"]) == (message, "client")
    # A disk error mid-download (the file size limit stands in for a full
    # disk: the write fails with EFBIG once 64 KiB are on disk).
    target = downloads / "out.bin"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(InvalidArgument, match=r"out\.bin: cannot be written: File too large"):
            await robot.download_attachment(attachment_id, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(downloads.iterdir()) == []
    # The call was abandoned, not the connection: the next download goes through.
    await robot.download_attachment(attachment_id, target)
    assert target.read_bytes() == content
    assert list(downloads.iterdir()) == [target]


async def test_a_caller_in_the_upload_header_is_refused(connect_as: ConnectAs) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    header = v1.UploadAttachmentHeader(
        caller=v1.Caller(user_id="someone-else"), issue_id=1, name="x"
    )
    with pytest.raises(InvalidArgument, match="caller"):
        await robot._call(  # the raw call: the client never sets a caller
            robot.issues.upload_attachment,
            [v1.UploadAttachmentRequest(header=header)],
            idempotent=False,
        )


async def test_import_content_is_refused_by_the_gateway_naming_the_field(
    connect_as: ConnectAs,
) -> None:
    """``import_content`` (content for an import, on no issue) never goes through the API.

    ``bugless import`` stores its files on the Model directly; the gateway
    refuses the flag outright rather than leaving it to the Model's
    permission check (PERMISSION_DENIED before).
    """
    (robot,) = await signed_in(connect_as, "robot")
    header = v1.UploadAttachmentHeader(
        name="imported.txt", content_type="text/plain", size=5, import_content=True
    )
    with pytest.raises(InvalidArgument) as refused:
        await robot._call(
            robot.issues.upload_attachment,
            [v1.UploadAttachmentRequest(header=header), v1.UploadAttachmentRequest(chunk=b"bytes")],
            idempotent=False,
        )
    assert refused.value.message.startswith("header.import_content: not through the API")
    assert refused.value.metadata.get("field") == "header.import_content"


def test_the_cli_attaches_lists_and_downloads(
    served_api: dict[str, str],
    tmp_path: Path,
) -> None:
    env = served_api

    def bugless(*args: str) -> str:
        result = subprocess.run(
            [*BUGLESS_COMMAND, *args], env=env, capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    component = json.loads(bugless("component", "create", f"CliFiles-{os.getpid()}", "--json"))
    issue = json.loads(
        bugless("issue", "create", "--title", "x", "--component", str(component["id"]), "--json")
    )
    source = tmp_path / "trace.txt"
    source.write_bytes(b"line\n" * 100_000)
    attached = json.loads(bugless("issue", "attach", str(issue["id"]), str(source), "--json"))
    assert (attached["name"], attached["size"], attached["uploader"]) == (
        "trace.txt",
        500_000,
        "cli-bot",
    )
    table = bugless("issue", "attachments", str(issue["id"]))
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "SIZE"]
    assert "trace.txt" in table.splitlines()[1]
    out = tmp_path / "out.txt"
    bugless("attachment", "get", attached["id"], "-o", str(out))
    assert out.read_bytes() == source.read_bytes()

    # Deleted, its content is gone for good: "not found" (3), which a script
    # does not retry, rather than 1, a server error it might.
    # The reply names what went, as the history does from then on.
    said = bugless("attachment", "delete", attached["id"])
    assert f"deleted  trace.txt (id {attached['id']})" in said.splitlines()
    history = bugless("issue", "history", str(issue["id"]))
    assert f"    deleted attachment trace.txt (id {attached['id']})" in history.splitlines()
    gone = subprocess.run(
        [*BUGLESS_COMMAND, "attachment", "get", attached["id"], "-o", str(tmp_path / "again")],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert gone.returncode == 3, gone.stderr
    assert "was deleted" in gone.stderr
    assert not (tmp_path / "again").exists()


async def test_api_and_model_memory_stays_bounded_while_a_large_file_moves(
    served_api: dict[str, str],
    bots: Bots,
    tmp_path: Path,
) -> None:
    """48 MiB up and down through real ``bugless api serve`` and Model processes."""
    size = 48 * MIB
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(size // MIB):
            out.write(secrets.token_bytes(MIB))
    api = next(s for s in bots.stack.services if s.name == "api-by-env")
    pids = {"api": api.process.pid, "model": bots.stack.first("model").process.pid}
    env = served_api
    async with BuglessClient(
        env["BUGLESS_API"], cert=env["BUGLESS_CERT"], key=env["BUGLESS_KEY"],
        ca=env["BUGLESS_CA"], timeout=120,
    ) as client:  # fmt: skip
        component = await client.create_component(f"Big-{secrets.token_hex(3)}")
        issue = await client.create_issue("a large file", component.id)
        before = {name: rss(pid) for name, pid in pids.items()}
        for pid in pids.values():
            reset_peak(pid)
        done = await client.attach(issue.id, source)
        assert done.attachment is not None
        target = tmp_path / "back.bin"
        await client.download_attachment(done.attachment.id, target)
        peaks = {name: peak_rss(pid) for name, pid in pids.items()}
    assert hashlib.sha256(target.read_bytes()).hexdigest() == done.attachment.sha256
    for name, peak in peaks.items():
        growth = peak - before[name]
        assert growth < 40 * MIB, f"{name} grew by {growth / MIB:.0f} MiB for a 48 MiB file"
