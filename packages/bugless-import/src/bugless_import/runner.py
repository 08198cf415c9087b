"""One ``bugless import`` run: read, resolve, import (or report), resume.

Order of work, and why:

1. Read the whole source (in a worker thread: importers may block) and
   convert it once with placeholder ids, which is all ``--dry-run`` needs to
   count issues and entries and to list unmapped values.
2. Resolve what the issues refer to: people through the Authenticator
   (``MatchImportUsers``: e-mail, username, else a placeholder), components
   by path (created under ``--component-root`` when the mapping names none),
   hotlists and custom fields for labels.
3. Import with ``--concurrency`` calls in flight, each an ImportIssues of
   ``--batch-size`` issues (one call, per-item answers, no read-back of the written
   issue). Each item is idempotent on the Model, and each finished issue is appended (flushed) to
   ``<state-dir>/<source>-done.jsonl``: after Ctrl-C the same command skips
   what is done and imports the rest, with neither duplicates (the Model
   finds an external id it has) nor gaps (nothing is marked done before the
   Model answered). An issue whose history changes a relation is sent up to
   that change; once every issue exists, the rest of its history follows, one
   issue at a time, and only then is it marked done
   (:mod:`bugless_import.relation_history`).
4. Set the relations between issues (:mod:`bugless_import.relations`):
   only now do both ends of each exist; up to ``--concurrency`` changes of
   different issues at once.
5. Write the report and ``<source>-redirects.csv`` (old URL, new URL):
   :mod:`bugless_import.state`, with the done records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from bugless_core.clients import ActingFor, acting_model, call
from bugless_core.errors import (
    AlreadyExists,
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from bugless_core.importer import Importer, SourceAttachment, SourceIssue, SourcePerson
from bugless_core.service_address import ServiceAddress
from bugless_core.usernames import placeholder_username
from bugless_import import convert, dry_run, relation_history, relations, restricted
from bugless_import.files import Files
from bugless_import.mapping import Mapping, load_mapping
from bugless_import.progress import Progress
from bugless_import.report import ImportReport
from bugless_import.settings import ImportSettings
from bugless_import.state import DoneState, RefusedFiles, no_redirects_warning, write_outputs
from bugless_import.targets import Components, Labels
from bugless_proto import v1

_MATCH_BATCH = 1000
#: What the Model answers for one issue it will not import.
_ITEM_REFUSALS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, PermissionDenied)
#: An item's gRPC status code -> the error a lone call would have raised.
_ITEM_ERRORS: dict[int, type[BuglessError]] = {int(e.grpc_status.value): e for e in _ITEM_REFUSALS}
#: ``metadata`` key of the error that stopped a run at an issue the Model
#: refused: the issue's external id. The error keeps the refusal's kind (a
#: caller of :func:`run_import` may tell them apart); ``bugless import``
#: exits 1 for it whatever the kind (:mod:`bugless_import.command`).
REFUSED_ISSUE = "refused_issue"


@contextmanager
def _stops_at(external_id: str) -> Iterator[None]:
    """Mark the Model's refusal of the issue ``external_id`` as what stopped the run."""
    try:
        yield
    except _ITEM_REFUSALS as exc:
        exc.metadata[REFUSED_ISSUE] = external_id
        raise


def person_keys(issues: Iterable[SourceIssue]) -> set[str]:
    """Every person key the issues name, and ``ghost`` if something has no author.

    ``ghost`` stands for an empty reporter or author (a deleted account);
    without one, no ``ghost@<source>`` placeholder is made for nobody.
    """
    keys: set[str] = set()
    for issue in issues:
        keys.update(k for k in (issue.reporter, issue.assignee, *issue.cc) if k)
        if not issue.reporter:
            keys.add(convert.GHOST)
        keys.update(a.author or convert.GHOST for a in source_files(issue))
        for entry in issue.entries:
            keys.add(entry.author or convert.GHOST)
            for change in entry.changes:
                if change.field in {"assignee", "cc"}:
                    keys.update(k for k in (change.old, change.new, *change.added, *change.removed))
    keys.discard("")
    return keys


