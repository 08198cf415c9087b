"""Attachment calls of the client: attach a file, list, download, delete.

Content streams both ways in chunks of :data:`bugless_core.attachments.CHUNK_BYTES`:
a file is read a chunk at a time as the connection takes it, and a download
is written to disk as it arrives, so neither end holds a whole file. A
download whose connection drops resumes where it stopped (the Model serves
ranges), up to the client's retry attempts. An upload is sent again only
when a draining API replica refused it (it never ran it, so the file is
attached once), and only once, read again from the start; any other failure
stands, since the upload may have been attached. A file that cannot be read
is the caller's error (:func:`~bugless_api.client._base.client_mistake`
naming the file), never reported as the API's; so is a destination that
cannot be written (naming it and what was wrong), and a failed download
leaves no file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mimetypes
import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from grpclib.const import Cardinality
from grpclib.exceptions import StreamTerminatedError

from bugless_api.client._base import (
    ClientBase,
    check_wire_ranges,
    client_mistake,
    made_again_renewed,
)
from bugless_core.attachments import CHUNK_BYTES
from bugless_core.clients import call_errors, channel_connection, forget_connection
from bugless_core.errors import (
    AlreadyExists,
    BuglessError,
    InvalidArgument,
    RangeNotSatisfiable,
    Unavailable,
)
from bugless_core.ids import check_id
from bugless_proto import v1

_log = logging.getLogger("bugless.client")


def _unreadable(file: Path, error: OSError) -> InvalidArgument:
    """The caller's error for a local file that cannot be read, naming it.

    Raised as itself rather than an OSError inside :func:`call_errors`,
    which would report it as the API being unreachable.
    """
    return client_mistake(f"{file}: {error.strerror or error}")


def _unwritable(target: Path, error: OSError) -> InvalidArgument:
    """The caller's error for a download destination that cannot be written, naming it.

    The failing call may have been on the temporary file beside ``target``;
    the caller named ``target``, so the message does, and says what was wrong
    (a missing directory is named as such, since "No such file" about a file
    being created reads as nonsense).
    """
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        problem = f"no directory {target.parent}"
    else:
        problem = error.strerror or str(error)
    return client_mistake(f"{target}: cannot be written: {problem}")


def _past_the_end(attachment_id: int, size: int, received: int, target: Path) -> BuglessError:
    """The error of a download that received more than its attachment holds.

    The API sent more bytes than the attachment's size, or a resumed
    download asked the Model for bytes past its end (OUT_OF_RANGE, with the
    size). Either way the bytes at hand are not the attachment's: said in
    terms of the download the caller asked for (``attachment get`` gives no
    offset, so the Model's "offset: N is past the end" would puzzle), and
    never resumed again, since every resume would start past the end too.
    """
    return BuglessError(
        f"attachment {attachment_id} is {size} bytes, but its download received {received}: "
        f"what arrived is not the attachment; {target} was left as it was: download it again",
        reason="DOWNLOAD_PAST_END",
        metadata={"size": str(size), "received": str(received)},
    )


async def file_chunks(
    file: Path, handle: BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """The content of ``file`` (open as ``handle``) a chunk at a time, read off the event loop.

    Raises:
        InvalidArgument: A read failed (origin ``client``, naming the file).
    """
    while True:
        try:
            chunk = await asyncio.to_thread(handle.read, chunk_bytes)
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        if not chunk:
            return
        yield chunk


async def _check_destination(target: Path, *, replace: bool) -> None:
    """Refuse a destination the finished download could not be put at.

    Checked before any byte moves: a directory would otherwise only be found
    after the whole download, a device or pipe (``/dev/null``) would be
    replaced by a regular file rather than written to, and a file the caller
    said not to replace would be found only once the download is spent.

    Raises:
        AlreadyExists: ``replace`` is false and anything is at ``target``
            (a dangling symlink too), from :func:`_kept`.
        InvalidArgument: ``target`` exists and is not a regular file, or
            cannot be looked at (origin ``client``, naming it).
    """
    try:
        found = await asyncio.to_thread(target.stat if replace else target.lstat)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _unwritable(target, exc) from exc
    if not replace:
        raise _kept(target)
    if stat.S_ISDIR(found.st_mode):
        raise client_mistake(f"{target}: is a directory")
    if not stat.S_ISREG(found.st_mode):
        raise client_mistake(f"{target}: not a regular file")


def _kept(target: Path) -> AlreadyExists:
    """The error for a download not put at ``target``, where something already is.

    Origin ``client``, as :func:`~bugless_api.client._base.client_mistake`:
    the caller (the CLI) can tell it from an API's ALREADY_EXISTS and word
    it in its own terms (which flags replace).
    """
    return AlreadyExists(
        f"{target} already exists and was left as it is", metadata={"origin": "client"}
    )


#: What ``link`` fails with on a filesystem that has no hard links (vfat,
#: exFAT, some FUSE and network mounts): EPERM on Linux, ENOTSUP/EOPNOTSUPP
#: elsewhere. Anything else (EEXIST, EACCES, ENOSPC...) is an answer.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _place_new(partial: Path, target: Path) -> None:
    """Put the finished download ``partial`` at ``target`` only if nothing is there.

    ``os.replace`` would replace a file that appeared at ``target`` during
    the download (after :func:`_check_destination` looked). A hard link
    fails instead (EEXIST) and is atomic as the rename is: ``target``
    appears whole or not at all. Where the filesystem has no hard links,
    the content is copied into ``target`` created exclusively
    (``open(..., "xb")``): still never over an existing file, which is the
    promise, but no longer atomic (a reader may see ``target`` grow, and a
    process killed mid-copy leaves it short; a failed copy removes it). No
    atomic alternative exists in the standard library: Linux's
    ``renameat2(RENAME_NOREPLACE)`` is not exposed by :mod:`os`, and the
    filesystems without hard links are mostly those that lack it too. Runs
    in a worker thread. ``partial`` is removed once ``target`` holds it; if
    that fails (a directory where entries can be made but not removed, such
    as an append-only one), the download is in place all the same: a
    warning names the file left over, and nothing is raised (reporting that
    ``target`` cannot be written would be wrong, and a retry would find it
    there).

    Raises:
        FileExistsError: Something is at ``target``; ``partial`` is left
            for the caller to remove.
        OSError: ``target`` cannot be created.
    """
    try:
        os.link(partial, target)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _copy_exclusive(partial, target)
    try:
        partial.unlink()
    except OSError as exc:
        _log.warning(
            "%s is written, but its temporary file %s could not be removed (%s); remove it by hand",
            target,
            partial,
            exc.strerror or exc,
            extra={"target": str(target), "temporary_file": str(partial)},
        )


def _copy_exclusive(source: Path, target: Path) -> None:
    """Copy ``source`` to a new file ``target``, never over an existing one.

    The fallback of :func:`_place_new`. ``target`` gets the mode any new
    file there would (``open``'s 0o666 less the umask), as the temporary
    file did; a copy that fails removes the part it wrote.

    Raises:
        FileExistsError: Something is at ``target`` (left as it is).
        OSError: ``target`` cannot be created or written.
    """
    with source.open("rb") as content:
        copy = target.open("xb")
        try:
            # Closing flushes the last bytes: its failure is the copy's too.
            with copy:
                shutil.copyfileobj(content, copy, CHUNK_BYTES)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()
            raise


def _open_beside(target: Path) -> tuple[Path, BinaryIO]:
    """A new, uniquely named temporary file beside ``target``, open for writing.

    Unique, so two downloads to one destination never write into one file
    (the last rename wins, whole). Created with mode 0o666 as ``open`` does,
    so the umask (and a default ACL) shape it as any new file there, which
    the file keeps once renamed; ``mkstemp``'s 0600 would not. Runs in a
    worker thread.

    Raises:
        OSError: It cannot be created there.
    """
    # A long name leaves no room for the marks: then only the marks.
    stem = target.name if len(os.fsencode(target.name)) <= 200 else "bugless-download"
    while True:
        partial = target.with_name(f".{stem}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return partial, os.fdopen(fd, "wb")


class AttachmentCalls(ClientBase):
    """The attachment calls of ``bugless.v1.Issues``."""

    async def attach(
        self,
        issue_id: int,
        path: Path | str,
        *,
        name: str | None = None,
        content_type: str | None = None,
        comment: str = "",
    ) -> v1.UploadAttachmentResponse:
        """Attach the file at ``path`` to an issue by a new history entry.

        The size is declared up front, so a file over the deployment's limit
        is refused before any byte is sent. ``content_type`` defaults to the
        guess from the name (the Model sniffs the content anyway). An upload
        a draining replica refused is sent once more (read again from the
        start) on a new connection, when the retry policy allows retries, and
        one refused as of the connection's ended session (reason
        ``SESSION_RENEWED``: the API has a new one) on the same connection,
        once per renewal (:func:`~bugless_api.client._base.made_again_renewed`);
        both were refused before anything was attached.

        Raises:
            InvalidArgument: The file cannot be read (origin ``client``:
                nothing is attached), or the API refused the upload.
            Unavailable: The API could not be reached, or draining replicas
                refused the upload twice (once, when the policy has no
                retries), or the API refused it with ``SESSION_RENEWED`` more
                than ``MAX_SESSION_RENEWALS`` times in a row.
        """
        check_id(issue_id, "issue_id")
        file = Path(path)
        try:
            found = await asyncio.to_thread(file.stat)
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        if not stat.S_ISREG(found.st_mode):
            raise client_mistake(f"{file}: not a regular file")
        size = found.st_size
        shown = name or file.name
        if content_type is None:
            content_type = mimetypes.guess_type(shown)[0] or ""
        header = v1.UploadAttachmentHeader(
            issue_id=issue_id, name=shown, content_type=content_type, comment=comment, size=size
        )
        check_wire_ranges(header)

        async def upload() -> v1.UploadAttachmentResponse:
            """One UploadAttachment call: the header, then the content from where ``handle`` is."""

            async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
                yield v1.UploadAttachmentRequest(header=header)
                async for chunk in file_chunks(file, handle):
                    yield v1.UploadAttachmentRequest(chunk=chunk)

            with call_errors(self.unreachable):
                async with self.issues.channel.request(
                    "/bugless.v1.Issues/UploadAttachment",
                    Cardinality.STREAM_UNARY,
                    v1.UploadAttachmentRequest,
                    v1.UploadAttachmentResponse,
                ) as stream:
                    await stream.send_request()
                    refused_early: StreamTerminatedError | None = None
                    try:
                        async for message in messages():
                            await stream.send_message(message)
                        await stream.end()
                    except StreamTerminatedError as exc:
                        # The server may answer before the upload ends (not found,
                        # too large, draining) and reset the stream: a send then
                        # fails with this, and so does the end on the
                        # CorkedChannel the client always opens
                        # (ServiceAddress.channel). The status it answered with is
                        # the error to report; anything else (the file could not
                        # be read: InvalidArgument) ends the call as it is.
                        refused_early = exc
                    reply = await stream.recv_message()
                if reply is None:
                    raise refused_early or Unavailable("the upload ended without an answer")
                return reply

        try:
            handle = await asyncio.to_thread(file.open, "rb")
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        try:
            drained = False
            renewals = 0
            while True:
                used = channel_connection(self._channel)
                try:
                    return await upload()
                except Unavailable as exc:
                    # Refused unrun, as of the session it was made with, which
                    # the API renewed (made_again_renewed: at once, on the same
                    # connection), or by a replica shutting down: safe to send
                    # again, whole, from the file's start. A draining replica's
                    # refusal goes down a new connection, since that one leads
                    # back to it, once: a new connection reaches a replica that
                    # is not draining. Any other failure (a dropped connection)
                    # may have come after the file was attached.
                    if made_again_renewed(exc, renewals):
                        renewals += 1
                        pause = 0.0
                    elif exc.refused_while_draining and not drained and self.retry.attempts > 1:
                        drained = True
                        forget_connection(self._channel, used)
                        pause = self.retry.delay(0, exc)
                    else:
                        raise
                await asyncio.sleep(pause)
                try:
                    await asyncio.to_thread(handle.seek, 0)
                except OSError as exc:
                    raise _unreadable(file, exc) from exc
        finally:
            handle.close()

    async def get_attachment(self, attachment_id: int) -> v1.Attachment:
        """One attachment's metadata."""
        check_id(attachment_id, "attachment_id")
        request = v1.GetAttachmentRequest(attachment_id=attachment_id)
        return await self._call(self.issues.get_attachment, request, idempotent=True)

    async def list_attachments(
        self, issue_id: int, *, include_deleted: bool = False
    ) -> list[v1.Attachment]:
        """An issue's attachments, oldest first."""
        check_id(issue_id, "issue_id")
        request = v1.ListAttachmentsRequest(issue_id=issue_id, include_deleted=include_deleted)
        reply = await self._call(self.issues.list_attachments, request, idempotent=True)
        return list(reply.attachments)

    async def delete_attachment(self, attachment_id: int) -> v1.ChangeIssueResponse:
        """Detach a file (its uploader or a component admin); the entry stays in history."""
        check_id(attachment_id, "attachment_id")
        request = v1.DeleteAttachmentRequest(attachment_id=attachment_id)
        return await self._call(self.issues.delete_attachment, request, idempotent=False)

    async def iter_attachment(
        self, attachment_id: int, *, offset: int = 0
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        """The raw download stream: the Attachment, then content chunks from ``offset``."""
        check_id(attachment_id, "attachment_id")
        request = v1.DownloadAttachmentRequest(attachment_id=attachment_id, offset=offset)
        check_wire_ranges(request)
        with call_errors(self.unreachable):
            async for part in self.issues.download_attachment(request):
                yield part

    async def download_attachment(
        self, attachment_id: int, destination: Path | str, *, replace: bool = True
    ) -> v1.Attachment:
        """Write an attachment's content to ``destination``; return its metadata.

        The content goes to a temporary file beside ``destination`` (named
        uniquely, so concurrent downloads to one destination do not mix:
        the last to finish is there, whole), renamed over it once complete,
        so an interrupted download never leaves a truncated file under the
        real name, and a failed one leaves nothing. The file gets the mode
        any new file there would (the umask's).
        With ``replace=False`` nothing at ``destination`` is ever replaced:
        it is refused before any byte moves if something is there, and the
        finished download is put there by a hard link that fails if
        something appeared meanwhile (:func:`_place_new`), not renamed over it.
        A dropped connection resumes from the bytes already written (at
        the attachment's end, a call that reads nothing); a download a
        draining replica refused resumes down a new connection, and one
        refused as of the connection's ended session (reason
        ``SESSION_RENEWED``: the API has a new one) at once, on the same
        connection, once per renewal and whatever the retry policy
        (:func:`~bugless_api.client._base.made_again_renewed`).

        Raises:
            AlreadyExists: ``replace`` is false and something is at
                ``destination``, before the download or once it is done
                (origin ``client``, naming it; no temporary file is left).
            InvalidArgument: ``destination`` is a directory, or it (or the
                temporary file beside it) cannot be created or written, e.g.
                its directory does not exist, may not be written to, or the
                disk is full (origin ``client``, naming ``destination``); or
                the API refused the download.
            NotFound: No such attachment, or not visible to the caller.
            Unavailable: The API could not be reached, or the download ended
                short, after the policy's attempts in a row that brought no byte.
            BuglessError: The download received more than the attachment's
                size (reason ``DOWNLOAD_PAST_END``, naming both), so a resume
                would start past its end; ``destination`` is left as it was.
        """
        check_id(attachment_id, "attachment_id")
        target = Path(destination)
        await _check_destination(target, replace=replace)
        attachment: v1.Attachment | None = None
        written = 0
        attempt = renewals = 0
        try:
            partial, handle = await asyncio.to_thread(_open_beside, target)
        except OSError as exc:
            raise _unwritable(target, exc) from exc
        try:
            while True:
                used = channel_connection(self._channel)
                resumed_at = written
                try:
                    async for part in self.iter_attachment(attachment_id, offset=written):
                        if part.attachment is not None:
                            attachment = part.attachment
                        elif part.chunk:
                            received = written + len(part.chunk)
                            if attachment is not None and received > attachment.size:
                                raise _past_the_end(
                                    attachment_id, attachment.size, received, target
                                )
                            try:
                                await asyncio.to_thread(handle.write, part.chunk)
                            except OSError as exc:
                                raise _unwritable(target, exc) from exc
                            written = received
                    break
                except RangeNotSatisfiable as exc:  # a resume at ``written`` > 0 only
                    raise _past_the_end(attachment_id, exc.size, written, target) from exc
                except Unavailable as exc:
                    if written > resumed_at:
                        renewals = 0
                    elif made_again_renewed(exc, renewals):
                        renewals += 1  # at once, on the connection with the new session
                        continue
                    # The policy bounds failures in a row that moved nothing:
                    # a long download over a link that drops now and then
                    # finishes as long as each call brings bytes.
                    attempt = 1 if written > resumed_at else attempt + 1
                    if attempt >= self.retry.attempts:
                        raise
                    if exc.refused_while_draining:
                        # That connection leads back to the replica shutting
                        # down: resume down a new one (as attach and
                        # ClientBase._call do), not to be refused again.
                        forget_connection(self._channel, used)
                    await asyncio.sleep(self.retry.delay(attempt - 1, exc))
            try:
                # Closing flushes the last buffered bytes: a full disk may
                # only be reported here.
                await asyncio.to_thread(handle.close)
            except OSError as exc:
                raise _unwritable(target, exc) from exc
            if attachment is None or written != attachment.size:
                msg = f"attachment {attachment_id}: the download ended after {written} bytes"
                raise Unavailable(msg)
            try:
                if replace:
                    await asyncio.to_thread(os.replace, partial, target)
                else:
                    await asyncio.to_thread(_place_new, partial, target)
            except FileExistsError as exc:
                if replace:
                    raise _unwritable(target, exc) from exc
                raise _kept(target) from exc
            except OSError as exc:
                raise _unwritable(target, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return attachment
