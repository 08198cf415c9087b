"""The warning about people named on an issue who cannot view it: whom to check, and its words.

Naming someone the component's access list leaves out (assignee, verifier,
CC, a custom field of type USER) is allowed, but silent: they cannot open
the issue and get no mail about it. The web (a banner after a save) and the
CLI (``warning:`` lines on standard error) both ask the Model's ``CheckViewers`` afterwards and tell
whoever saved. Both check the same people (those a save names, and those
its texts newly ``@mention``: :func:`newly_mentioned`) and say the same
sentences, so both rules live here, once.

Nothing here imports proto code at run time: the CLI's commands load lazily,
and reasons are keyed by ``ViewerBlock`` *name*.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bugless_proto import v1

#: People named per sentence before "and N more" (the web's warning rides in a cookie).
MAX_NAMED = 10

#: Why the people of a sentence cannot view the issue, by ``ViewerBlock`` name,
#: in the order the sentences are said.
REASONS = {
    "NO_ACCESS": "cannot view component {path}",
    "CANNOT_SIGN_IN": "cannot sign in (a disabled account, or a person an import brought in "
    "whom no account has taken over yet)",
    "UNKNOWN_USER": "{is_are} not known to bugless",
}
#: What the person who saved can do about each reason, after the sentence naming them.
REMEDIES = {
    "NO_ACCESS": " An admin of {path} can add them to its access list.",
    "CANNOT_SIGN_IN": " A bugless administrator can enable the account, or merge "
    "the imported person into the account they sign in with.",
    "UNKNOWN_USER": "",
}


def people_in_fields(issue: v1.Issue, names: Collection[str] | None = None) -> list[str]:
    """The people ``issue``'s custom fields of type USER hold (a "Reviewer", an "Owner").

    Args:
        issue: Its ``custom_fields`` as the Model or the API answers them
            (each value with its field's name and type).
        names: Only the fields named so (case-insensitively, or as
            ``customfield<ID>``): those a CLI ``--field`` set. None: all.
    """
    from bugless_proto import v1  # noqa: PLC0415  (loaded by then: the issue is one)

    # An int, as a upb message holds the type; betterproto2's member equals it.
    user_type = int(v1.CustomFieldType.USER)
    wanted = None if names is None else {n.casefold() for n in names}
    return [
        person
        for value in issue.custom_fields
        if value.type == user_type
        and (
            wanted is None
            or value.name.casefold() in wanted
            or f"customfield{value.field_id}" in wanted
        )
        for person in value.values
        if person
    ]


def people_on(issue: v1.Issue) -> list[str]:
    """Everyone ``issue`` names as someone to see it, once each.

    Assignee, verifier, CC, and the people of its USER custom fields: naming
    someone "Reviewer" asks them to look, as assigning does. Whom a new
    issue, or one moved to another component, is checked for.
    """
    named = (issue.assignee, issue.verifier, *issue.cc, *people_in_fields(issue))
    return list(dict.fromkeys(p for p in named if p))


def newly_named(before: v1.Issue | None, after: v1.Issue) -> list[str]:
    """Who a save named on ``after`` that ``before`` did not (everyone, after a move).

    An issue moved to another component is judged afresh: people who could
    view the old one may not view the new one. People already on the issue
    were warned of when they were named, and are not again.
    """
    people = people_on(after)
    if before is None or before.component_id != after.component_id:
        return people
    earlier = set(people_on(before))
    return [p for p in people if p not in earlier]


def newly_mentioned(
    texts: Sequence[str], *, replaced: Sequence[str] = (), known: Collection[str] = ()
) -> list[str]:
    """Whom a save's texts are checked for: the usernames they newly ``@mention``.

    As :func:`~bugless_core.usernames.username_key` keys, first mention first.

    The notifier mails only people who may view the issue, so mentioning
    someone who cannot reaches nobody; the writer is warned of it as of a
    CC. Not again, though, of the people the ``replaced`` texts (an edit's
    earlier text) mentioned, who were checked when it was written, nor of
    ``known`` (keys of people the issue already names, checked when named).

    Args:
        texts: What the save wrote: a title, a description, a comment.
        replaced: The texts an edit replaced.
        known: Username keys to leave out.
    """
    from bugless_core.mentions import mentioned_usernames  # noqa: PLC0415  (Markdown: lazily)

    earlier = {*mentioned_usernames(*replaced), *known}
    return [u for u in mentioned_usernames(*texts) if u not in earlier]


def listed(names: Sequence[str]) -> str:
    """``names`` as a sentence lists them ("a, b and c"), at most :data:`MAX_NAMED` by name."""
    shown = list(names[:MAX_NAMED])
    if len(names) > MAX_NAMED:
        shown.append(f"{len(names) - MAX_NAMED} more")
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def issues_text(issue_ids: Sequence[int]) -> str:
    """What the people of a sentence will not see: "issue 12", "issues 12 and 13"."""
    ids = sorted(issue_ids)
    return f"issue{'s' if len(ids) > 1 else ''} {listed([str(i) for i in ids])}"


def warning_sentences(
    path: str, names_by_reason: Mapping[str, Sequence[str]], what: str
) -> list[str]:
    """One sentence per reason (in :data:`REASONS` order) naming the people it holds for.

    Args:
        path: The component's path, as the Model answered it.
        names_by_reason: ``ViewerBlock`` name to the people, as the frontend
            shows them (the web: "Eve Stone (eve)"; the CLI: usernames).
        what: What they will not see: "this issue", "issue 12", "issues 12 and 13".
    """
    about = "them" if what.startswith("issues") else "it"
    sentences = []
    for reason, template in REASONS.items():
        names = names_by_reason.get(reason)
        if not names:
            continue
        why = template.format(path=path, is_are="are" if len(names) > 1 else "is")
        remedy = REMEDIES[reason].format(path=path)
        sentences.append(
            f"{listed(names)} {why}: they will not see {what} or get mail about {about}.{remedy}"
        )
    return sentences
