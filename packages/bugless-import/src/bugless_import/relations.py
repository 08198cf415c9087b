"""The relations between imported issues as they are now: duplicate of, parent, blocking.

A relation can only be set once both of its issues exist in bugless, and a
source lists relations to issues a run may not read (another project, a
filtered listing). The source's logged changes of relations come with the
history (:mod:`.relation_history`); the relations as the source has them at
the end are what this pass makes sure of: after the issues are imported, it
sets each relation both of whose issues the state directory knows and that
the history did not set (a source that logs none; a relation the issue had
when it was created), with an
ordinary change of the issue holding it (BatchChangeIssues for the issues
lacking the same change, such as the sub-issues of one parent; ChangeIssue
for one alone).

Why a change by the import identity, now, and not an imported entry at
the source's author and time: the history is append-only and in time
order, and the relation pass runs after the issue's imported entries, so an
entry at the source's (earlier) time would be out of order; most sources do
not say who linked two issues when (Redmine's relations and Jira's issue
links carry neither); and a ChangeIssue goes through the Model's one place
for relations, which keeps blocking two-way (the other issue's entry names
this one as its cause) and refuses cycles. The entry is that change alone,
by the import identity, with no comment: none was written, and a comment
would count the import identity as the issue's (last) commenter; the
issues' external ids name where both came from. ImportIssue's ``import_position``
counts source items, not entries, so a later refresh still appends only
what is new.

Idempotent: the issues are read first (in batches) and only what they lack
is sent, so a second run (or ``--refresh``) makes one read per 500 issues
and writes nothing. What bugless already holds
differently is kept (a parent someone set after moving in is theirs), and
reported; relations the source dropped are not removed. Relations bugless
cannot hold (Redmine's ``relates``, ``precedes``; a second parent) are
reported, not set.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from bugless_core.clients import call
from bugless_core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from bugless_core.importer import RELATION_KINDS, Importer, SourceIssue
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: How a relation reads in the report: ``<holder> <phrase> <target>``.
PHRASES = {"duplicate_of": "duplicate of", "parent": "sub-issue of", "blocks": "blocks"}
#: The field of the holder that a one-valued relation sets.
_FIELDS = {"duplicate_of": "duplicate_of_id", "parent": "parent_id"}
#: Refusals of one relation that leave the others to be tried.
_REFUSALS = (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied)
_ATTEMPTS = 3
#: Issues per BatchChangeIssues (its limit).
_BATCH_CHANGE = 100
#: The Issue fields the relation pass reads.
_READ_MASK = ["version", "status", "blocking_ids", "parent_id", "duplicate_of_id"]


@dataclass(frozen=True)
class Link:
    """A relation by external ids: ``holder`` duplicates, is a child of, or blocks ``target``."""

    holder: str
    kind: str
    target: str
    #: The source's name of the relation's type (:attr:`SourceRelation.type_name`), or "".
    #: Not part of what the link is: one relation listed by a field and by a
    #: named link type (Jira's ``parent`` and a parent-child link) is one.
    type_name: str = field(default="", compare=False)

    def __str__(self) -> str:
        named = f' (type "{self.type_name}")' if self.type_name else ""
        return f"{self.holder} {PHRASES.get(self.kind, self.kind)} {self.target}{named}"


def links(importer: Importer, issues: Iterable[SourceIssue]) -> list[Link]:
    """Every relation the issues list, each once, in the order first listed.

    A relation both of its issues list (Redmine, Jira) is one link, and
    ``reverse`` relations are turned to be held by the issue that holds them
    in bugless (the duplicate, the sub-issue, the blocking issue).
    """
    seen: dict[Link, None] = {}
    for issue in issues:
        own = importer.external_id(issue)
        for relation in issue.relations:
            other = importer.key_external_id(relation.target)
            holder, target = (other, own) if relation.reverse else (own, other)
            seen.setdefault(Link(holder, relation.kind, target, relation.type_name), None)
    return list(seen)


@dataclass
class RelationReport:
    """What the relation pass found and did."""

    #: Relations bugless holds, by kind.
    found: Counter[str]
    #: Relations of kinds bugless does not hold.
    unsupported: list[Link]
    #: (link, why) of relations one of whose issues is not imported.
    unresolved: list[tuple[Link, str]]
    #: (link, why) of relations not set: the Model refused (a cycle), or the
    #: issue has another value bugless keeps, or it can hold only one.
    refused: list[tuple[Link, str]]
    set: int = 0
    present: int = 0


def plan(
    found: Sequence[Link], issue_ids: Mapping[str, int]
) -> tuple[RelationReport, dict[str, list[Link]]]:
    """Split ``found`` into what can be set (by holder) and what is reported.

    ``issue_ids`` maps the external ids imported so far (this run and
    earlier ones) to issue ids; a dry run passes the run's own external ids.
    """
    report = RelationReport(found=Counter(), unsupported=[], unresolved=[], refused=[])
    by_holder: dict[str, list[Link]] = {}
    for link in found:
        if link.kind not in RELATION_KINDS:
            report.unsupported.append(link)
            continue
        report.found[link.kind] += 1
        missing = [e for e in (link.holder, link.target) if e not in issue_ids]
        if missing:
            report.unresolved.append((link, f"{' and '.join(missing)} not imported"))
            continue
        if link.holder == link.target:
            report.refused.append((link, "an issue cannot be related to itself"))
            continue
        by_holder.setdefault(link.holder, []).append(link)
    for holder, held in by_holder.items():
        for kind in _FIELDS:
            one_valued = [link for link in held if link.kind == kind]
            for extra in one_valued[1:]:
                why = f"bugless holds one {PHRASES[kind]!r}; {one_valued[0].target} is set"
                report.refused.append((extra, why))
                held.remove(extra)
        by_holder[holder] = held
    return report, by_holder


def _delta(
    issue: v1.Issue, held: Sequence[Link], issue_ids: Mapping[str, int], report: RelationReport
) -> tuple[v1.IssueDelta, list[Link]]:
    """What ``issue`` lacks of ``held``, and the links that delta sets."""
    fields = v1.IssueFields()
    delta = v1.IssueDelta(fields=fields)
    paths: list[str] = []
    sent: list[Link] = []
    for link in held:
        target = issue_ids[link.target]
        if link.kind == "blocks":
            if target in issue.blocking_ids:
                report.present += 1
            else:
                delta.blocking_add.append(target)
                sent.append(link)
            continue
        field = _FIELDS[link.kind]
        current = getattr(issue, field)
        if current == target:
            report.present += 1
        elif current:
            why = f"issue {issue.id} has {field} {current} in bugless, which is kept"
            report.refused.append((link, why))
        else:
            setattr(fields, field, target)
            paths.append(field)
            sent.append(link)
    if "duplicate_of_id" in paths:
        # The source's status is kept: said with the link, the Model does not
        # make the issue Duplicate (bugless_core.model._duplicates).
        fields.status = issue.status
        paths.append("status")
    if paths:
        delta.update_mask = FieldMask(paths=paths)
    return delta, sent


def _signature(sent: Sequence[Link]) -> tuple[object, ...]:
    """What a holder's change is, apart from the holder: equal for one delta."""
    return tuple(sorted((link.kind, link.target) for link in sent))


