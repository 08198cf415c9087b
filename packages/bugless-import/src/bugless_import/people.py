"""The people an import names, and their bugless accounts.

Every person key the source's issues name (reporters, authors, uploaders,
assignees and CCs, in the issues and in their logged changes) is matched
by the Authenticator (``MatchImportUsers``: by e-mail, by username, else a
placeholder account), in batches; the report counts how each was matched
and names the placeholders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bugless_core.clients import call
from bugless_core.importer import SourceAttachment, SourceIssue, SourcePerson
from bugless_core.usernames import placeholder_username
from bugless_import import convert
from bugless_import.report import ImportReport
from bugless_proto import v1

_MATCH_BATCH = 1000


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


def unknown_person(key: str) -> SourcePerson:
    """A person the source names but does not list: an address is an e-mail."""
    if "@" in key and " " not in key:
        return SourcePerson(key=key, email=key)
    return SourcePerson(key=key, username=key)


async def match_people(
    auth: v1.AuthenticatorStub,
    token: str,
    source: str,
    people: Sequence[SourcePerson],
    *,
    create: bool,
    report: ImportReport,
) -> dict[str, str]:
    """Person key -> user id of ``people``, matched (and, with ``create``, placeholders made).

    A dry run (``create`` False) makes no placeholder: those keys are left
    out of the answer, and the report names the placeholders that would be
    made.
    """
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
