"""After ``bugless issue create``/``update``: warn of people named who cannot view the issue.

Naming someone the component's access list leaves out (assignee, verifier,
CC) is allowed, but they will not see the issue or get mail about it. The
command asks the API (``Components.CheckViewers``, judged by the Model with
the groups the Authenticator knows) once the issue is saved, and prints one
``warning:`` line per reason on standard error, so ``--json`` output stays
clean and the exit status stays the save's. A check that fails (a server of
an earlier release, an outage) prints nothing: the save is done, and its
answer is what the command reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from bugless_core.limits import MAX_VIEWER_CHECK

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: By ``ViewerBlock`` name (the module imports no client code until it runs); worded
#: as the web's warning (:mod:`bugless_web.viewer_warnings`) words them.
_REASONS = {
    "NO_ACCESS": "cannot view component {path}",
    "CANNOT_SIGN_IN": "cannot sign in (a disabled account, or a person an import brought in "
    "whom no account has taken over yet)",
    "UNKNOWN_USER": "{is_are} not known to bugless",
}


def everyone_on(issue: v1.Issue) -> list[str]:
    """Assignee, verifier and CC of ``issue``: whom a new or moved issue is checked for."""
    return list(dict.fromkeys(p for p in (issue.assignee, issue.verifier, *issue.cc) if p))


def warning_lines(issue_id: int, path: str, cannot_view: Sequence[v1.BlockedViewer]) -> list[str]:
    """One ``warning:`` line per reason, naming the people it holds for."""
    by_reason: dict[str, list[str]] = {}
    for person in cannot_view:
        by_reason.setdefault(person.reason.name or "", []).append(person.user_id)
    lines = []
    for reason, template in _REASONS.items():
        names = by_reason.get(reason)
        if names:
            why = template.format(path=path, is_are="are" if names[1:] else "is")
            lines.append(
                f"warning: {', '.join(names)} {why}: they will not see issue {issue_id} "
                "or get mail about it"
            )
    return lines


async def warn_of_hidden_people(client: BuglessClient, issue: v1.Issue, people: list[str]) -> None:
    """Print on standard error who of ``people`` (usernames) cannot view ``issue``."""
    wanted = list(dict.fromkeys(p for p in people if p))
    path = ""
    cannot_view: list[v1.BlockedViewer] = []
    try:
        for start in range(0, len(wanted), MAX_VIEWER_CHECK):
            part = await client.check_viewers(
                issue.component_id, wanted[start : start + MAX_VIEWER_CHECK]
            )
            path = part.component_path
            cannot_view += part.cannot_view
    except Exception:  # the save is done: a failed check costs the warning only
        return
    for line in warning_lines(issue.id, path, cannot_view):
        click.secho(line, fg="yellow", err=True)
