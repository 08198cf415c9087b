"""Warning whoever saved an issue that someone it names cannot view it.

Assigning, CCing or naming as verifier someone the component's access list
leaves out is allowed (it is how one asks them to request access), but
silent: that person cannot open the issue and gets no mail about it. So is
``@mentioning`` them in a comment, the description or the title: the
notifier mails only people who may view the issue, so the mention reaches
nobody, and the writer is warned of it as of a CC. After a
save the web asks the Model (``CheckViewers``), which alone can judge it: it
knows the people's groups through the Authenticator and the component's
inherited access entries, neither of which the web may read for people other
than the viewer. The answer becomes a one-shot warning on the next page.
Whom a save is checked for, and the sentences, are the CLI's too
(:mod:`bugless_core.viewer_warnings`).

Warn, never refuse, and never fail the save: the change is already made when
the check runs, so a Model or an Authenticator that cannot answer (an older
release without the call, an outage, a slow reply) costs the warning only,
and is logged. The person waits for the redirect meanwhile, so the whole
check (every component's calls, at once, and the names) ends within one
deadline, :data:`CHECK_SECONDS`; components a bulk edit's check left out
(past :data:`MAX_BULK_COMPONENTS`, or not answered in time) are said to be,
so that silence about them is not read as "everyone can view them".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any

from litestar import Request

from bugless_core.clients import call
from bugless_core.limits import MAX_VIEWER_CHECK
from bugless_core.viewer_warnings import (
    issues_text,
    newly_mentioned,
    newly_named,
    people_on,
    warning_sentences,
)
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.frontend import frontend_of, session_of

_log = logging.getLogger("bugless.web")

#: How long the whole check may take, every component's calls and the names
#: included: the save is done, the person waits for the redirect.
CHECK_SECONDS = 3.0
#: Of :data:`CHECK_SECONDS`, kept for looking up the names of those who cannot
#: view (usually cached: the save has just looked the people up): a component
#: whose check has not answered this close to the deadline is not waited for.
NAMES_SECONDS = 0.5
#: Components one bulk edit's warning is checked for (one call each, at once);
#: the rest are counted in the warning as not checked.
MAX_BULK_COMPONENTS = 20
#: The longest warning as the session cookie stores it (JSON, non-ASCII
#: escaped). A browser drops a cookie over 4096 bytes whole, the warning and
#: the notice with it; sealed (Fernet, base64: a third more) beside the
#: session's other fields, this much still fits with room to spare.
MAX_WARNING_BYTES = 1600
#: Kept free of sentences for the one saying how many components were left out.
_TAIL_BYTES = 120


def _shown_name(user: v1.User | None, user_id: str) -> str:
    """A person as the issue page shows them, with the username typed in forms: "Eve Stone (eve)".

    The page's chips show display names, while the warning follows a form
    where usernames were typed: naming both lets the reader match either.
    """
    if user is None:
        return user_id
    if user.display_name and user.display_name != user.username:
        return f"{user.display_name} ({user.username})"
    return user.username


async def _cannot_view(
    backends: Backends, viewer: Viewer, component_id: int, user_ids: Sequence[str], until: float
) -> tuple[str, list[v1.BlockedViewer]]:
    """The component's path and who of ``user_ids`` cannot view it.

    Batches of the Model's limit go at once, each with the time left until
    ``until`` (the event loop's clock) as its deadline, so a hundred and one
    people cost no longer than one.
    """
    loop = asyncio.get_running_loop()
    batches = [
        asyncio.ensure_future(
            call(
                backends.model.check_viewers,
                v1.CheckViewersRequest(
                    caller=viewer.caller,
                    component_id=component_id,
                    user_ids=list(user_ids[start : start + MAX_VIEWER_CHECK]),
                ),
                timeout=max(until - loop.time(), 0.001),
            )
        )
        for start in range(0, len(user_ids), MAX_VIEWER_CHECK)
    ]
    try:
        answers = await asyncio.gather(*batches)
    finally:  # one failed (or the check gave up): the others' answers are not wanted
        for batch in batches:
            batch.cancel()
    return answers[0].component_path, [b for answer in answers for b in answer.cannot_view]


async def _answered(
    checks: Mapping[int, Awaitable[tuple[str, list[v1.BlockedViewer]]]], until: float
) -> tuple[dict[int, tuple[str, list[v1.BlockedViewer]]], list[str], int]:
    """The checks answered by ``until``, by component; why the others did not; how many timed out.

    Those still running then are cancelled: a slow component costs its own
    sentence, not the others'. The count of those cut by the deadline (not
    answered at all, or a call's own deadline passed) lets the warning say
    "within 3 s" of those only, and not of a check that failed at once.
    """
    tasks = {c: asyncio.ensure_future(check) for c, check in checks.items()}
    try:
        await asyncio.wait(
            tasks.values(), timeout=max(until - asyncio.get_running_loop().time(), 0)
        )
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    answered: dict[int, tuple[str, list[v1.BlockedViewer]]] = {}
    failures: list[str] = []
    timed_out = 0
    for component_id, task in tasks.items():
        if task.cancelled():
            failures.append(f"component {component_id}: no answer within {CHECK_SECONDS:g} s")
            timed_out += 1
        elif (exc := task.exception()) is not None:
            failures.append(f"component {component_id}: {type(exc).__name__}: {exc}")
            timed_out += _past_deadline(exc)
        else:
            answered[component_id] = task.result()
    return answered, failures, timed_out


def _past_deadline(exc: BaseException) -> bool:
    """Whether a check failed because its deadline passed, not for another cause.

    A batch's call is given the time left as its own deadline, so a slow
    Model may end it with that call's error (Unavailable "did not answer
    within the call's deadline", from a bare TimeoutError) before
    :func:`_answered` cancels it.
    """
    return isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)


def _sentences(
    path: str, blocked: Iterable[v1.BlockedViewer], users: dict[str, v1.User], what: str
) -> list[str]:
    by_reason: dict[str, list[str]] = defaultdict(list)
    for person in blocked:
        user = users.get(person.user_id)
        by_reason[person.reason.name or ""].append(_shown_name(user, person.user_id))
    return warning_sentences(path, by_reason, what)


async def viewer_warning(
    backends: Backends,
    viewer: Viewer,
    named: Mapping[int, Sequence[str]],
    *,
    issue_ids: Mapping[int, Sequence[int]] | None = None,
) -> str:
    """The warning for the people ``named`` per component who cannot view it; "" when none.

    Args:
        backends: The Model (``CheckViewers``) and the Authenticator (names).
        viewer: Who saved; the Model answers only for components they view.
        named: Component id to the user ids the save named on its issues.
        issue_ids: Component id to the issues of a bulk edit there, named in
            the warning ("issues 12 and 13"); without it, "this issue".

    Returns:
        One sentence per component and reason, or "" when everyone named
        can view, nobody was named, or the check could not be made (logged).
    """
    wanted = {c: list(dict.fromkeys(ids)) for c, ids in named.items() if ids}
    if not wanted:
        return ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECK_SECONDS
    components = list(wanted)[:MAX_BULK_COMPONENTS]
    answers, failures, timed_out = await _answered(
        {
            c: _cannot_view(backends, viewer, c, wanted[c], deadline - NAMES_SECONDS)
            for c in components
        },
        deadline - NAMES_SECONDS,
    )
    if failures:  # the save is made: a failed check costs its warning only
        _log.warning(
            "could not check who can view the issue just saved (%s): %s",
            "no warning shown" if not answers else f"{len(failures)} components not checked",
            "; ".join(failures),
        )
    if not answers:
        return ""
    blocked_ids = {b.user_id for _, blocked in answers.values() for b in blocked}
    try:
        async with asyncio.timeout_at(deadline):
            users = await backends.users(blocked_ids) if blocked_ids else {}
    except Exception as exc:  # as above: without names there is no sentence to show
        _log.warning(
            "could not look up the people who cannot view the issue just saved "
            "(no warning shown): %s: %s",
            type(exc).__name__,
            exc or f"no answer within {CHECK_SECONDS:g} s",
        )
        return ""
    sentences: list[tuple[int, str]] = []
    for component_id, (path, blocked) in answers.items():
        what = "this issue"
        if issue_ids is not None:
            what = issues_text(issue_ids.get(component_id, ()))
        sentences += [(component_id, s) for s in _sentences(path, blocked, users, what)]
    not_checked = _not_checked(
        len(wanted) - len(components),
        timed_out,
        len(components) - len(answers) - timed_out,
        after_others=bool(sentences),
    )
    return _fitting_the_cookie(sentences, not_checked)


def _not_checked(over_limit: int, timed_out: int, failed: int, *, after_others: bool) -> str:
    """The sentence saying how many components a bulk edit's check left out, and why; "" if none.

    Said, not silently dropped: the person must not read the warning's
    silence about those components as "everyone can view them". Each cause
    is worded as it was: past the limit, no answer in time (``timed_out``),
    or a check that ended in an error (``failed``: an outage, an older
    Model), which may have come at once and is not said to be slow.
    """
    left = over_limit + timed_out + failed
    if not left:
        return ""
    reasons = []
    if over_limit:
        reasons.append(f"a bulk edit is checked for its first {MAX_BULK_COMPONENTS} components")
    if timed_out:
        reasons.append(f"{timed_out} did not answer within {CHECK_SECONDS:g} s")
    if failed:
        reasons.append(f"the check of {failed} failed")
    return (
        f"{left} {'more ' if after_others else ''}component{'s' if left > 1 else ''} not checked "
        f"({', '.join(reasons[:-1])}{' and ' if len(reasons) > 1 else ''}{reasons[-1]}): "
        "people it named may not be able to view "
        f"{'their' if left > 1 else 'its'} issues{' either' if after_others else ''}."
    )


def _stored_size(text: str) -> int:
    """How many bytes ``text`` takes in the session cookie's JSON, before sealing."""
    return len(json.dumps(text))


def _fitting_the_cookie(sentences: Sequence[tuple[int, str]], not_checked: str = "") -> str:
    """The sentences, by component, as many as :data:`MAX_WARNING_BYTES` holds.

    A bulk edit over many components makes one sentence each (twenty of
    them sealed to more than the 4096 bytes a browser keeps of a cookie,
    which then kept neither the warning nor the notice). The rest are
    counted in a last sentence; a first sentence too long alone is cut.
    ``not_checked`` (:func:`_not_checked`) always ends the warning, so room
    is kept for it.
    """
    room = MAX_WARNING_BYTES - _TAIL_BYTES - (_stored_size(not_checked) if not_checked else 0)
    kept: list[str] = []
    shown: set[int] = set()
    for index, (component_id, sentence) in enumerate(sentences):
        if _stored_size(" ".join([*kept, sentence])) > room:
            if not kept:  # one sentence longer than the cookie holds: cut
                cut = sentence
                while _stored_size(cut + "…") > room:
                    cut = cut[: len(cut) * 9 // 10]
                kept.append(cut + "…")
                shown.add(component_id)
                continue
            left = len({c for c, _ in sentences[index:]} - shown)
            kept.append(
                f"People it named cannot view the issues of {left} more "
                f"component{'s' if left > 1 else ''} either."
                if left
                else "Others it named cannot view them either."
            )
            break
        kept.append(sentence)
        shown.add(component_id)
    if not_checked:
        kept.append(not_checked)
    return " ".join(kept)


async def warn_of_hidden_people(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    before: v1.Issue | None,
    after: v1.Issue,
    *,
    texts: Sequence[str] = (),
    replaced: Sequence[str] = (),
) -> None:
    """Warn on the next page of whom this save named who cannot view the issue.

    ``before`` is the issue as the save found it (None for a new issue):
    only the people the save added are checked, or all of them after a move.
    ``texts`` are what the save wrote (a comment, a description, a title):
    the people they ``@mention`` are checked too, unless the issue already
    names them (they were checked when it did) or they are the writer.
    ``replaced`` are the texts an edit replaced: the people they mentioned
    were checked when they were written, so an edit warns only of those it
    newly mentions.
    """
    named = newly_named(before, after)
    backends = frontend_of(request).backends
    named += await _mentioned(
        backends, viewer, texts, known={*people_on(after), *named}, replaced=replaced
    )
    if not named:
        return
    warning = await viewer_warning(backends, viewer, {after.component_id: named})
    if warning:
        session_of(request).update(warning=warning)


async def _mentioned(
    backends: Backends,
    viewer: Viewer,
    texts: Sequence[str],
    *,
    known: set[str],
    replaced: Sequence[str] = (),
) -> list[str]:
    """The ids of the people ``texts`` newly mention: not the writer, nor ``known``.

    Nor those the ``replaced`` texts (an edit's earlier text) mentioned.

    A name nobody has is left out (the page shows it as plain text), and so
    is everyone when the Authenticator cannot answer within
    :data:`NAMES_SECONDS`: the save is made, and a failed lookup costs the
    warning only (logged).
    """
    usernames = newly_mentioned(texts, replaced=replaced)
    if not usernames:
        return []
    try:
        async with asyncio.timeout(NAMES_SECONDS):
            users = await backends.users_by_name(usernames)
    except Exception as exc:  # the save is made: a failed lookup costs the warning only
        _log.warning(
            "could not look up the people a save mentioned (no warning shown): %s: %s",
            type(exc).__name__,
            exc,
        )
        return []
    skip = {*known, viewer.user.user_id}
    ids = (u.user_id for u in users.values() if u.user_id)
    return [i for i in dict.fromkeys(ids) if i not in skip]
