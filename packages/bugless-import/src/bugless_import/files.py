"""Copying the source's files: their content onto the Model, streamed, a few at a time.

One path for every source: an importer gives each file as a
:class:`~bugless_core.importer.SourceAttachment` whose ``open`` returns its
content as a binary file object (a file on disk, an HTTP response); the run
reads it :data:`~bugless_core.attachments.CHUNK_BYTES` at a time (in a
worker thread) and sends each chunk on the Model's streaming
UploadAttachment (``import_content``) as it comes, so a file of any size
costs the import about a chunk of memory, not the file. ImportIssue then
attaches each stored file by its entry (:func:`convert.to_request`).

Files are read ``--file-concurrency`` at a time across the run (the source's
latency, not its bandwidth, is what a serial copy waits on); the answers keep
the order of the issue's files, which is the order of their entries.

On ``--refresh``, an issue imported before has its files' entries already
written: the Model ignores what a repeated entry carries (its
``import_position``), so the content is not read or sent again. The files
the Model holds for the issue (ListAttachments) stand for them, matched by
name, uploader and time (the entry's, which is the source's unless the
history's time order moved it later: :func:`convert.history_times`); only
a file the Model does not hold that way (new in the source, or one an
earlier run could not copy) is read. A file the Model refused (too large, a
type it does not accept) is noted in the state directory and not read
again (:class:`~bugless_import.state.RefusedFiles`).
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Mapping
from datetime import datetime
from http.client import HTTPResponse
from typing import BinaryIO

from bugless_core.attachments import CHUNK_BYTES, sanitise_name
from bugless_core.clients import ActingFor, acting_as, call
from bugless_core.errors import InvalidArgument, NotFound, ResourceExhausted
from bugless_core.importer import SourceAttachment, SourceIssue
from bugless_import import convert
from bugless_import.report import ImportReport
from bugless_import.sources._http import Download, Interrupted
from bugless_import.state import RefusedFiles
from bugless_proto import v1

#: What identifies a stored file as the one a source file became: its
#: sanitised name, its uploader's user id and its entry's time.
_Match = tuple[str, str, datetime]


class _Unreadable(Exception):
    """The source failed while its content was being read (not the Model's failure)."""


class Files:
    """Stores source files' content on the Model (UploadAttachment, ``import_content``).

    A file the source cannot give, or the Model refuses (over its size limit,
    a type the deployment does not accept), is reported by issue and name and
    left out: its entry says so, and the issue imports without it.
    """

    def __init__(
        self,
        model: v1.ModelStub,
        acting: ActingFor,
        caller: v1.Caller,
        report: ImportReport,
        *,
        people: Mapping[str, str],
        in_flight: int,
        refused: RefusedFiles | None = None,
        retry_refused: bool = False,
    ) -> None:
        """Store through ``model`` as ``caller``.

        Args:
            model: The Model, without an acting wrapper (a stream's calls take
                the assertion here).
            acting: Assertions for ``caller``.
            caller: The import identity.
            report: Where files sent and skipped are counted.
            people: Source person key -> user id (to match stored files).
            in_flight: Files read and sent at once, across the run.
            refused: The files the Model refused before (not read again),
                where this run's refusals are noted.
            retry_refused: Read those again all the same (``--retry-refused``).
        """
        self.model, self.acting, self.caller, self.report = model, acting, caller, report
        self.people = people
        self.refused, self.retry_refused = refused, retry_refused
        self._slots = asyncio.Semaphore(in_flight)

    async def store(
        self, issue: SourceIssue, external_id: str, *, issue_id: int = 0
    ) -> tuple[list[v1.ImportedAttachment | str], list[list[v1.ImportedAttachment | str]]]:
        """Each of ``issue``'s files stored (or why not), in order; and each entry's.

        Args:
            issue: The source issue.
            external_id: Its external id (for the report).
            issue_id: The bugless issue it was imported as before (0: none):
                files the Model holds for it are not read or sent again.

        Returns:
            ``issue.attachments`` as stored, and each entry's ``attachments``.
        """
        every = [*issue.attachments, *(f for e in issue.entries for f in e.attachments)]
        if not every:
            return [], [[] for _ in issue.entries]
        # The times the history gives them: a file's in the Model is its entry's.
        files_at, entries_at = convert.history_times(issue)
        times = [
            *files_at,
            *(t for e, t in zip(issue.entries, entries_at, strict=True) for _ in e.attachments),
        ]
        held = await self._held(issue_id) if issue_id else {}
        steps: list[Awaitable[v1.ImportedAttachment | str]] = []
        for file, at in zip(every, times, strict=True):
            found = held.get(self._match(file, at))
            refused = self.refused.why(external_id, file, at) if self.refused else ""
            if found:
                steps.append(_ready(found.pop(0)))
            elif refused and not self.retry_refused:
                self.report.files_refused_before += 1
                why = f"{refused} (refused before: not read again without --retry-refused)"
                steps.append(_ready(self.skip(external_id, file, why)))
            else:
                steps.append(self._one(external_id, file, at))
        tasks = [asyncio.ensure_future(step) for step in steps]
        try:
            results = list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        own, rest = results[: len(issue.attachments)], iter(results[len(issue.attachments) :])
        return own, [[next(rest) for _ in e.attachments] for e in issue.entries]

    def _match(self, file: SourceAttachment, at: datetime) -> _Match:
        """What ``file`` is held as: its name, its uploader's id, its entry's time ``at``."""
        key = file.author or convert.GHOST
        uploader = self.people.get(key) or self.people.get(convert.GHOST, "")
        return sanitise_name(file.name), uploader, at

    async def _held(self, issue_id: int) -> dict[_Match, list[v1.ImportedAttachment]]:
        """The files the Model holds for ``issue_id`` (deleted ones too), oldest first."""
        try:
            with acting_as(await self.acting.assertion_for(self.caller)):
                listed = await call(
                    self.model.list_attachments,
                    v1.ListAttachmentsRequest(
                        caller=self.caller, issue_id=issue_id, include_deleted=True
                    ),
                )
        except NotFound:
            return {}  # gone since (ImportIssue will say what it makes of that)
        held: dict[_Match, list[v1.ImportedAttachment]] = defaultdict(list)
        for found in sorted(listed.attachments, key=lambda a: (a.entry_version, a.id)):
            if found.created_at is None:
                continue
            held[(found.name, found.uploader, found.created_at)].append(
                v1.ImportedAttachment(
                    name=found.name,
                    content_type=found.declared_content_type,
                    sha256=found.sha256,
                    size=found.size,
                )
            )
        return held

    async def _one(
        self, external_id: str, file: SourceAttachment, at: datetime
    ) -> v1.ImportedAttachment | str:
        async with self._slots:
            try:
                content = await asyncio.to_thread(file.open)
            except Exception as exc:
                return self.skip(external_id, file, f"unreadable in the source: {exc}")
            try:
                while True:
                    try:
                        return await self._send(file, content)
                    except _Unreadable as exc:
                        again = getattr(exc.__cause__, "again", None)
                        if not isinstance(exc.__cause__, Interrupted) or again is None:
                            return self.skip(external_id, file, f"unreadable in the source: {exc}")
                    # The download broke off: the upload of its first bytes
                    # was abandoned (the Model keeps none of it); the file is
                    # read again from its start, within the source's retries.
                    try:
                        content = await asyncio.to_thread(again)
                    except Exception as exc:
                        return self.skip(external_id, file, f"unreadable in the source: {exc}")
            except (ResourceExhausted, InvalidArgument) as exc:
                if self.refused is not None and _refuses_the_file(exc):
                    self.refused.record(external_id, file, at, exc.message)
                return self.skip(external_id, file, exc.message)
            finally:
                await asyncio.to_thread(content.close)

    async def _send(self, file: SourceAttachment, content: BinaryIO) -> v1.ImportedAttachment:
        """Stream ``content`` to the Model a chunk at a time; what it stored."""
        header = v1.UploadAttachmentHeader(
            caller=self.caller, name=file.name, content_type=file.content_type,
            size=_length(content), import_content=True,
        )  # fmt: skip

        async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            while True:
                try:
                    chunk = await asyncio.to_thread(content.read, CHUNK_BYTES)
                except Exception as exc:
                    raise _Unreadable(str(exc) or type(exc).__name__) from exc
                if not chunk:
                    return
                yield v1.UploadAttachmentRequest(chunk=chunk)

        with acting_as(await self.acting.assertion_for(self.caller)):
            stored = (await call(self.model.upload_attachment, messages())).attachment
        assert stored is not None  # the Model answers with what it stored
        self.report.files_sent += 1
        self.report.bytes_sent += stored.size
        return v1.ImportedAttachment(
            name=file.name, content_type=file.content_type, sha256=stored.sha256, size=stored.size
        )

    def skip(self, external_id: str, file: SourceAttachment, why: str) -> str:
        """Report ``file`` left out, and why; the why."""
        self.report.files_skipped.append((external_id, file.name, why))
        return why


def _refuses_the_file(error: ResourceExhausted | InvalidArgument) -> bool:
    """Whether the Model refused the file itself: its size or its type, as it would again.

    Not an upload that went wrong (``header.size: N bytes declared, M were
    sent``, a file that changed while read), which a later run may copy.
    """
    if isinstance(error, ResourceExhausted):
        return True
    return error.message.startswith(("content:", "header.content_type:"))


def _length(content: BinaryIO) -> int:
    """How many bytes ``content`` will give, when it can tell (0: unknown).

    From the open file itself, not the source's listing: the Model holds an
    upload to the size its header declares, and a listing can be stale (a
    file replaced on disk). A file's size on disk, an HTTP response's
    ``Content-Length``, the rest of a buffer; a chunked response says none,
    and the Model then enforces its limit as the bytes come.
    """
    if isinstance(content, io.BytesIO):
        return content.getbuffer().nbytes - content.tell()
    if isinstance(content, HTTPResponse | Download):
        return content.length or 0
    try:
        status = os.fstat(content.fileno())
        if stat.S_ISREG(status.st_mode):
            return max(status.st_size - content.tell(), 0)
    except (OSError, ValueError):
        pass
    return 0


async def _ready(stored: v1.ImportedAttachment | str) -> v1.ImportedAttachment | str:
    return stored