def source_files(issue: SourceIssue) -> list[SourceAttachment]:
    """Every file of ``issue``: its own, then those its entries' comments link."""
    return [*issue.attachments, *(f for e in issue.entries for f in e.attachments)]


def _unknown_person(key: str) -> SourcePerson:
    """A person the source names but does not list: an address is an e-mail."""
    if "@" in key and " " not in key:
        return SourcePerson(key=key, email=key)
    return SourcePerson(key=key, username=key)


def component_names(issues: Iterable[SourceIssue]) -> set[str]:
    """Every source component the issues are in, now or in their history.

    The source's "no component" ("", which goes to ``--component-root``) is
    among them only when an issue is or was without one: a mapping that
    places every component leaves the root unmade, not an empty component in
    every picker.
    """
    names: set[str] = set()
    for issue in issues:
        names.add(issue.component)
        for entry in issue.entries:
            for change in entry.changes:
                if change.field == "component":
                    names.update((change.old, change.new))
    return names


async def _match_people(
    auth: v1.AuthenticatorStub,
    token: str,
    source: str,
    people: Sequence[SourcePerson],
    *,
    create: bool,
    report: ImportReport,
) -> dict[str, str]:
    ids: dict[str, str] = {}
    for start in range(0, len(people), _MATCH_BATCH):
        batch = people[start : start + _MATCH_BATCH]
        answer = await call(
            auth.match_import_users,
            v1.MatchImportUsersRequest(
                token=token,
                source=source,
                people=[
                    v1.SourcePerson(
                        key=p.key, username=p.username, email=p.email, display_name=p.display_name
                    )
                    for p in batch
                ],
                create_placeholders=create,
            ),
        )
        for person, match in zip(batch, answer.matches, strict=True):
            if match.matched_by == "placeholder" or not match.matched_by:
                name = (
                    match.user.username
                    if match.user
                    else placeholder_username(
                        source, username=person.username, email=person.email, key=person.key
                    )
                )
                report.placeholders.append(name)
            elif match.user is not None:
                report.matches.append((person.key, match.user.username, match.matched_by))
            if match.matched_by:
                report.matched[match.matched_by] += 1
            if match.user is not None:
                ids[person.key] = match.user.user_id
    return ids


@contextmanager
def _reaching(service: str, address: ServiceAddress, settings: ImportSettings) -> Iterator[None]:
    """A service the run cannot reach, named with its address (``--model``, ``--auth``).

    The first calls to each go through here: "a backend service is
    unreachable: Connection lost" named neither which nor why; a plaintext
    call to a TLS service fails just so.
    """
    try:
        yield
    except Unavailable as exc:
        hint = "" if settings.tls_ca else "; if it serves TLS, give --tls-ca, --tls-cert, --tls-key"
        raise Unavailable(f"{service} at {address.authority}: {exc.message}{hint}") from exc


async def _session_token(auth: v1.AuthenticatorStub, settings: ImportSettings) -> str:
    """``--token``, or the token of a session ``--user`` signs in with its password."""
    if settings.token:
        return settings.token
    if not settings.user:
        raise PermissionDenied(
            "who runs the import? give --user USERNAME (the password is asked for) or --token "
            "(BUGLESS_IMPORT_TOKEN), a session token; the user needs admin and import_issues"
        )
    result = await call(
        auth.authenticate_password,
        v1.AuthenticatePasswordRequest(username=settings.user, password=settings.password),
    )
    return result.token


async def _identity(auth: v1.AuthenticatorStub, token: str) -> v1.Caller:
    identity = await call(auth.validate_token, v1.ValidateTokenRequest(token=token))
    missing = [p for p in ("admin", "import_issues") if p not in identity.permissions]
    if missing or identity.user is None:
        raise PermissionDenied(
            f"the token's user lacks the {' and '.join(missing)} permission(s) an import needs"
        )
    return v1.Caller(
        user_id=identity.user.user_id, groups=list(identity.groups), admin=True, import_issues=True
    )


