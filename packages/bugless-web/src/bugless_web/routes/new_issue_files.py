"""Creating an issue with files attached: the create form, its body streamed.

The create page's form carries a file input (``attachments``, several files)
after all its other fields, and is sent as ``multipart/form-data`` here. The
fields are read first (:mod:`bugless_web.streamed_forms`), the CSRF token and
the page's build checked among them, and the issue is created exactly as by
a plain form (:func:`bugless_web.routes.new_issue.create_from_form`).

**The order: the issue first, then its files.** An attachment belongs to an
issue, so the files can only go once it exists: each is then streamed to the
Model as the browser sends it, as attaching on the issue page does (the same
call, the same per-file and per-issue limits, the same storage). A file the
Model refuses (too large, over the issue's total, a Model that cannot take
it) does not undo the issue, which the person would have to type again, and
is not dropped silently either: the new issue's page opens with a warning
naming each file not attached and why, so it can be attached again from
there. A form that comes back with a problem creates nothing and keeps no
file (a browser cannot be given files back): the page says to choose them
again. A resubmitted form (the same idempotency key) whose issue has changed
since it was made attaches nothing again: its first submission did.

**One set of files, however many times the form is sent at once.** Two
submissions of one form (a double click, a browser's retry while the first
is still sending) both get the one issue from the Model (the idempotency
key), still at its first version: both would attach. So each upload is made
against the issue's version (``expected_version``: the created version,
then each upload's): of two submissions, the Model takes the first file of
one, and the other's is refused as stale. The refused one lists the files
this person attached since the issue was made: when this file is among
them, the other sending attached it; when others are, the other sending is
attaching. From then on each file of the form is looked for first and sent
only when the other sending has not attached it, so every file is attached
once even when the other sending stops half-way (a browser gives up on the
first request when the form is sent again), and the page this sending
opens counts the files of both. A stale refusal with no file of this
person (someone else changed the new issue meanwhile) names that file as
not attached and the rest go on against the issue's new version.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, NamedTuple

from litestar import Request, Response, post
from litestar.datastructures import FormMultiDict
from multipart import MultipartSegment

from bugless_core.attachments import sanitise_name
from bugless_core.clients import call
from bugless_core.errors import BuglessError, IssueVersionConflict
from bugless_core.limits import MAX_BATCH_CHANGE
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.builds import BUILD_FIELD, StaleBuild, compatible
from bugless_web.frontend import CSRF_IN_STREAM, audit, frontend_of, require_csrf, viewer_of
from bugless_web.routes.new_issue import after_create, create_from_form
from bugless_web.streamed_forms import (
    Event,
    drain,
    fields_until_file,
    file_chunks,
    form_events,
    next_file,
    skip_part,
)
from bugless_web.transfers import UploadStalled

#: The form's CSRF token field (the first: ``{{ csrf() }}``).
CSRF_FIELD = "_csrf"
#: The form's file input (``multiple``).
FILES_FIELD = "attachments"
#: Most files one create attaches; more are named as not attached.
MAX_FILES = 20
#: Most parts the form's body may have: its fields (a custom field of
#: several values is a part per value) and its files.
MAX_PARTS = 4 * MAX_BATCH_CHANGE + MAX_FILES
#: Most files named one by one in the warning (the session cookie holds it).
NAMED_FILES = 3
#: Longest reason quoted per file, and longest file name: the warning shares
#: the session cookie with the viewer warning (itself at most 1600 bytes), and
#: a browser drops a cookie over 4096 bytes whole.
REASON_CHARS = 160
NAME_CHARS = 80


@post("/issues/new/with-files", request_max_body_size=None, opt={CSRF_IN_STREAM: True})
async def create_issue_with_files(request: Request[Any, Any, Any]) -> Response[Any]:
    """Create an issue, then attach the form's files to it (see the module docstring).

    Errors before the issue exists are those of the plain form (its page
    again, 400; 403 for a missing token); after it, a file's refusal is a
    warning on the issue's page.
    """
    frontend = frontend_of(request)
    frontend.drain.requests.count_as_transfer()
    viewer = await viewer_of(request)
    events = form_events(request, max_parts=MAX_PARTS)
    try:
        pairs, part = await fields_until_file(events, FILES_FIELD)
        form = FormMultiDict(pairs)
        require_csrf(request, str(form.get(CSRF_FIELD, "")))
        theirs = str(form.get(BUILD_FIELD, "")) or None
        if not compatible(theirs, frontend.assets.build_id):
            typed = [(n, v) for n, v in pairs if v.strip() and not n.startswith("_")]
            raise StaleBuild(str(theirs), frontend.assets.build_id, typed)
        chosen = part is not None and bool(part.filename)
        description = str(form.get("description", "") or "")
        outcome = await create_from_form(request, viewer, form, files_chosen=chosen)
        if isinstance(outcome, Response):
            await drain(events)
            return outcome
        if outcome.version > 1:  # made by an earlier submission of this form, files and all
            note = _resubmitted(outcome) if chosen else ""
            await drain(events)
            return await after_create(
                request, viewer, outcome, description=description, files_note=note
            )
        attaching = await _attach_all(frontend.backends, viewer, outcome, events, part)
    except (UploadStalled, asyncio.CancelledError):
        # The browser stopped sending, or the server's drain cut the request.
        await events.aclose()
        raise
    except BaseException:
        await drain(events)
        raise
    await drain(events)
    note = _not_attached(attaching.refused)
    if attaching.sent_twice:
        note = f"{_sent_twice(outcome, attaching.by_other)} {note}".strip()
    return await after_create(
        request,
        viewer,
        outcome,
        description=description,
        attached=attaching.attached + attaching.by_other,
        files_note=note,
    )


class _Attached(NamedTuple):
    """What one submission's uploads did.

    Attributes:
        attached: How many files it attached.
        by_other: How many of the form's files another submission of it
            attached (this one then sent them no more).
        refused: The (name, reason) of each file refused; ("", "") when the
            files after the last one read were not read.
        sent_twice: Another submission of the form attached files too.
    """

    attached: int
    by_other: int
    refused: list[tuple[str, str]]
    sent_twice: bool


async def _attach_all(
    backends: Backends,
    viewer: Viewer,
    issue: v1.Issue,
    events: AsyncGenerator[Event, None],
    part: MultipartSegment | None,
) -> _Attached:
    """Attach each file part to ``issue`` in the form's order, each against the version before.

    Once another submission of the form is seen attaching (a stale refusal
    with files of this person since the issue was made), each file is first
    looked for among theirs (:func:`_attached_since`): one already attached
    is skipped, the others are sent, so each is attached once whether the
    other submission finishes or stops half-way.
    """
    refused: list[tuple[str, str]] = []
    count = by_other = 0
    version = issue.version
    shared = False
    seen: Counter[str] = Counter()  # how often each name came so far (a form may repeat one)
    while part is not None:
        stored = sanitise_name(part.filename or "")  # the name it is listed by once attached
        if not part.filename:  # an empty file input still sends its part
            whole = await skip_part(events)
        elif (count := count + 1) > MAX_FILES:
            refused.append((part.filename, f"at most {MAX_FILES} files are attached at creation"))
            whole = await skip_part(events)
        elif shared and (await _attached_since(backends, viewer, issue))[stored] >= _nth(
            seen, stored
        ):
            by_other += 1  # the other submission attached it: not sent again
            whole = await skip_part(events)
        else:
            nth = seen[stored] if shared else _nth(seen, stored)
            sent = await _attach_one(backends, viewer, issue, events, part, version=version)
            whole, reason = sent.whole, sent.reason
            if sent.stale:
                mine = await _attached_since(backends, viewer, issue)
                if mine[stored] >= nth:  # the other submission's copy of this file
                    shared, reason = True, ""
                    by_other += 1
                elif await _attached_since(backends, viewer, issue, since=version):
                    shared = True  # the other is attaching: this file was sent at the same time
            version = sent.version
            if reason:
                refused.append((part.filename, reason))
        if not whole:
            # Too much of a refused file was left to read past: the rest of
            # the body is not read, so any later file is not seen either.
            refused.append(("", ""))
            break
        part = await next_file(events, FILES_FIELD)
    attached = count - by_other - sum(1 for name, _ in refused if name)
    return _Attached(attached, by_other, refused, sent_twice=shared)


def _nth(seen: Counter[str], name: str) -> int:
    """Count one more file named ``name``: how many of the form's files so far bear it."""
    seen[name] += 1
    return seen[name]


