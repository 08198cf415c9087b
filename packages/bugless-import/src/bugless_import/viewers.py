"""Who an imported issue names that will not be able to view it in bugless.

The source showed an issue to the people it names (its reporter, assignee
and CC as the source ends: :func:`people_named`); in bugless, whoever may
read the issue's component may view it, and no one else. Where the
component's access list leaves one of them out, bugless will neither show
them the issue nor mail them about it. The Model says who (``CheckViewers``,
as a frontend asks after a save), per component for the people its issues
name; the report names them per issue. It warns, never refuses: the issue
names them as the source did, and giving them access (or not) is the
admin's call after reading the report.

Only that direction can be judged. Who may view an issue in bugless that
could not in the source would need the source's own list of an issue's
readers, which no importer reads (a tracker's project membership and
permission policies); what an importer does tell is whether the source
restricts an issue at all (:attr:`SourceIssue.restricted`), and such an
issue is left out or goes into ``--restricted-component``
(:mod:`bugless_import.restricted`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from bugless_core.clients import call
from bugless_core.errors import FailedPrecondition, PermissionDenied
from bugless_core.importer import SourceIssue
from bugless_proto import v1

#: People per CheckViewers call (the Model's limit).
_PEOPLE_PER_CALL = 100
#: Why someone cannot view the component, in the report's words.
_BLOCKED = {
    v1.ViewerBlock.NO_ACCESS: "no access",
    v1.ViewerBlock.UNKNOWN_USER: "no such account",
    v1.ViewerBlock.CANNOT_SIGN_IN: "cannot sign in (a placeholder or a disabled account)",
}
#: A person a dry run has no account for yet: the run would make a placeholder.
_NO_ACCOUNT_YET = "no account yet (the run makes a placeholder, which cannot sign in)"
#: What an issue outside ``--restricted-component`` reports: the people its
#: component's access list leaves out. Placeholders (and disabled accounts)
#: sign in nowhere, which the report's placeholder list already says.
NOT_LET_IN = frozenset({v1.ViewerBlock.NO_ACCESS, v1.ViewerBlock.UNKNOWN_USER})


class CannotTell(Exception):
    """The Model cannot say who may view a component (the message says why)."""


def people_named(issue: SourceIssue) -> list[tuple[str, str]]:
    """(person key, role) of whom ``issue`` names as the source ends: reporter, assignee, CC."""
    named = [(issue.reporter, "reporter"), (issue.assignee, "assignee")]
    named += [(key, "cc") for key in issue.cc]
    return [(key, role) for key, role in named if key]


async def _check_viewers(
    model: v1.ModelStub, request: v1.CheckViewersRequest
) -> v1.CheckViewersResponse:
    """``CheckViewers``; a Model that cannot answer it is told apart from a failure.

    A Model of an earlier release refuses it to the import identity
    (PERMISSION_DENIED: its access table let only the frontends ask), or
    does not serve it (:class:`~bugless_core.errors.MethodNotServed`, a
    FailedPrecondition naming the Model to upgrade); one started without
    ``--auth`` answers FAILED_PRECONDITION. Either way the import goes on
    (nothing it writes depends on the answer) and the report says the people
    were not checked. Anything else (the Model unreachable) stops the run, before
    anything is written.

    Raises:
        CannotTell: the Model cannot answer, the message saying why.
    """
    try:
        return await call(model.check_viewers, request)
    except (FailedPrecondition, PermissionDenied) as exc:
        raise CannotTell(str(exc)) from exc


async def blocked_viewers(
    model: v1.ModelStub, caller: v1.Caller, component_id: int, user_ids: Iterable[str]
) -> dict[str, v1.ViewerBlock]:
    """User id -> why, of ``user_ids`` who cannot view the issues of ``component_id``.

    Raises:
        CannotTell: the Model cannot say (:func:`_check_viewers`).
    """
    people = sorted(set(user_ids))
    blocked: dict[str, v1.ViewerBlock] = {}
    for start in range(0, len(people), _PEOPLE_PER_CALL):
        request = v1.CheckViewersRequest(
            caller=caller,
            component_id=component_id,
            user_ids=people[start : start + _PEOPLE_PER_CALL],
        )
        answer = await _check_viewers(model, request)
        blocked |= {b.user_id: b.reason for b in answer.cannot_view}
    return blocked


async def usernames(auth: v1.AuthenticatorStub, user_ids: Collection[str]) -> dict[str, str]:
    """User id -> username (``GetUsers``), for the report's lines."""
    if not user_ids:
        return {}
    found = await call(auth.get_users, v1.GetUsersRequest(user_ids=sorted(user_ids)))
    return {u.user_id: u.username for u in found.users}