async def run_import(
    importer: Importer, settings: ImportSettings, *, progress: TextIO | None = None
) -> ImportReport:
    """Run one import (or dry run) of ``importer``'s source; return its report.

    A run that writes holds ``<state-dir>/<source>.lock``: two runs on one
    state directory would import the same issues at once and record them
    twice (the second one failing on the first's half-done issues).

    Raises:
        FailedPrecondition: another run holds the state directory.
    """
    if settings.dry_run:
        return await _run(importer, settings, progress)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / f"{importer.name}.lock"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FailedPrecondition(
                f"another `bugless import {importer.name}` is running on {settings.state_dir}; "
                "wait for it to end (running the same command again then resumes it)"
            ) from None
        return await _run(importer, settings, progress)


async def _run(
    importer: Importer, settings: ImportSettings, progress: TextIO | None
) -> ImportReport:
    started = time.perf_counter()
    mapping = load_mapping(settings.mapping, type(importer).default_mapping)
    # Issues first: reading them can find people the source no longer lists
    # (Roundup's retired users), whom people() then includes.
    read = await asyncio.to_thread(lambda: list(importer.issues()))
    known_people = await asyncio.to_thread(lambda: list(importer.people()))
    restricted_ones = [i for i in read if i.restricted]
    if settings.restricted_component:
        issues = [restricted.rehome(i) if i.restricted else i for i in read]
    else:
        issues = [i for i in read if not i.restricted]
    report = ImportReport(
        source=importer.name,
        dry_run=settings.dry_run,
        skipped=list(importer.skipped),
        withheld=list(importer.withheld.items()),
        restricted_issues=[(importer.external_id(i), i.restricted) for i in restricted_ones],
        restricted_component=settings.restricted_component,
        not_understood=list(importer.not_understood.items()),
        unnamed=list(importer.unnamed.items()),
    )
    report.warnings += list(importer.warnings)
    if not settings.new_url:
        report.warnings.append(no_redirects_warning(importer.name))
    by_key = {p.key: p for p in known_people}
    people = [by_key.get(k) or _unknown_person(k) for k in sorted(person_keys(issues))]
    report.people = len(people)
    report.issues = len(issues)
    report.entries = sum(len(i.entries) for i in issues)
    report.comments = sum(1 for i in issues for e in i.entries if e.comment.strip())
    report.attachments = sum(len(source_files(i)) for i in issues)
    report.attachment_issues = sum(1 for i in issues if source_files(i))
    report.attachment_bytes = sum(max(a.size, 0) for i in issues for a in source_files(i))
    report.attachments_unsized = sum(1 for i in issues for a in source_files(i) if a.size < 0)

    found = relations.links(importer, issues)
    if settings.model is None or settings.auth is None:
        if settings.restricted_component:
            report.restricted_checked = [
                f"{settings.restricted_component} not checked: a dry run without --model and "
                "--auth cannot read its ACL (the run will check it before writing anything)"
            ]
        dry_run.convert_all(importer, issues, mapping, report)
        report.relations = dry_run.relations_found(importer, issues, found, settings)
        report.unmapped = _unmapped(mapping)
        report.seconds = time.perf_counter() - started
        return report

    model_channel = settings.address(settings.model).channel()
    auth_channel = settings.address(settings.auth).channel()
    try:
        auth = v1.AuthenticatorStub(auth_channel, timeout=settings.call_timeout_seconds)
        # The Model takes the caller from a signed assertion: the import
        # identity gets one for the importing user (IssueAssertion, refreshed
        # before it expires), and every call carries it.
        acting = ActingFor(auth)
        plain_model = v1.ModelStub(model_channel, timeout=settings.call_timeout_seconds)
        model = acting_model(plain_model, acting)
        with _reaching("the Authenticator", settings.auth, settings):
            token = await _session_token(auth, settings)
            caller = await _identity(auth, token)
        target = None
        if settings.restricted_component:
            # Before anything is written: a refusal leaves the Model as it was.
            with _reaching("the Model", settings.model, settings):
                root = settings.component_root
                paths = {mapping.path_of(n, root) for n in component_names(restricted_ones)}
                target = await restricted.check(
                    model, auth, caller, settings.restricted_component, [root, *sorted(paths)]
                )
            report.restricted_checked = list(target.checked)
        with _reaching("the Authenticator", settings.auth, settings):
            ids = await _match_people(
                auth, token, importer.name, people, create=not settings.dry_run, report=report
            )
        components = Components(model, caller, settings.dry_run)
        component_ids: dict[str, int] = {}
        with _reaching("the Model", settings.model, settings):
            for name in sorted(component_names(issues)):
                if name == restricted.RESTRICTED and target is not None:
                    component_ids[name] = target.component_id
                    continue
                path = mapping.path_of(name, settings.component_root)
                component_ids[name] = await components.path_id(path)
        report.components_to_create = components.created
        if target is not None:
            named = {importer.external_id(i): restricted.people_named(i) for i in restricted_ones}
            with _reaching("the Model", settings.model, settings):
                unseen, cannot_tell = await target.unseen(model, auth, caller, named, ids)
            report.restricted_unseen = unseen
            report.warnings += [cannot_tell] if cannot_tell else []
        labels = Labels(model, caller, mapping)
        if settings.dry_run:
            dry_run.convert_all(importer, issues, mapping, report)
            report.relations = dry_run.relations_found(importer, issues, found, settings)
            report.unmapped = _unmapped(mapping)
            report.seconds = time.perf_counter() - started
            return report
        await labels.prepare(component_ids.values())
        resolved = convert.Resolved(people=ids, components=component_ids, labels=labels)
        refused = RefusedFiles(settings.state_dir, importer.name)
        store = Files(
            plain_model, acting, caller, report,
            people=ids, in_flight=settings.file_concurrency,
            refused=refused, retry_refused=settings.retry_refused,
        )  # fmt: skip
        try:
            issue_ids = await _import_all(
                importer, issues, mapping=mapping, resolved=resolved, caller=caller, model=model,
                settings=settings, report=report, progress=progress, files=store,
            )  # fmt: skip
        finally:
            refused.close()
        if found:
            report.relations, by_holder = relations.plan(found, issue_ids)
            setter = relations.RelationSetter(
                model,
                caller,
                importer.name,
                issue_ids,
                report.relations,
                concurrency=settings.concurrency,
            )
            await setter.apply(by_holder)
        if target is not None:
            restricted_ids = [importer.external_id(i) for i in restricted_ones]
            report.warnings += await target.elsewhere(model, caller, restricted_ids, issue_ids)
        dry_run.count_labels(issues, mapping)
        report.unmapped = _unmapped(mapping)
    finally:
        model_channel.close()
        auth_channel.close()
    report.seconds = time.perf_counter() - started
    write_outputs(settings, importer.name, report)
    return report


