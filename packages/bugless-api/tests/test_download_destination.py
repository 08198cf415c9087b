"""Downloads to one destination at once: one of them ends up there, whole.

Through the real API over mutual TLS, on the real Model. Each download
writes a temporary file of its own beside the destination, so two at once
never write into one file (they once shared ``.NAME.part``: a mix, or a
rename that found its file already renamed away).

A download told not to replace (``attachment get`` without ``-o`` or
``--force``) keeps a file that appears at its destination while it runs:
the real client's own download stream is wrapped to create that file after
the first chunk arrived, between the client's check before the download
and its last step (it used to be renamed over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, signed_in

from bugless_api.cli.attachments import download_here
from bugless_api.client import BuglessClient, RetryPolicy
from bugless_api.client._attachments import _copy_exclusive
from bugless_api.server import RunningApi
from bugless_core.cli import exit_status_of
from bugless_core.errors import AlreadyExists
from bugless_proto import v1

#: Each file: many chunks, so the two downloads interleave.
SIZE = 4 * 1024 * 1024


async def test_two_downloads_to_one_destination_leave_one_of_them_whole(
    connect_as: ConnectAs, tmp_path: Path
) -> None:
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Raced-{secrets.token_hex(3)}")
    issue = await robot.create_issue("two files, one destination", component.id)
    contents: dict[int, bytes] = {}
    for name in ("a.bin", "b.bin"):
        source = tmp_path / name
        source.write_bytes(secrets.token_bytes(SIZE))
        done = await robot.attach(issue.id, source)
        assert done.attachment is not None
        contents[done.attachment.id] = source.read_bytes()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    target = downloads / "out.bin"
    umask = os.umask(0o027)
    try:
        for _ in range(3):
            await asyncio.gather(
                *(robot.download_attachment(attachment_id, target) for attachment_id in contents)
            )
            assert target.read_bytes() in contents.values()
            assert list(downloads.iterdir()) == [target]  # no temporary file left
    finally:
        os.umask(umask)
    # The mode any new file there gets (0o666 less the umask), not mkstemp's 0o600.
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


class _FileAppearsMidway(BuglessClient):
    """The real client; ``appears`` is created once the download's first chunk is written.

    ``download_attachment`` checks its destination before asking for the
    stream and puts the file in place after it ended, so a file created
    here appears between the two every time, not by timing.
    """

    appears: Path | None = None
    content = b"made during the download\n"

    def arm(self, path: Path) -> None:
        """Create ``path`` during the next download."""
        self.appears = path

    def fired(self) -> bool:
        """Whether the file was created since :meth:`arm`."""
        return self.appears is None

    async def iter_attachment(
        self, attachment_id: int, *, offset: int = 0
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        async for part in super().iter_attachment(attachment_id, offset=offset):
            yield part
            if part.chunk and self.appears is not None:
                self.appears.write_bytes(self.content)
                self.appears = None


async def test_a_file_that_appears_during_the_download_is_kept_without_o_or_force(
    api: RunningApi, bots: Bots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the finished download was renamed over it (``os.replace``)."""
    client = _FileAppearsMidway(
        f"127.0.0.1:{api.port}",
        cert=bots["robot"].cert,
        key=bots["robot"].key,
        ca=bots.stack.pki.ca_file,
        timeout=30,
        retry=RetryPolicy(attempts=1),
    )
    async with client:
        component = await client.create_component(f"Appears-{secrets.token_hex(3)}")
        issue = await client.create_issue("a file appears meanwhile", component.id)
        source = tmp_path / "report.txt"
        source.write_bytes(secrets.token_bytes(SIZE))
        done = await client.attach(issue.id, source)
        assert done.attachment is not None
        attachment_id = done.attachment.id
        here = tmp_path / "here"
        here.mkdir()
        monkeypatch.chdir(here)
        mine = here / "report.txt"

        # attachment get ID: the CLI's download, on this client.
        client.arm(mine)
        with pytest.raises(AlreadyExists) as refused:
            await download_here(client, attachment_id, None, force=False)
        assert client.fired()  # it did appear midway
        message = refused.value.message
        assert "report.txt already exists here and was left as it is" in message, message
        assert "-o" in message, message
        assert "--force" in message, message
        assert exit_status_of(refused.value, answered_by_service=True) == 4
        assert mine.read_bytes() == _FileAppearsMidway.content
        assert list(here.iterdir()) == [mine]  # the downloaded temporary file removed

        # The client alone, told not to replace: the same, in its own words.
        mine.unlink()
        client.arm(mine)
        with pytest.raises(AlreadyExists, match=r"report\.txt already exists and was left"):
            await client.download_attachment(attachment_id, mine, replace=False)
        assert client.fired()
        assert mine.read_bytes() == _FileAppearsMidway.content
        assert list(here.iterdir()) == [mine]

        # -o and --force name the file on purpose: one that appears is replaced.
        for output, force in ((Path("report.txt"), False), (None, True)):
            mine.unlink()
            client.arm(mine)
            _, written = await download_here(client, attachment_id, output, force=force)
            assert client.fired()
            assert written == Path("report.txt")
            assert mine.read_bytes() == source.read_bytes()
            assert list(here.iterdir()) == [mine]

        # Nothing there: the download is put in place (by a hard link), the
        # temporary file gone, with the mode any new file gets.
        mine.unlink()
        umask = os.umask(0o027)
        try:
            await client.download_attachment(attachment_id, mine, replace=False)
        finally:
            os.umask(umask)
        assert mine.read_bytes() == source.read_bytes()
        assert list(here.iterdir()) == [mine]
        assert mine.stat().st_nlink == 1
        assert stat.S_IMODE(mine.stat().st_mode) == 0o640


