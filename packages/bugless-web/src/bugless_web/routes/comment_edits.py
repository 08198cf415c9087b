"""Editing one's own comment and redacting what leaked, from the issue page.

What leaked may be a comment, the description, a file's content or a file's
description alone (the file kept).

Both are version-checked like every change: the form carries the issue
version it was rendered from. An edit refused because the issue moved on
(or because the text is blank or unchanged) shows the issue page again with
the edit form open and the typed text kept, so nothing typed is lost. The
Model decides who may do either (the author edits; admins of the issue's
component redact); the page only hides forms a person could not use.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.enums import enum_by_name
from bugless_core.errors import (
    BuglessError,
    FailedPrecondition,
    InvalidArgument,
    IssueVersionConflict,
)
from bugless_core.mentions import mentioned_usernames
from bugless_proto import v1
from bugless_web.backends import Viewer
from bugless_web.frontend import (
    audit,
    form_int,
    frontend_of,
    path_id,
    redirect,
    session_of,
    viewer_of,
)
from bugless_web.routes.issues import issue_page_with_edit
from bugless_web.timeline import Timeline, load_history
from bugless_web.viewer_warnings import warn_of_hidden_people

_log = logging.getLogger("bugless.web")


async def _replaced_text(
    request: Request[Any, Any, Any], viewer: Viewer, issue_id: int, entry_version: int, edit: int
) -> tuple[str, ...]:
    """The text the edit at version ``edit`` replaced (its mentions were warned of then).

    Read only when the new text mentions anyone at all (the issue's history,
    as the page the edit redirects to reads it). A history that cannot be
    read costs the narrowing only: every mention is checked, as before.
    """
    try:
        entries = await load_history(frontend_of(request).backends, viewer, issue_id)
    except BuglessError as exc:
        _log.warning("could not read the text a comment edit replaced: %s", exc)
        return ()
    earlier = [e for e in entries if e.version < edit]
    original = next((e for e in earlier if e.version == entry_version), None)
    if original is None:
        return ()
    return (Timeline.of(earlier).current_text(original),)


@post("/issues/{issue_text:str}/entries/{version_text:str}/edit")
async def edit_comment(
    request: Request[Any, Any, Any], issue_text: FromPath[str], version_text: FromPath[str]
) -> Response[Any]:
    """Replace the text of one's own comment (entry 1: the description).

    The edit is a new history entry; the timeline shows the latest text
    marked "edited" where the comment was written, earlier texts one click
    away.
    """
    issue_id = path_id(issue_text, "issue_id")
    entry_version = path_id(version_text, "version")
    viewer = await viewer_of(request)
    form = await request.form()
    text = str(form.get("comment", "") or "")
    expected = form_int(str(form.get("version", "")), "version")
    try:
        response = await call(
            frontend_of(request).backends.model.edit_comment,
            v1.EditCommentRequest(
                caller=viewer.caller,
                issue_id=issue_id,
                expected_version=expected,
                entry_version=entry_version,
                comment=text,
            ),
        )
    except IssueVersionConflict:
        problem = (
            "The issue changed while you were editing; your text is kept below. "
            "Check the entries above, then save the edit again."
        )
        return await issue_page_with_edit(
            request, viewer, issue_id, entry_version=entry_version, text=text, problem=problem
        )
    except (InvalidArgument, FailedPrecondition) as exc:
        return await issue_page_with_edit(
            request, viewer, issue_id, entry_version=entry_version, text=text, problem=exc.message
        )
    version = response.entry.version if response.entry else expected + 1
    session_of(request).update(notice="Edit saved; the earlier text stays in the history.")
    if response.issue is not None:
        replaced: tuple[str, ...] = ()
        if mentioned_usernames(text):
            replaced = await _replaced_text(request, viewer, issue_id, entry_version or 1, version)
        await warn_of_hidden_people(
            request, viewer, response.issue, response.issue, texts=(text,), replaced=replaced
        )
    return redirect(f"/issues/{issue_id}#entry-{entry_version or version}")


@post("/issues/{issue_text:str}/redact")
async def redact(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[Any]:
    """Remove a comment or the description, with every edit of it, for good.

    Needs admin on the issue's component (the Model refuses others with
    403). The new history entry records who redacted what and when; the
    audit log says the same.
    """
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    form = await request.form()
    entry_version = form_int(str(form.get("entry_version", "")), "entry_version")
    if not entry_version:
        raise InvalidArgument("entry_version: name the entry whose text to redact")
    target = enum_by_name(
        v1.RedactionTarget,
        "description" if entry_version == 1 else "comment",
        "target",
    )
    response = await call(
        frontend_of(request).backends.model.redact,
        v1.RedactRequest(
            caller=viewer.caller,
            issue_id=issue_id,
            expected_version=form_int(str(form.get("version", "")), "version"),
            target=target,
            # The description is named by its target alone.
            entry_version=0 if entry_version == 1 else entry_version,
        ),
    )
    audit(viewer, "redact", f"issue {issue_id}", entry_version=entry_version)
    what = "description" if entry_version == 1 else f"comment #{entry_version}"
    session_of(request).update(notice=f"Redacted the {what} and every earlier version of it.")
    version = response.entry.version if response.entry else 0
    return redirect(f"/issues/{issue_id}#entry-{version}")


_FILE_TARGETS = {
    "content": (v1.RedactionTarget.ATTACHMENT, "the content of"),
    "description": (v1.RedactionTarget.ATTACHMENT_DESCRIPTION, "the description of"),
}


@post("/issues/{issue_text:str}/attachments/{attachment_text:str}/redact")
async def redact_attachment(
    request: Request[Any, Any, Any], issue_text: FromPath[str], attachment_text: FromPath[str]
) -> Response[Any]:
    """Remove a file's content (its description with it) or its description alone, for good.

    A leaked password in a screenshot's description need not cost the
    screenshot, so the form's ``target`` names which. As with a comment, the
    Model decides: admins of the issue's component only (403 for others), and
    a file already redacted, or without a description, is refused with the
    reason; nothing changes on refusal.
    """
    issue_id = path_id(issue_text, "issue_id")
    attachment_id = path_id(attachment_text, "attachment_id")
    viewer = await viewer_of(request)
    form = await request.form()
    chosen = str(form.get("target", "") or "")
    if chosen not in _FILE_TARGETS:
        raise InvalidArgument("target: name what to redact, 'content' or 'description'")
    target, what = _FILE_TARGETS[chosen]
    response = await call(
        frontend_of(request).backends.model.redact,
        v1.RedactRequest(
            caller=viewer.caller,
            issue_id=issue_id,
            expected_version=form_int(str(form.get("version", "")), "version"),
            target=target,
            attachment_id=attachment_id,
        ),
    )
    audit(viewer, "redact", f"issue {issue_id}", attachment_id=attachment_id, redacted=chosen)
    session_of(request).update(notice=f"Redacted {what} attachment {attachment_id}, for good.")
    version = response.entry.version if response.entry else 0
    return redirect(f"/issues/{issue_id}#entry-{version}")


ROUTES = [edit_comment, redact, redact_attachment]