def who_cannot(
    roles: Iterable[tuple[str, str]],
    user_ids: Mapping[str, str],
    blocked: Mapping[str, v1.ViewerBlock],
    names: Mapping[str, str],
    *,
    reasons: Collection[v1.ViewerBlock] | None = None,
    no_account: bool = True,
) -> str:
    """The people of ``roles`` who cannot view the issue, each with their roles and why.

    Args:
        roles: (person key, role) of :func:`people_named`.
        user_ids: Person key -> bugless user id (a dry run lacks the
            placeholders it would make).
        blocked: :func:`blocked_viewers`' answer for the issue's component.
        names: User id -> username.
        reasons: The reasons to name (None: every one).
        no_account: Whether to name a person without an account yet.

    Returns:
        ``who (roles): why; ...``, or "" when no one is to be named.
    """
    why: dict[tuple[str, str], list[str]] = {}
    for key, role in roles:
        user_id = user_ids.get(key)
        if user_id is None:
            if not no_account:
                continue
            who = (f"{key} (source)", _NO_ACCOUNT_YET)
        elif user_id in blocked and (reasons is None or blocked[user_id] in reasons):
            who = (names.get(user_id, user_id), _BLOCKED.get(blocked[user_id], "cannot view it"))
        else:
            continue
        why.setdefault(who, []).append(role)
    return "; ".join(f"{who} ({', '.join(rs)}): {reason}" for (who, reason), rs in why.items())


async def unseen_in_components(
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    caller: v1.Caller,
    issues: Mapping[str, tuple[int, str, list[tuple[str, str]]]],
    user_ids: Mapping[str, str],
) -> tuple[list[tuple[str, str]], str]:
    """Per issue, the people it names whose accounts its component's access list leaves out.

    Args:
        model: The Model (``CheckViewers``).
        auth: The Authenticator (``GetUsers``, for their usernames).
        caller: The importing admin.
        issues: External id -> (the component whose readers view it, 0
            for one open to everyone signed in; its path; the
            (person key, role) of :func:`people_named`).
        user_ids: Person key -> bugless user id.

    Returns:
        (external id, "PATH: who and why") for each issue naming anyone
        the access list leaves out (:data:`NOT_LET_IN`), in ``issues``'
        order; and a warning when the Model cannot tell, else "".
    """
    wanted: dict[int, set[str]] = {}
    for component_id, _, roles in issues.values():
        if component_id > 0:
            people = wanted.setdefault(component_id, set())
            people.update(user_ids[k] for k, _ in roles if k in user_ids)
    blocked: dict[int, dict[str, v1.ViewerBlock]] = {}
    try:
        for component_id, people in sorted(wanted.items()):
            found = await blocked_viewers(model, caller, component_id, people)
            blocked[component_id] = {u: r for u, r in found.items() if r in NOT_LET_IN}
    except CannotTell as exc:
        return [], (
            "who of the people the issues name may view them in their components was not "
            f"checked: {exc}"
        )
    names = await usernames(auth, {u for found in blocked.values() for u in found})
    lines: list[tuple[str, str]] = []
    for external_id, (component_id, path, roles) in issues.items():
        shown = who_cannot(
            roles, user_ids, blocked.get(component_id, {}), names,
            reasons=NOT_LET_IN, no_account=False,
        )  # fmt: skip
        if shown:
            lines.append((external_id, f"{path}: {shown}"))
    return lines, ""