@contextlib.contextmanager
def _append_only(directory: Path) -> Iterator[None]:
    """``directory`` takes new entries (files, hard links) but lets none be removed.

    ``chattr +a``: how a real directory refuses removals to root too
    (read-only mode bits would not stop root, who runs CI here). It needs
    CAP_LINUX_IMMUTABLE and a filesystem with the attribute (ext4, xfs,
    btrfs, tmpfs).
    """
    made = subprocess.run(
        ["chattr", "+a", str(directory)], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, f"this test needs root to run chattr +a: {made.stderr}"
    try:
        yield
    finally:
        subprocess.run(["chattr", "-a", str(directory)], check=True)


async def test_a_temporary_file_that_cannot_be_removed_leaves_the_download_in_place(
    connect_as: ConnectAs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hard link succeeds, the temporary file's removal does not: a success and a warning.

    Before, ``attachment get`` reported the target "cannot be written"
    (exit 2) while it was there, whole.
    """
    (robot,) = await signed_in(connect_as, "robot")
    component = await robot.create_component(f"Leftover-{secrets.token_hex(3)}")
    issue = await robot.create_issue("a temporary file stays", component.id)
    source = tmp_path / "notes.txt"
    source.write_bytes(secrets.token_bytes(300_000))
    done = await robot.attach(issue.id, source)
    assert done.attachment is not None
    here = tmp_path / "append-only"
    here.mkdir()
    monkeypatch.chdir(here)
    with _append_only(here), caplog.at_level(logging.WARNING, logger="bugless.client"):
        attachment, written = await download_here(robot, done.attachment.id, None, force=False)
    assert (attachment.id, written) == (done.attachment.id, Path("notes.txt"))
    assert (here / "notes.txt").read_bytes() == source.read_bytes()
    (leftover,) = [path for path in here.iterdir() if path.name != "notes.txt"]
    assert leftover.name.startswith(".notes.txt.")
    assert leftover.name.endswith(".part")
    (warning,) = [r for r in caplog.records if r.name == "bugless.client"]
    assert warning.levelno == logging.WARNING
    assert f"notes.txt is written, but its temporary file {leftover.name} " in warning.getMessage()
    assert "could not be removed (Operation not permitted)" in warning.getMessage()


def test_the_copy_without_hard_links_never_replaces_a_file(tmp_path: Path) -> None:
    """The fallback where a filesystem has no hard links (none here to run it on)."""
    source = tmp_path / "download.part"
    source.write_bytes(secrets.token_bytes(3 * 1024 * 1024 + 5))
    target = tmp_path / "out.bin"
    _copy_exclusive(source, target)
    assert target.read_bytes() == source.read_bytes()
    target.write_bytes(b"mine\n")
    with pytest.raises(FileExistsError):
        _copy_exclusive(source, target)
    assert target.read_bytes() == b"mine\n"