async def _attached_since(
    backends: Backends, viewer: Viewer, issue: v1.Issue, *, since: int = 0
) -> Counter[str]:
    """The files this person attached to ``issue`` after version ``since``, by name.

    By the name the Model stored (:func:`~bugless_core.attachments.sanitise_name`
    of the one sent), so a file part is looked for by ``sanitise_name`` of its
    filename: compared as sent, a name the Model tidies (a macOS screenshot's
    narrow no-break space, a name in decomposed Unicode) was never found, and
    the other sending's copy of it was reported as not attached.

    ``since`` 0: after the issue's creation. Read when an upload of this
    form was refused as stale, and for each file after: such a file is
    another submission's of the same form (a person's other uploads to an
    issue made a moment ago are not expected), and only a file tells it:
    the issue's creation is the one both submissions share.
    """
    listed = await call(
        backends.model.list_attachments,
        v1.ListAttachmentsRequest(caller=viewer.caller, issue_id=issue.id, include_deleted=True),
    )
    me, after = viewer.caller.user_id, since or issue.version
    return Counter(
        a.name for a in listed.attachments if a.uploader == me and a.entry_version > after
    )


class _Sent(NamedTuple):
    """One file's upload.

    Attributes:
        whole: The part was read to its end (a refusal leaves the rest to
            skip, which fails past :data:`~bugless_web.streamed_forms.DRAIN_BYTES`).
        reason: Why the Model refused the file ("" when attached).
        version: The issue's version after it (the current one when stale).
        stale: Refused because the issue was past the version it was made against.
    """

    whole: bool
    reason: str
    version: int
    stale: bool = False


