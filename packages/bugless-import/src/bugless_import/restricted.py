"""``--restricted-component``: where the source's restricted issues go, and why it may.

A source can show an issue to only some of those who read its project (a
Redmine private issue, a Jira issue security level: :attr:`SourceIssue.restricted`).
bugless restricts reading by component only, so such an issue may be
imported only into a component fewer people read than read the others.
Before anything is written, :func:`check` makes sure of it from what the
Model tells about components: each component's own ACL entries
(``Component.acl``), inherited by every subcomponent, a component with none
up its tree being open to everyone signed in. So the people who may read a
component are those its ACL chain names (every role can view), and:

* a component with no ACL up its tree is readable by everyone: refused;
* a component whose chain names everyone the target's chain names (its own
  subcomponent, say) is readable by all the target's readers: refused;
* a chain naming a strict part of the target's (or any ACL, the target being
  open) is narrower: accepted;
* otherwise (and for a strict part by name, since one group may hold
  another's members) the readers are compared as the Model will judge them:
  users by the groups they sign in with. The Authenticator lists the members
  it knows (``ListGroupMembers``: a directory's, once they have signed in).
  When every user it knows may read the target may read the component too,
  refused; when some may not, accepted, the report saying how many. When it
  knows no reader of the target (no one has signed in yet) or a group is too
  big to list, bugless cannot tell: accepted only if the component's own ACL
  is set, not merely inherited, and the report says what was compared, for
  the admin to confirm.

The targets compared with are ``--component-root`` and every component the
restricted issues' own components map to. The issues then go into the
component whatever their component in the source (their component changes
are left out of their history, which would otherwise move them out of it).

The people such an issue names (its reporter, assignee and CC as the source
ends) may not all read that component: the source showed the issue to them,
bugless will not, nor mail them about it. :meth:`RestrictedComponent.unseen`
asks the Model (``CheckViewers``, as a frontend asks after a save;
:mod:`bugless_import.viewers`, which does the same for every other issue)
and the report names them per issue. It warns, never refuses: the issue names them
as the source did, and giving them access (or not) is the admin's call after
reading the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bugless_core.clients import call
from bugless_core.errors import FailedPrecondition, MethodNotServed, NotFound
from bugless_core.importer import SourceIssue
from bugless_import import viewers
from bugless_proto import v1

#: The component key the restricted issues carry once re-homed: no source
#: component name holds a NUL, so it never stands for one of the source's.
RESTRICTED = "\x00restricted"
#: Issues per BatchGetIssues call (the Model's limit).
_BATCH = 500
#: Groups per ListGroupMembers call (the Authenticator's limit: an access list's entries).
_GROUPS_PER_CALL = 200


class RestrictedComponentRefused(FailedPrecondition):
    """``--restricted-component`` names no component, or one not narrower than the import's.

    Or the Authenticator is of a release before ``ListGroupMembers``: the
    component cannot be checked until it is upgraded (docs/upgrades.md's
    order: the Authenticator before the importers).

    The command exits 2 (bad usage or configuration): nothing was written,
    and the run starts once the component exists with the right ACL.
    """


@dataclass(frozen=True)
class RestrictedComponent:
    """The checked component: its id, path and what was found, for the report."""

    component_id: int
    path: str
    checked: tuple[str, ...]

    async def elsewhere(
        self,
        model: v1.ModelStub,
        caller: v1.Caller,
        external_ids: Iterable[str],
        issue_ids: Mapping[str, int],
    ) -> list[str]:
        """A warning for each restricted issue that is not in this component after the run.

        An issue an earlier run imported before the source restricted it
        (or before ``--restricted-component`` was given) is only extended by
        this one: the import never moves an issue, so it stays where anyone
        who reads that component reads it, and the admin must move it.
        """
        wanted = {issue_ids[e]: e for e in external_ids if issue_ids.get(e)}
        found: list[v1.Issue] = []
        ids = sorted(wanted)
        for start in range(0, len(ids), _BATCH):
            answer = await call(
                model.batch_get_issues,
                v1.BatchGetIssuesRequest(caller=caller, issue_ids=ids[start : start + _BATCH]),
            )
            found += answer.issues
        paths: dict[int, str] = {}
        for issue in found:
            if issue.component_id != self.component_id and issue.component_id not in paths:
                where = await call(
                    model.get_component,
                    v1.GetComponentRequest(caller=caller, component_id=issue.component_id),
                )
                paths[issue.component_id] = where.path
        return [
            f"{wanted[i.id]} (issue {i.id}) is restricted in the source but an earlier run "
            f"imported it into {paths[i.component_id]}, where it stays (the import moves no "
            f"issue): move it to {self.path} by hand"
            for i in found
            if i.component_id != self.component_id
        ]

    async def unseen(
        self,
        model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        caller: v1.Caller,
        named: Mapping[str, Iterable[tuple[str, str]]],
        user_ids: Mapping[str, str],
    ) -> tuple[list[tuple[str, str]], str]:
        """Per restricted issue, the people it names who cannot view this component.

        Args:
            model: The Model (``CheckViewers``).
            auth: The Authenticator (``GetUsers``, for their usernames).
            caller: The importing admin.
            named: External id -> (person key, role) of :func:`viewers.people_named`.
            user_ids: Person key -> bugless user id (a dry run lacks the
                placeholders it would make).

        Returns:
            (external id, who and why) for each issue naming anyone who
            cannot, in ``named``'s order; and a warning, when the Model
            cannot tell (an earlier release without ``CheckViewers``, or one
            started without ``--auth``), else "".
        """
        people = {user_ids[k] for roles in named.values() for k, _ in roles if k in user_ids}
        try:
            blocked = await viewers.blocked_viewers(model, caller, self.component_id, people)
        except viewers.CannotTell as exc:
            return [], (
                f"{self.path}: who of the people the restricted issues name may view it was not "
                f"checked: {exc}"
            )
        names = await viewers.usernames(auth, set(blocked))
        lines: list[tuple[str, str]] = []
        for external_id, roles in named.items():
            shown = viewers.who_cannot(roles, user_ids, blocked, names)
            if shown:
                lines.append((external_id, shown))
        return lines, ""


@dataclass(frozen=True)
class _Readers:
    """Who may read a component: the principals its ACL chain names (none: everyone)."""

    path: str
    principals: frozenset[str]
    #: Of the chain, the components that have ACL entries (where they come from).
    sources: tuple[str, ...]


def rehome(issue: SourceIssue) -> SourceIssue:
    """``issue`` in the restricted component for its whole history.

    Its component changes are left out: replayed, they would move it into
    the components the source's values map to, which anyone may read.
    """
    entries = tuple(
        dataclasses.replace(e, changes=tuple(c for c in e.changes if c.field != "component"))
        for e in issue.entries
    )
    return dataclasses.replace(issue, component=RESTRICTED, entries=entries)


def _principal(entry: v1.AclEntry) -> str | None:
    principal = entry.principal
    if principal is None or entry.role is v1.Role.UNSPECIFIED:
        return None
    if principal.user is not None:
        return f"user:{principal.user}"
    if principal.group is not None:
        return f"group:{principal.group}"
    return None


async def _chain(model: v1.ModelStub, caller: v1.Caller, path: str) -> list[v1.Component]:
    """The components from the top down to ``path``, as far as they exist."""
    found: list[v1.Component] = []
    names = [p.strip() for p in path.split(">") if p.strip()]
    for depth in range(1, len(names) + 1):
        try:
            found.append(
                await call(
                    model.get_component,
                    v1.GetComponentRequest(caller=caller, path=">".join(names[:depth])),
                )
            )
        except NotFound:
            break
    return found


def _readers(path: str, chain: Iterable[v1.Component]) -> _Readers:
    principals: set[str] = set()
    sources: list[str] = []
    for component in chain:
        own = {p for p in map(_principal, component.acl) if p}
        if own:
            sources.append(component.path)
            principals |= own
    return _Readers(path, frozenset(principals), tuple(sources))


async def check(
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
    caller: v1.Caller,
    path: str,
    targets: Iterable[str],
) -> RestrictedComponent:
    """Whether ``path`` may take the restricted issues: narrower than each of ``targets``.

    Reads only (GetComponent up each path, GetUsers for the names shown).

    Raises:
        RestrictedComponentRefused: no such component, archived, open to
            everyone, readable by everyone who reads a target, or not
            provably narrower with no ACL of its own; the message says
            which and what to do.
    """
    flag = f"--restricted-component {path!r}"
    chain = await _chain(model, caller, path)
    depth = len([p for p in path.split(">") if p.strip()])
    if len(chain) < depth or depth == 0:
        raise RestrictedComponentRefused(
            f"{flag}: no such component. Create it and give it an ACL naming only those who "
            "may read the source's restricted issues (e.g. bugless component create NAME "
            "--viewer group:security), then run again"
        )
    component = chain[-1]
    if component.archived:
        raise RestrictedComponentRefused(f"{flag}: the component is archived")
    names = await _usernames(auth, chain)
    mine = _readers(component.path, chain)
    if not mine.principals:
        raise RestrictedComponentRefused(
            f"{flag}: neither it nor a component above it has an ACL, so everyone signed in "
            "may read it; give it an ACL naming only those who may read the source's "
            "restricted issues"
        )
    checked = [f"{component.path} is readable by {_shown(mine, names)}"]
    members = GroupMembers(auth)
    for target in dict.fromkeys(t for t in targets if t.strip()):
        above = await _chain(model, caller, target)
        theirs = _readers(target, above)
        names.update(await _usernames(auth, above))
        if not theirs.principals:
            checked.append(f"narrower than {target}: everyone signed in may read that")
            continue
        if mine.principals >= theirs.principals:
            raise RestrictedComponentRefused(
                f"{flag}: everyone who may read {target} ({_shown(theirs, names)}) may read "
                f"{component.path} too ({_shown(mine, names)}; ACLs are inherited, so no "
                f"subcomponent of {target} is narrower than it): give the restricted issues "
                "a component whose ACL names fewer"
            )
        ours, readers = await members.users(mine.principals), await members.users(theirs.principals)
        if ours is not None and readers:
            shut_out = readers - ours
            if not shut_out:
                raise RestrictedComponentRefused(
                    f"{flag}: every one of the {len(readers)} users the Authenticator knows "
                    f"may read {target} ({_shown(theirs, names)}) may read {component.path} "
                    f"too ({_shown(mine, names)}), by the groups they signed in with: give "
                    "the restricted issues a component whose ACL names fewer"
                )
            checked.append(
                f"narrower than {target} ({_shown(theirs, names)}): {len(shut_out)} of the "
                f"{len(readers)} users the Authenticator knows may read that may not read "
                f"{component.path} (group members as of their last sign-in)"
            )
        elif mine.principals < theirs.principals:
            checked.append(f"narrower than {target}: {_shown(theirs, names)}")
        elif not component.acl:
            raise RestrictedComponentRefused(
                f"{flag}: its readers ({_shown(mine, names)}) and those of {target} "
                f"({_shown(theirs, names)}) are not one a part of the other, and the "
                f"Authenticator knows {_unknown(readers)} to tell which is narrower; its ACL "
                "is only inherited: give the component an ACL of its own naming only those "
                "who may read the source's restricted issues"
            )
        else:
            checked.append(
                f"not comparable with {target} ({_shown(theirs, names)}): the Authenticator "
                f"knows {_unknown(readers)}; accepted because {component.path} has its own "
                "ACL: check that only those who may read the restricted issues are in it"
            )
    return RestrictedComponent(component.id, component.path, tuple(checked))


class GroupMembers:
    """Who is in a group, as the Authenticator knows it (each group asked once)."""

    def __init__(self, auth: v1.AuthenticatorStub) -> None:
        """Ask ``auth`` (``ListGroupMembers``) when a group is first needed."""
        self._auth = auth
        self._known: dict[str, frozenset[str] | None] = {}

    async def users(self, principals: Iterable[str]) -> frozenset[str] | None:
        """The user ids ``principals`` name or hold; None if a group is too big to list."""
        wanted = sorted({p for p in principals if p.startswith("group:")} - set(self._known))
        for start in range(0, len(wanted), _GROUPS_PER_CALL):
            request = v1.ListGroupMembersRequest(
                groups=[g.removeprefix("group:") for g in wanted[start : start + _GROUPS_PER_CALL]]
            )
            try:
                answer = await call(self._auth.list_group_members, request)
            except MethodNotServed as exc:
                # Alone, the answer of an earlier release would end the run as
                # the Authenticator failing (exit 1), naming nothing to do,
                # where the same Authenticator has just signed the run in.
                raise RestrictedComponentRefused(
                    "--restricted-component: the Authenticator does not serve ListGroupMembers, "
                    "so it is of a release before this import's; upgrade the Authenticator "
                    "first, as docs/upgrades.md orders, then run the import again (nothing "
                    "was written)"
                ) from exc
            for group in answer.groups:
                found = None if group.too_many else frozenset(group.user_ids)
                self._known[f"group:{group.group}"] = found
        users: set[str] = set()
        for principal in principals:
            if principal.startswith("user:"):
                users.add(principal.removeprefix("user:"))
                continue
            members = self._known.get(principal)
            if members is None:
                return None
            users |= members
        return frozenset(users)


def _unknown(readers: frozenset[str] | None) -> str:
    """Why the Authenticator's members could not decide (``readers``: the target's)."""
    if readers is None:
        return "too many members of a group to list"
    return "no user who may read that yet (a directory's members count once they have signed in)"


async def _usernames(auth: v1.AuthenticatorStub, chain: Iterable[v1.Component]) -> dict[str, str]:
    """User principals of ``chain`` -> ``user:USERNAME`` (the Model knows only opaque ids)."""
    ids = sorted(
        {e.principal.user for c in chain for e in c.acl if e.principal and e.principal.user}
    )
    if not ids:
        return {}
    answer = await call(auth.get_users, v1.GetUsersRequest(user_ids=ids))
    return {f"user:{u.user_id}": f"user:{u.username}" for u in answer.users}


def _shown(readers: _Readers, names: dict[str, str]) -> str:
    """``group:security, user:ann`` (the ACL of Security>Private)."""
    who = ", ".join(sorted(names.get(p, p) for p in readers.principals))
    return f"{who} (the ACL of {', '.join(readers.sources)})"
