"""Who is told about one change, and why: the recipient rules.

The rules, in the order a person's reason is chosen (one notification per
person and change, with the first reason that applies). What the change did
to the person comes first, as it is what they may need to act on:

1. made the assignee, or taken off it; 2. made the verifier, or taken off
   it; 3. added to CC, or taken off it (a new issue makes all three),
4. ``@mentioned`` in the change's comment (the description of a new issue,
   and a new title),

then the roles they already held:

5. the assignee, 6. the reporter, 7. the verifier, 8. people on CC,
9. people who starred the issue,
10. subscribers of the issue's component (or of an ancestor, with subtree),
11. subscribers of a saved search the issue newly matches or stopped matching.

So a reporter ``@mentioned`` in a comment is told "you were mentioned", and
a reporter made the verifier "you are the verifier", not "you reported
this issue".

An edit of a comment or of the description tells only the people it newly
``@mentions`` (rule 4 alone, against the text it replaced), as GitHub and
GitLab do; see :func:`told_of_edit_only_if_mentioned`.

Then each person's settings apply (:func:`wanted`): the event switched off,
the issue muted, channel ``none``, or being the change's author (unless they
asked for their own changes). Whether the person may see the issue is not
decided here: the consumer asks the Model *as that person*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bugless_core.mentions import mentioned_usernames
from bugless_notify.reasons import Reason
from bugless_proto import v1

#: Which setting switches each reason off.
REASON_EVENT: Mapping[Reason, v1.NotificationEvent] = {
    Reason.ASSIGNEE: v1.NotificationEvent.ASSIGNED,
    Reason.REPORTER: v1.NotificationEvent.MY_ISSUES,
    Reason.VERIFIER: v1.NotificationEvent.MY_ISSUES,
    Reason.CC: v1.NotificationEvent.MY_ISSUES,
    Reason.MENTIONED: v1.NotificationEvent.MENTIONED,
    Reason.STARRED: v1.NotificationEvent.STARRED,
    Reason.COMPONENT: v1.NotificationEvent.SUBSCRIPTIONS,
    Reason.SAVED_SEARCH: v1.NotificationEvent.SUBSCRIPTIONS,
}


def mention_texts(issue: v1.Issue, entry: v1.HistoryEntry) -> list[str]:
    """Where a change can mention someone.

    Its comment (the description of a new issue) and, when it set the title,
    the title.
    """
    texts = [entry.comment]
    if entry.version == 1 or any(c.field == "title" for c in entry.changes):
        texts.append(issue.title)
    return texts


def told_of_edit_only_if_mentioned(entry: v1.HistoryEntry) -> bool:
    """Whether ``entry`` is an edit whose replaced text the Model gave.

    Such an edit tells only the people it newly ``@mentions``
    (:func:`mentioned_usernames_of`), as GitHub and GitLab do: mailing
    everyone a comment reaches for each typo fixed is noise. A Model older
    than ``replaced_comment`` leaves it unset, and the edit goes to whoever
    a comment reaches, as before.
    """
    return bool(entry.edits_version) and entry.replaced_comment is not None


def mentioned_usernames_of(issue: v1.Issue, entry: v1.HistoryEntry) -> list[str]:
    """The username keys ``entry`` mentions, as the recipient rules count them.

    Those of :func:`mention_texts`; for an edit with its replaced text
    (:func:`told_of_edit_only_if_mentioned`), only those the replaced text
    did not mention already: rewording a comment that names @bob tells bob
    nothing new, and a redacted edit (its text and the replaced one blank)
    mentions nobody.
    """
    said = mentioned_usernames(*mention_texts(issue, entry))
    if not told_of_edit_only_if_mentioned(entry):
        return said
    before = set(mentioned_usernames(entry.replaced_comment or ""))
    return [key for key in said if key not in before]


@dataclass(frozen=True)
class Candidate:
    """A person who may be told, and why.

    Attributes:
        user_id: Opaque user id.
        reason: The first rule that applies (the module's order).
        saved_search: For :attr:`Reason.SAVED_SEARCH`: the search's name.
        component_id: For :attr:`Reason.COMPONENT`: the component the
            subscription is on (the issue's or an ancestor's); 0 for none
            (an older Model).
        former: The person held the role (assignee, verifier, CC) until this
            change took it from them: told, so that they know, and told so.
    """

    user_id: str
    reason: Reason
    saved_search: str = ""
    component_id: int = 0
    former: bool = False


def _removed_people(entry: v1.HistoryEntry, field: str) -> list[str]:
    out: list[str] = []
    for change in entry.changes:
        if change.field != field:
            continue
        out += [v for v in (change.old_value, *change.removed) if v]
    return out


def _added_people(entry: v1.HistoryEntry, field: str, now: Iterable[str]) -> list[str]:
    """Who ``entry`` put into ``field`` and still holds it (``now``: the issue's value)."""
    holding = set(now)
    out: list[str] = []
    for change in entry.changes:
        if change.field != field:
            continue
        out += [v for v in (change.new_value, *change.added) if v and v in holding]
    return out


def candidates(
    issue: v1.Issue,
    entry: v1.HistoryEntry,
    audience: v1.IssueAudience,
    mentioned: Iterable[str],
    saved_searches: Iterable[tuple[str, str]] = (),
) -> list[Candidate]:
    """Everyone the rules name for ``entry`` of ``issue``, each once.

    Args:
        issue: The issue after the change.
        entry: The change.
        audience: Starrers, component subscribers, muters.
        mentioned: User ids of the people ``@mentioned``.
        saved_searches: ``(user id, saved search name)`` of subscribers whose
            saved search the issue newly matches or stopped matching.
    """
    created = entry.version == 1
    ordered: list[tuple[Iterable[str], Reason, bool]]
    if told_of_edit_only_if_mentioned(entry):
        # An edit changes no field and no role: only a new mention is news.
        ordered = [(mentioned, Reason.MENTIONED, False)]
    else:
        ordered = [
            (
                [issue.assignee] if created else _added_people(entry, "assignee", [issue.assignee]),
                Reason.ASSIGNEE,
                False,
            ),
            (_removed_people(entry, "assignee"), Reason.ASSIGNEE, True),
            (
                [issue.verifier] if created else _added_people(entry, "verifier", [issue.verifier]),
                Reason.VERIFIER,
                False,
            ),
            (_removed_people(entry, "verifier"), Reason.VERIFIER, True),
            (issue.cc if created else _added_people(entry, "cc", issue.cc), Reason.CC, False),
            (_removed_people(entry, "cc"), Reason.CC, True),
            (mentioned, Reason.MENTIONED, False),
            ([issue.assignee], Reason.ASSIGNEE, False),
            ([issue.reporter], Reason.REPORTER, False),
            ([issue.verifier], Reason.VERIFIER, False),
            (issue.cc, Reason.CC, False),
            (audience.starred_by, Reason.STARRED, False),
            (audience.component_subscribers, Reason.COMPONENT, False),
        ]
    subscribed = audience.subscribed_components
    found: dict[str, Candidate] = {}
    for people, reason, former in ordered:
        for user in people:
            if user and user not in found:
                # A component subscriber is told the component their
                # subscription is on (the renderer names it, if the
                # recipient may see it); none from an older Model.
                on = subscribed.get(user, 0) if reason == Reason.COMPONENT else 0
                found[user] = Candidate(user, reason, component_id=on, former=former)
    for user, name in saved_searches:
        if user and user not in found:
            found[user] = Candidate(user, Reason.SAVED_SEARCH, name)
    return list(found.values())


def wanted(
    candidate: Candidate,
    settings: v1.NotificationSettings,
    *,
    author: str,
    issue_id: int,
    notify_authors: bool,
) -> bool:
    """Whether ``candidate``'s settings let this notification through."""
    if settings.channel == "none":
        return False
    if issue_id in settings.muted_issue_ids:
        return False
    if REASON_EVENT[candidate.reason] in settings.disabled_events:
        return False
    if candidate.user_id == author:
        return notify_authors or settings.notify_own_changes
    return True
