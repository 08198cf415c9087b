"""After a CLI save: warn of people named or ``@mentioned`` who cannot view the issues.

Naming someone the component's access list leaves out (assignee, verifier,
CC, a user field) is allowed, but they will not see the issue or get mail
about it; nor will someone a title, description or comment ``@mentions``
(``issue create``, ``update``, ``comment``, ``edit-comment``). The command
asks the API (``Issues.CheckViewers``, judged by the Model with the groups
the Authenticator knows) once the issues are saved, and prints one
``warning:`` line per component and reason (naming the issues that name
those people) on standard error, so ``--json`` output stays clean and the
exit status stays the save's. A check that fails (a server of an earlier
release, an outage) prints nothing: the save is done, and its answer is
what the command reports. Whom it checks and the sentences are the web's
(:mod:`bugless_core.viewer_warnings`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from bugless_core.limits import MAX_VIEWER_CHECK
from bugless_core.usernames import username_key
from bugless_core.viewer_warnings import (
    issues_text,
    newly_mentioned,
    people_on,
    warning_sentences,
)

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def warning_lines(
    issue_ids: Sequence[int], path: str, cannot_view: Sequence[v1.BlockedViewer]
) -> list[str]:
    """One ``warning:`` line per reason, naming the people it holds for, as the web words it."""
    by_reason: dict[str, list[str]] = {}
    for person in cannot_view:
        by_reason.setdefault(person.reason.name or "", []).append(person.user_id)
    return [f"warning: {s}" for s in warning_sentences(path, by_reason, issues_text(issue_ids))]


async def _component_check(
    client: BuglessClient, named: Mapping[int, Sequence[str]]
) -> tuple[str, list[v1.BlockedViewer]]:
    """The path of one component and who of the people ``named`` on its issues cannot view it.

    The API answers only about people an issue names, so each person is
    asked about on the first issue naming them: a bulk change names the
    same people on every issue, which makes one call for the component
    (batches of the limit), not one per issue.
    """
    path = ""
    asked: set[str] = set()
    cannot_view: list[v1.BlockedViewer] = []
    for issue_id, people in named.items():
        wanted = [p for p in dict.fromkeys(people) if p and p not in asked]
        asked.update(wanted)
        for start in range(0, len(wanted), MAX_VIEWER_CHECK):
            part = await client.check_viewers(issue_id, wanted[start : start + MAX_VIEWER_CHECK])
            path = part.component_path
            cannot_view += part.cannot_view
    return path, cannot_view


async def warn_per_component(
    client: BuglessClient, named: Mapping[int, Mapping[int, Sequence[str]]]
) -> None:
    """Print on standard error who of the people named cannot view the issues, by component.

    A line names the issues that name its people, not every issue changed
    in the component: after a move, the people on each issue differ.

    Args:
        client: The API (``Issues.CheckViewers``).
        named: Component id to the issues changed there, each to the
            usernames the change named on it.
    """
    lines: list[str] = []
    try:
        for issues in named.values():
            path, cannot_view = await _component_check(client, issues)
            # Each person is named with the issues that name them: after a
            # move, someone CC'd on one issue does not miss the others.
            by_issues: dict[tuple[int, ...], list[v1.BlockedViewer]] = {}
            for person in cannot_view:
                key = person.user_id.casefold()
                naming = tuple(
                    issue_id
                    for issue_id, people in issues.items()
                    if any(p.casefold() == key for p in people)
                )
                by_issues.setdefault(naming or tuple(issues), []).append(person)
            for issue_ids, blocked in by_issues.items():
                lines += warning_lines(issue_ids, path, blocked)
    except Exception:  # the save is done: a failed check costs the warning only
        return
    for line in lines:
        click.secho(line, fg="yellow", err=True)


async def warn_of_hidden_people(
    client: BuglessClient,
    issue: v1.Issue,
    people: list[str],
    *,
    texts: Sequence[str] = (),
    replaced: Sequence[str] = (),
) -> None:
    """Print on standard error who of ``people`` (usernames) cannot view ``issue``.

    The people ``texts`` (what the save wrote: a title, a description, a
    comment) newly ``@mention`` are checked too, as the web checks them
    (:func:`bugless_core.viewer_warnings.newly_mentioned`): not those the
    issue already names, nor those the ``replaced`` texts mentioned (an
    edit's earlier text). The writer can view the issue they just wrote, so
    the check never names them.
    """
    mentioned = mentioned_on(issue, texts, replaced=replaced)
    await warn_per_component(client, {issue.component_id: {issue.id: [*people, *mentioned]}})


def mentioned_on(
    issue: v1.Issue, texts: Sequence[str], *, replaced: Sequence[str] = ()
) -> list[str]:
    """Whom ``texts`` newly ``@mention`` on ``issue``, each name as its first mention wrote it.

    Not the people the issue already names, nor those the ``replaced``
    texts mentioned (:func:`bugless_core.viewer_warnings.newly_mentioned`).
    Spelled as written ("@Carol": ``Carol``), since the API's answer names
    people as the request spelled them and the warning quotes the writer.
    """
    from bugless_core.mentions import mentions_as_written  # noqa: PLC0415  (Markdown: lazily)

    known = {username_key(p) for p in people_on(issue)}
    mentioned = newly_mentioned(texts, replaced=replaced, known=known)
    if not mentioned:
        return []
    written = mentions_as_written(*texts)
    return [written.get(key, key) for key in mentioned]


async def replaced_text(
    client: BuglessClient, issue_id: int, entry_version: int, edit_version: int
) -> tuple[str, ...]:
    """The text of comment ``entry_version`` that the edit at ``edit_version`` replaced.

    Its latest earlier edit's text, else its own: the web's
    ``Timeline.current_text`` as the history stood before the edit. A history
    that cannot be read gives nothing (every mention is checked, as before).
    """
    text: str | None = None
    try:
        async for entry in client.iter_history(issue_id):
            if entry.version >= edit_version:
                break
            if entry_version in (entry.version, entry.edits_version):
                text = entry.comment
    except Exception:  # the save is done: a failed read costs the narrowing only
        return ()
    return () if text is None else (text,)