#: A holder lacking relations: its issue as read, external id, what it lacks.
_Member = tuple[v1.Issue, str, list[Link]]


def _touched(members: Sequence[_Member], issue_ids: Mapping[str, int]) -> frozenset[int]:
    """The issues one change of ``members`` writes: the holders and their targets."""
    return frozenset(
        [issue.id for issue, _, _ in members]
        + [issue_ids[link.target] for _, _, sent in members for link in sent]
    )


@dataclass
class RelationSetter:
    """Sets the planned relations on the Model (what each holder lacks).

    Attributes:
        model: The Model, acting as the import identity.
        caller: The import identity.
        issue_ids: External id -> issue id of every imported issue.
        report: Where what was set, found set, or refused is counted.
        concurrency: Changes in flight at once (``--concurrency``): changes
            of holders lacking different relations run together when no
            issue is in two of them.
    """

    model: v1.ModelStub
    caller: v1.Caller
    issue_ids: Mapping[str, int]
    report: RelationReport
    concurrency: int = 1

    #: Holders read per BatchGetIssues before any change (its limit is 500);
    #: 0 reads each holder on its own (``bench.import_relations`` compares).
    PREREAD_BATCH: ClassVar[int] = 500

    async def apply(self, by_holder: Mapping[str, Sequence[Link]]) -> None:
        """Set what each holder lacks.

        The holders are read first, :attr:`PREREAD_BATCH` per BatchGetIssues
        (only the relation fields): a second run, or a ``--refresh``, finds
        them all set and makes no other call. The holders that lack the same
        change (the sub-issues of one parent) get it in one BatchChangeIssues
        (each issue its own transaction, at the version read). An item
        refused there, and every holder when :attr:`PREREAD_BATCH` is 0, goes
        through :meth:`_change`. Up to :attr:`concurrency` of those changes
        run at once (:meth:`_change_apart`).
        """
        if not self.PREREAD_BATCH:
            for holder, held in by_holder.items():
                await self._one(self.issue_ids[holder], held)
            return
        groups: dict[tuple[object, ...], list[_Member]] = {}
        for holder, issue, sent in await self._lacking(by_holder):
            # A duplicate-of link is sent with the issue's own status (see _delta).
            status = issue.status if any(link.kind == "duplicate_of" for link in sent) else None
            groups.setdefault((*_signature(sent), status), []).append((issue, holder, sent))
        await self._change_apart(
            by_holder,
            [
                members[start : start + _BATCH_CHANGE]
                for members in groups.values()
                for start in range(0, len(members), _BATCH_CHANGE)
            ],
        )

    async def _change_apart(
        self, by_holder: Mapping[str, Sequence[Link]], changes: Sequence[Sequence[_Member]]
    ) -> None:
        """Run ``changes`` (each one :meth:`_change_together`), :attr:`concurrency` at once.

        Two changes that touch one issue (as holder or target: blocking
        writes an entry on the blocked issue too) never run at once, so they
        do not make each other's versions stale; the later one still
        retries a version another changed before it (:meth:`_one`). The
        Model serialises what could close a parent or duplicate cycle across
        issues, so a cycle through changes run at once is refused there as
        one run in turn is. A change that waits lets later ones on other
        issues go first; every change runs once, and the first error raised
        ends the pass after the changes in flight are cancelled.
        """
        pending = [(_touched(members, self.issue_ids), members) for members in changes]
        busy: set[int] = set()
        running: dict[asyncio.Task[None], frozenset[int]] = {}
        try:
            while pending or running:
                waiting = []
                for touched, members in pending:
                    if len(running) < self.concurrency and busy.isdisjoint(touched):
                        busy |= touched
                        task = asyncio.create_task(self._change_together(by_holder, members))
                        running[task] = touched
                    else:
                        waiting.append((touched, members))
                pending = waiting
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    busy -= running.pop(task)
                    task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _one(self, issue_id: int, held: Sequence[Link]) -> None:
        """Set what one issue lacks; a refused whole is tried relation by relation."""
        if not await self._change(issue_id, held, whole=True):
            for link in held:
                await self._change(issue_id, [link])

    async def _lacking(
        self, by_holder: Mapping[str, Sequence[Link]]
    ) -> list[tuple[str, v1.Issue, list[Link]]]:
        """The holders that lack a relation, as read, with what they lack.

        What they have is counted (and what bugless holds differently
        reported) here; a holder the read did not find is left to
        :meth:`_change`, which reports it.
        """
        holders = list(by_holder)
        lacking: list[tuple[str, v1.Issue, list[Link]]] = []
        for start in range(0, len(holders), self.PREREAD_BATCH):
            chunk = holders[start : start + self.PREREAD_BATCH]
            answer = await call(
                self.model.batch_get_issues,
                v1.BatchGetIssuesRequest(
                    caller=self.caller,
                    issue_ids=[self.issue_ids[h] for h in chunk],
                    read_mask=FieldMask(paths=_READ_MASK),
                ),
            )
            found = {issue.id: issue for issue in answer.issues}
            for holder in chunk:
                issue = found.get(self.issue_ids[holder])
                if issue is None:
                    await self._one(self.issue_ids[holder], by_holder[holder])
                    continue
                _, sent = _delta(issue, by_holder[holder], self.issue_ids, self.report)
                if sent:
                    lacking.append((holder, issue, sent))
        return lacking

    async def _change_together(
        self, by_holder: Mapping[str, Sequence[Link]], members: Sequence[_Member]
    ) -> None:
        """One BatchChangeIssues for holders lacking the same; a refused item alone again."""
        first_issue, _, sent = members[0]
        scratch = RelationReport(found=Counter(), unsupported=[], unresolved=[], refused=[])
        delta, _ = _delta(first_issue, sent, self.issue_ids, scratch)
        answer = await call(
            self.model.batch_change_issues,
            v1.BatchChangeIssuesRequest(
                caller=self.caller,
                issues=[
                    v1.IssueVersion(issue_id=i.id, expected_version=i.version)
                    for i, _, _ in members
                ],
                delta=delta,
                atomic=False,
            ),
        )
        for (issue, _, links), result in zip(members, answer.results, strict=True):
            if result.code:
                # Changed meanwhile, or refused (a cycle): read it and try it alone,
                # which retries or reports the relation.
                await self._one(issue.id, links)
            else:
                self.report.set += len(links)

    async def _change(self, issue_id: int, held: Sequence[Link], *, whole: bool = False) -> bool:
        """Send what the issue lacks of ``held``; False if the Model refused it as a whole.

        ``whole``: a refusal of more than one relation is left to the caller
        (to try each alone); otherwise it is reported against the links.
        """
        report = self.report
        for attempt in range(_ATTEMPTS):
            checked = RelationReport(found=Counter(), unsupported=[], unresolved=[], refused=[])
            try:
                issue = await call(
                    self.model.get_issue, v1.GetIssueRequest(caller=self.caller, issue_id=issue_id)
                )
            except NotFound as exc:
                report.refused.extend((link, exc.message) for link in held)
                return True
            delta, sent = _delta(issue, held, self.issue_ids, checked)
            if sent:
                try:
                    await call(
                        self.model.change_issue,
                        v1.ChangeIssueRequest(
                            caller=self.caller, issue_id=issue_id, expected_version=issue.version,
                            delta=delta,
                        ),
                    )  # fmt: skip
                except Conflict as exc:
                    if attempt + 1 < _ATTEMPTS:
                        continue
                    report.refused.extend((link, exc.message) for link in sent)
                    return True
                except _REFUSALS as exc:
                    if whole and len(sent) > 1:
                        return False
                    report.refused.extend((link, exc.message) for link in sent)
                    sent = []
            report.set += len(sent)
            report.present += checked.present
            report.refused.extend(checked.refused)
            return True
        return True
