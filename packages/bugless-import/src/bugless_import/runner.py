"""One ``bugless import`` run: read, resolve, import (or report), resume.

Order of work, and why:

1. Read the whole source (in a worker thread: importers may block) and
   convert it once with placeholder ids, which is all ``--dry-run`` needs to
   count issues and entries and to list unmapped values.
2. Resolve what the issues refer to: people through the Authenticator
   (``MatchImportUsers``: e-mail, username, else a placeholder;
   :mod:`bugless_import.people`), after signing in
   (:mod:`bugless_import.sign_in`), components
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
   (:mod:`bugless_import.write_issues`, :mod:`bugless_import.relation_history`).
4. Set the relations between issues (:mod:`bugless_import.relations`):
   only now do both ends of each exist; up to ``--concurrency`` changes of
   different issues at once.
5. Write the report and ``<source>-redirects.csv`` (old URL, new URL):
   :mod:`bugless_import.state`, with the done records.
"""

from __future__ import annotations

import asyncio
import fcntl
import time
from collections.abc import Iterable
from typing import TextIO

from bugless_core.clients import ActingFor, acting_model
from bugless_core.errors import FailedPrecondition
from bugless_core.importer import Importer, SourceIssue
from bugless_import import convert, dry_run, relations, restricted, sign_in, viewers
from bugless_import.files import Files
from bugless_import.mapping import Mapping, load_mapping
from bugless_import.people import match_people, person_keys, source_files, unknown_person
from bugless_import.report import ImportReport
from bugless_import.settings import ImportSettings
from bugless_import.state import DoneState, RefusedFiles, no_redirects_warning, write_outputs
from bugless_import.targets import Components, Labels
from bugless_import.write_issues import REFUSED_ISSUE, write_issues
from bugless_proto import v1

__all__ = ["REFUSED_ISSUE", "component_names", "run_import"]


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
    people = [by_key.get(k) or unknown_person(k) for k in sorted(person_keys(issues))]
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
        with sign_in.reaching("the Authenticator", settings.auth, settings):
            token = await sign_in.session_token(auth, settings)
            caller = await sign_in.identity(auth, token)
        target = None
        if settings.restricted_component:
            # Before anything is written: a refusal leaves the Model as it was.
            with sign_in.reaching("the Model", settings.model, settings):
                root = settings.component_root
                paths = {mapping.path_of(n, root) for n in component_names(restricted_ones)}
                target = await restricted.check(
                    model, auth, caller, settings.restricted_component, [root, *sorted(paths)]
                )
            report.restricted_checked = list(target.checked)
        with sign_in.reaching("the Authenticator", settings.auth, settings):
            ids = await match_people(
                auth, token, importer.name, people, create=not settings.dry_run, report=report
            )
        components = Components(model, caller, settings.dry_run)
        component_ids: dict[str, int] = {}
        with sign_in.reaching("the Model", settings.model, settings):
            for name in sorted(component_names(issues)):
                if name == restricted.RESTRICTED and target is not None:
                    component_ids[name] = target.component_id
                    continue
                path = mapping.path_of(name, settings.component_root)
                component_ids[name] = await components.path_id(path)
        report.components_to_create = components.created
        if target is not None:
            named = {importer.external_id(i): viewers.people_named(i) for i in restricted_ones}
            with sign_in.reaching("the Model", settings.model, settings):
                unseen, cannot_tell = await target.unseen(model, auth, caller, named, ids)
            report.restricted_unseen = unseen
            report.warnings += [cannot_tell] if cannot_tell else []
        judged = {
            importer.external_id(i): (
                components.existing(mapping.path_of(i.component, settings.component_root)),
                mapping.path_of(i.component, settings.component_root),
                viewers.people_named(i),
            )
            for i in issues
            if not i.restricted
        }
        with sign_in.reaching("the Model", settings.model, settings):
            unseen, cannot_tell = await viewers.unseen_in_components(
                model, auth, caller, judged, ids
            )
        if not cannot_tell:
            # A resumed run judges the issues an earlier run imported again,
            # against the access lists as they are now (the report file is
            # rewritten each run, so this one is the only list), apart.
            earlier = DoneState.read(settings.state_dir, importer.name)
            report.unseen = [line for line in unseen if line[0] not in earlier]
            report.unseen_before = [line for line in unseen if line[0] in earlier]
            report.viewers_judged_before = sum(1 for key in judged if key in earlier)
            report.viewers_judged = len(judged) - report.viewers_judged_before
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
            issue_ids = await write_issues(
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