def _unmapped(mapping: Mapping) -> list[tuple[str, str, int]]:
    return sorted((s, v, n) for (s, v), n in mapping.unmapped.items())


async def _import_all(
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
            with _stops_at(external_id):
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
            for issue, result in zip(batch, answer.results, strict=True):
                if result.code:
                    # Stop as a lone ImportIssue would have; what landed is recorded.
                    raise _ITEM_ERRORS.get(result.code, FailedPrecondition)(
                        f"{result.external_id}: {result.message}",
                        metadata={REFUSED_ISSUE: result.external_id},
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
        """One cut issue's whole history; without its relation changes if only they are refused."""
        try:
            return await call(model.import_issue, request)
        except (FailedPrecondition, InvalidArgument) as exc:
            if not relation_history.refuses_a_relation_change(exc):
                # Stop as the first pass would have for that entry; the
                # message names the issue, which the Model's does not.
                kind = InvalidArgument if isinstance(exc, InvalidArgument) else FailedPrecondition
                raise kind(
                    f"{request.external_id}: {exc.message}",
                    reason=exc.reason,
                    metadata=exc.metadata,
                ) from None
            report.warnings.append(
                f"{request.external_id}: the Model refused its relation history "
                f"({exc.message}); its entries were imported without their relation changes"
            )
            counts.refused += relation_history.count_relation_changes(request)
            stripped = relation_history.without_relations(request, exc.message)
            return await call(model.import_issue, stripped)

    async def second_pass() -> None:
        """The cut issues' whole history, one at a time (each may write the others')."""
        for issue, request in deferred:
            with _stops_at(request.external_id):
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