async def _attach_one(
    backends: Backends,
    viewer: Viewer,
    issue: v1.Issue,
    events: AsyncIterator[Event],
    part: MultipartSegment,
    *,
    version: int,
) -> _Sent:
    """Stream one file part to the Model, made against the issue's ``version``."""
    header = v1.UploadAttachmentHeader(
        caller=viewer.caller,
        issue_id=issue.id,
        expected_version=version,
        name=part.filename or "",
        content_type=(part.content_type or "")[:255],
    )
    read_whole = False

    async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
        nonlocal read_whole
        yield v1.UploadAttachmentRequest(header=header)
        async for chunk in file_chunks(events):
            yield v1.UploadAttachmentRequest(chunk=chunk)
        read_whole = True

    try:
        reply = await backends.upload_attachment(messages())
    except UploadStalled:
        raise
    except IssueVersionConflict as exc:
        whole = read_whole or await skip_part(events)
        reason = "the issue changed while it was sent"
        return _Sent(whole, reason, exc.current_version, stale=True)
    except BuglessError as exc:
        return _Sent(read_whole or await skip_part(events), exc.message, version)
    attachment = reply.attachment or v1.Attachment()
    audit(viewer, "attach", f"issue {issue.id}", attachment_id=attachment.id)
    after = reply.issue.version if reply.issue is not None else version
    return _Sent(read_whole or await skip_part(events), "", after)


def _not_attached(refused: list[tuple[str, str]]) -> str:
    """The warning naming the files not attached and why; "" when every file was.

    At most :data:`NAMED_FILES` by name (it rides in the session cookie).
    """
    if not refused:
        return ""
    named = [f"{_short(n, NAME_CHARS)} ({_short(r, REASON_CHARS)})" for n, r in refused if n]
    shown = named[:NAMED_FILES]
    if len(named) > NAMED_FILES:
        more = len(named) - NAMED_FILES
        shown.append(f"{more} more file{'s' if more > 1 else ''}")
    text = ""
    if shown:
        text = "Not attached: " + ", ".join(shown[:-1]) + (" and " if shown[:-1] else "")
        text += shown[-1] + "."
    if any(not n for n, _ in refused):
        text += " The files after the last of them, if any, were not read."
    return f"{text} The issue was created: attach them again from its Attachments.".strip()


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _sent_twice(issue: v1.Issue, by_other: int) -> str:
    return (
        f"This form was sent twice at once: issue {issue.id} was created once, and each file "
        f"attached once ({by_other} by the other sending). Check its Attachments."
    )


def _resubmitted(issue: v1.Issue) -> str:
    return (
        f"This form had already created issue {issue.id}, which has changed since: its files "
        "were not attached again. Check its Attachments."
    )


ROUTES = [create_issue_with_files]
