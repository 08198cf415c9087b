"""Writing the source's issues through the Model: both passes, resumable, counted.

Each issue not done before (or every one, with ``--refresh``) is sent with
``--concurrency`` calls in flight, each an ImportIssues of ``--batch-size``
issues (or one ImportIssue per issue with a batch size of 0), and appended
to ``<state-dir>/<source>-done.jsonl`` once the Model answered. An issue
whose history changes a relation is sent up to that change; once every
issue exists, the rest of its history follows, one issue at a time (the
second pass, :mod:`bugless_import.relation_history`), and only then is it
marked done. The Model refusing an issue stops the run, marked with
:data:`REFUSED_ISSUE`; what landed before is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from bugless_core.clients import call
from bugless_core.errors import (
    AlreadyExists,
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from bugless_core.importer import Importer, SourceIssue
from bugless_import import convert, relation_history
from bugless_import.files import Files
from bugless_import.mapping import Mapping
from bugless_import.people import source_files
from bugless_import.progress import Progress
from bugless_import.relation_history import refused_field
from bugless_import.report import ImportReport
from bugless_import.settings import ImportSettings
from bugless_import.state import DoneState
from bugless_proto import v1

#: What the Model answers for one issue it will not import.
_ITEM_REFUSALS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, PermissionDenied)
#: An item's gRPC status code -> the error a lone call would have raised.
_ITEM_ERRORS: dict[int, type[BuglessError]] = {int(e.grpc_status.value): e for e in _ITEM_REFUSALS}
#: ``metadata`` key of the error that stopped a run at an issue the Model
#: refused: the issue's external id. The error keeps the refusal's kind (a
#: caller of :func:`run_import` may tell them apart); ``bugless import``
#: exits 1 for it whatever the kind (:mod:`bugless_import.command`).
REFUSED_ISSUE = "refused_issue"


#: A refusal naming an entry by its place alone, as of one the Model finds empty.
_WHOLE_ENTRY = re.compile(r"history\[(\d+)\]")


def _unknown_to_an_earlier_model(entry: v1.ImportedEntry) -> list[str]:
    """The fields a Model of an earlier release drops that ``entry`` holds, if it holds no other.

    ``files_not_imported`` and ``relations_not_imported`` came after the
    other fields of an entry; a Model that does not know them sees an entry
    holding only them as empty. Anything else it holds (a comment, a file, a
    change) the earlier Model reads too, so its refusal of that entry is
    about something else (this release's "a description edit changes no
    fields", say): [] then.
    """
    known = dataclasses.replace(
        entry,
        author="",
        created_at=None,
        comment=entry.comment.strip(),
        fields=entry.fields if entry.update_mask and entry.update_mask.paths else None,
        update_mask=entry.update_mask if entry.update_mask and entry.update_mask.paths else None,
        files_not_imported=[],
        relations_not_imported="",
    )
    if known != v1.ImportedEntry():
        return []
    unknown = []
    if entry.files_not_imported:
        unknown.append("files the import could not copy (ImportedEntry.files_not_imported)")
    if entry.relations_not_imported:
        unknown.append(
            "why its relation changes were left out (ImportedEntry.relations_not_imported)"
        )
    return unknown


def _refused_by_an_earlier_model(
    error: BuglessError, request: v1.ImportIssueRequest
) -> BuglessError:
    """``error``, saying "upgrade the Model first" when the Model cannot know what it refused.

    A Model of a release before ``ImportedEntry.files_not_imported`` (or
    ``relations_not_imported``) drops the field unread (protobuf skips
    fields it does not know), so an entry recording only files the import
    could not copy (or only why its relation changes were left out) is empty
    to it: INVALID_ARGUMENT naming the entry by its place (``history[3]``).
    This release's Model never refuses that entry so, and the bare refusal
    would send the admin to fix a source that is not at fault. An entry
    holding anything else besides is refused for something the earlier
    Model reads too (this release refuses a description edit carrying any
    change by its place as well): the refusal stands as it is.
    """
    match = _WHOLE_ENTRY.fullmatch(refused_field(error))
    if not isinstance(error, InvalidArgument) or match is None:
        return error
    index = int(match[1])
    if index >= len(request.history):
        return error
    unknown = _unknown_to_an_earlier_model(request.history[index])
    if not unknown:
        return error
    return InvalidArgument(
        f"{error.message}; that entry records only {' and '.join(unknown)}, which a Model of "
        "a release before this import's does not know: upgrade the Model first, as "
        "docs/upgrades.md orders, then run the import again",
        reason=error.reason,
        metadata=error.metadata,
    )


@contextmanager
def _stops_at(external_id: str, request: v1.ImportIssueRequest) -> Iterator[None]:
    """Mark the Model's refusal of the issue ``external_id`` as what stopped the run."""
    try:
        yield
    except _ITEM_REFUSALS as exc:
        exc.metadata[REFUSED_ISSUE] = external_id
        refusal = _refused_by_an_earlier_model(exc, request)
        if refusal is exc:
            raise
        raise refusal from None


async def write_issues(
    importer: Importer,
    issues: Sequence[SourceIssue],
    *,
    mapping: Mapping,
    resolved: convert.Resolved,
    caller: v1.Caller,
    model: v1.ModelStub,
    settings: ImportSettings,
    report: ImportReport,
    progress: TextIO | None,
    files: Files,
) -> dict[str, int]:
    """Import what is not done; return every imported external id's issue id (all runs)."""
    state = DoneState(settings.state_dir, importer.name)
    bar = Progress(len(issues), f"importing {importer.name}", None if settings.quiet else progress)
    in_import = {importer.external_id(issue) for issue in issues}
    counts = relation_history.RelationChanges()
    #: Issues the first pass cut before their first relation change, and their whole request.
    deferred: list[tuple[SourceIssue, v1.ImportIssueRequest]] = []
    deferred_ids: set[str] = set()
    #: Whether the first pass created or extended a deferred issue (else it counted unchanged).
    first_wrote: dict[str, bool] = {}

    def reference(key: str) -> str | None:
        """A relation's other issue by external id: one of this import's or of an earlier run's."""
        external_id = importer.key_external_id(key)
        return external_id if external_id in in_import or external_id in state.done else None

    def first_pass(issue: SourceIssue, request: v1.ImportIssueRequest) -> v1.ImportIssueRequest:
        """What the first pass sends: the history up to its first relation change."""
        cut = relation_history.cut(request)
        if cut is None:
            return request
        deferred.append((issue, request))
        deferred_ids.add(request.external_id)
        return cut

    pending: asyncio.Queue[SourceIssue] = asyncio.Queue()
    for issue in issues:
        if importer.external_id(issue) in state.done and not settings.refresh:
            report.done_before += 1
            bar.advance()
        else:
            pending.put_nowait(issue)

    async def one_by_one() -> None:
        while not pending.empty():
            issue = pending.get_nowait()
            external_id = importer.external_id(issue)
            request = first_pass(issue, await request_for(issue))
            with _stops_at(external_id, request):
                answer = await call(model.import_issue, request)
            count(answer.created, answer.entries_written)
            if external_id in deferred_ids:
                first_wrote[external_id] = answer.created or answer.entries_written > 0
                continue  # recorded once the second pass sent the rest
            state.record(
                external_id, answer.issue.id if answer.issue else 0, issue.url,
                files=state.with_files(external_id),
                linked=state.with_linked_files(external_id),
            )  # fmt: skip
            bar.advance()

    async def request_for(issue: SourceIssue) -> v1.ImportIssueRequest:
        external_id = importer.external_id(issue)
        link = importer.references_in(issue)
        if not state.with_linked_files(external_id):
            # Imported before linked files were copied: an entry for a file its
            # description links would shift its history position, and files
            # on the entries it has would be read only to be ignored.
            for file in source_files(issue):
                if file.link:
                    files.skip(
                        external_id, file, "the issue was imported before linked files were copied"
                    )
            issue = dataclasses.replace(
                issue,
                attachments=tuple(a for a in issue.attachments if not a.link),
                entries=tuple(dataclasses.replace(e, attachments=()) for e in issue.entries),
            )
        if not state.with_files(external_id):
            for file in source_files(issue):
                files.skip(external_id, file, "the issue was imported before files were copied")
            return convert.to_request(
                issue, external_id, mapping, resolved, caller, reference_link=link, files=None,
                relation_reference=reference, relation_counts=counts,
            )  # fmt: skip
        done = state.done.get(external_id)
        issue_id = int(str(done["issue_id"])) if done else 0
        own, per_entry = await files.store(issue, external_id, issue_id=issue_id)
        return convert.to_request(
            issue, external_id, mapping, resolved, caller, reference_link=link,
            files=own, entry_files=per_entry, relation_reference=reference,
            relation_counts=counts,
        )  # fmt: skip

    def count(created: bool, written: int) -> None:
        if created:
            report.created += 1
        elif written:
            report.extended += 1
        else:
            report.unchanged += 1
        report.entries_written += written

    async def batches() -> None:
        while not pending.empty():
            batch: list[SourceIssue] = []
            while len(batch) < settings.batch_size and not pending.empty():
                batch.append(pending.get_nowait())
            requests = [first_pass(i, await request_for(i)) for i in batch]
            answer = await call(
                model.import_issues, v1.ImportIssuesRequest(caller=caller, issues=requests)
            )
            for issue, request, result in zip(batch, requests, answer.results, strict=True):
                if result.code:
                    # Stop as a lone ImportIssue would have; what landed is recorded.
                    kind = _ITEM_ERRORS.get(result.code, FailedPrecondition)
                    with _stops_at(result.external_id, request):
                        raise kind(
                            f"{result.external_id}: {result.message}",
                            metadata={"field": refused_field(kind(result.message))},
                        )
                count(result.created, result.entries_written)
                if result.external_id in deferred_ids:
                    first_wrote[result.external_id] = result.created or result.entries_written > 0
                    continue  # recorded once the second pass sent the rest
                state.record(
                    result.external_id, result.issue_id, issue.url,
                    files=state.with_files(result.external_id),
                    linked=state.with_linked_files(result.external_id),
                )  # fmt: skip
                bar.advance()

    async def second_pass_of(request: v1.ImportIssueRequest) -> v1.ImportIssueResponse:
        """One cut issue's whole history; without its relation changes if only they are refused.

        A refusal stops the run (:func:`_stops_at`), judged against the
        request the Model refused: the retry's entries may hold only why
        their relation changes were left out.
        """
        with _stops_at(request.external_id, request):
            try:
                return await call(model.import_issue, request)
            except (FailedPrecondition, InvalidArgument) as exc:
                if not relation_history.refuses_a_relation_change(exc):
                    # Stop as the first pass would have for that entry; the
                    # message names the issue, which the Model's does not.
                    kind = (
                        InvalidArgument if isinstance(exc, InvalidArgument) else FailedPrecondition
                    )
                    raise kind(
                        f"{request.external_id}: {exc.message}",
                        reason=exc.reason,
                        metadata=exc.metadata,
                    ) from None
                refusal = exc.message
        stripped = relation_history.without_relations(request, refusal)
        with _stops_at(request.external_id, stripped):
            answer = await call(model.import_issue, stripped)
        # Said once it is so: a refused retry stops the run, nothing imported.
        report.warnings.append(
            f"{request.external_id}: the Model refused its relation history "
            f"({refusal}); its entries were imported without their relation changes"
        )
        counts.refused += relation_history.count_relation_changes(request)
        return answer

    async def second_pass() -> None:
        """The cut issues' whole history, one at a time (each may write the others')."""
        for issue, request in deferred:
            answer = await second_pass_of(request)
            report.entries_written += answer.entries_written
            if answer.entries_written and not first_wrote.get(request.external_id, True):
                report.unchanged -= 1  # the newer history is past the first pass's cut
                report.extended += 1
            state.record(
                request.external_id, answer.issue.id if answer.issue else 0, issue.url,
                files=state.with_files(request.external_id),
                linked=state.with_linked_files(request.external_id),
            )  # fmt: skip
            bar.advance()

    worker = batches if settings.batch_size else one_by_one
    tasks = [asyncio.create_task(worker()) for _ in range(settings.concurrency)]
    try:
        await asyncio.gather(*tasks)
        await second_pass()
        report.relation_changes = max(counts.kept - counts.refused, 0)
        report.relation_changes_left_out = counts.left_out
        report.relation_changes_refused = counts.refused
    except asyncio.CancelledError:
        report.interrupted = True
        raise
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
        state.close()
    return {external_id: int(str(r["issue_id"])) for external_id, r in state.done.items()}
