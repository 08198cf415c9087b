"""After ``bugless issue create``/``update``: warn of people named who cannot view the issue.

Naming someone the component's access list leaves out (assignee, verifier,
CC) is allowed, but they will not see the issue or get mail about it. The
command asks the API (``Issues.CheckViewers``, judged by the Model with
the groups the Authenticator knows) once the issue is saved, and prints one
``warning:`` line per reason on standard error, so ``--json`` output stays
clean and the exit status stays the save's. A check that fails (a server of
an earlier release, an outage) prints nothing: the save is done, and its
answer is what the command reports. Whom it checks and the sentences are the
web's (:mod:`bugless_core.viewer_warnings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from bugless_core.limits import MAX_VIEWER_CHECK
from bugless_core.viewer_warnings import warning_sentences

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def warning_lines(issue_id: int, path: str, cannot_view: Sequence[v1.BlockedViewer]) -> list[str]:
    """One ``warning:`` line per reason, naming the people it holds for, as the web words it."""
    by_reason: dict[str, list[str]] = {}
    for person in cannot_view:
        by_reason.setdefault(person.reason.name or "", []).append(person.user_id)
    return [f"warning: {s}" for s in warning_sentences(path, by_reason, f"issue {issue_id}")]


async def warn_of_hidden_people(client: BuglessClient, issue: v1.Issue, people: list[str]) -> None:
    """Print on standard error who of ``people`` (usernames) cannot view ``issue``."""
    wanted = list(dict.fromkeys(p for p in people if p))
    path = ""
    cannot_view: list[v1.BlockedViewer] = []
    try:
        for start in range(0, len(wanted), MAX_VIEWER_CHECK):
            part = await client.check_viewers(issue.id, wanted[start : start + MAX_VIEWER_CHECK])
            path = part.component_path
            cannot_view += part.cannot_view
    except Exception:  # the save is done: a failed check costs the warning only
        return
    for line in warning_lines(issue.id, path, cannot_view):
        click.secho(line, fg="yellow", err=True)
