"""The issue page: fields, relations, timeline, and the one-form edit.

Creating an issue is :mod:`bugless_web.routes.new_issue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.params import FromPath
from markupsafe import Markup

from bugless_core.clients import call
from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    IssueVersionConflict,
    NotFound,
    PermissionDenied,
)
from bugless_core.ids import try_parse_id
from bugless_proto import v1
from bugless_web import custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.display import component_options
from bugless_web.form_errors import FieldErrors
from bugless_web.frontend import (
    Frontend,
    frontend_of,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.issue_form import EDIT_FIELDS, EditForm, delta_is_empty
from bugless_web.relations import load_relations
from bugless_web.rendered_timelines import TimelineKey
from bugless_web.timeline import Timeline, load_history, names_for
from bugless_web.viewer_warnings import warn_of_hidden_people


async def list_all_components(backends: Backends, viewer: Viewer) -> list[v1.Component]:
    """The whole visible component tree in path order, archived ones included.

    Served from the caller's short-lived cache (``component_cache_seconds``,
    see :meth:`Backends.components`): a component renamed or re-templated on
    another replica may show its old state for those few seconds. Do not
    modify the returned messages; they are shared between requests.
    """
    return await backends.components(viewer)


def _component_picker(own: int, selected: int, components: Iterable[v1.Component]) -> Markup:
    """The edit form's component ``<option>``s (made once per cached tree, see the caller).

    An archived component takes no issues; the issue's own stays listed.
    """
    return component_options((c for c in components if not c.archived or c.id == own), selected)


async def _no_history() -> list[v1.HistoryEntry]:
    return []


async def _attachments(frontend: Frontend, viewer: Viewer, issue: v1.Issue) -> list[v1.Attachment]:
    """The issue's attachments, asked of the Model once per issue version.

    See :mod:`bugless_web.kept_attachments`; the list is shared between
    pages, so do not modify it.
    """

    async def fetch() -> list[v1.Attachment]:
        response = await call(
            frontend.backends.model.list_attachments,
            v1.ListAttachmentsRequest(caller=viewer.caller, issue_id=issue.id),
        )
        return response.attachments

    return await frontend.attachments.get_or_fetch(issue.id, issue.version, fetch)


async def _issue_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    issue_id: int,
    *,
    form: EditForm | None = None,
    conflict: list[v1.HistoryEntry] | None = None,
    edited_version: int = 0,
    errors: FieldErrors | None = None,
    status_code: int = 200,
    comment_edit: tuple[int, str, str] | None = None,
    moved_fields: Sequence[v1.CustomField] = (),
) -> Response[str]:
    """The issue page.

    ``comment_edit`` (entry version, typed text, problem) reopens that
    entry's edit form with the text kept and the problem shown.
    ``moved_fields``: the fields of the component a refused edit moves the
    issue to, shown in the form after the issue's own (a required one can
    then be given with the move).
    """
    frontend = frontend_of(request)
    backends = frontend.backends
    issue, components = await asyncio.gather(
        call(backends.model.get_issue, v1.GetIssueRequest(caller=viewer.caller, issue_id=issue_id)),
        list_all_components(backends, viewer),
    )
    own = next((c for c in components if c.id == issue.component_id), None)
    can_redact = viewer.is_admin or (own is not None and own.caller_role == v1.Role.ADMIN)
    # A viewer of the component may star and mute, not comment, change or
    # attach (the Model refuses those): the page shows why instead of a form
    # that would lose what they typed to a 403 page.
    can_change = (
        viewer.is_admin or own is None or own.caller_role in (v1.Role.EDITOR, v1.Role.ADMIN)
    )
    csrf_token = session_of(request).csrf
    # The reader's own edit forms and the redact forms depend on who reads.
    # Every history entry is a new issue version, so a timeline kept for this
    # version is the whole history: then the history is not even fetched.
    key: TimelineKey = (
        issue.id,
        issue.version,
        issue.version,
        viewer.caller.user_id,
        can_redact,
        frontend.assets.build_id,
    )
    kept = frontend.timelines.get(key, csrf_token) if comment_edit is None else None
    (
        history,
        relations,
        (my_hotlists, attachments),
        capabilities,
        fields,
    ) = await asyncio.gather(
        _no_history() if kept is not None else load_history(backends, viewer, issue_id),
        load_relations(backends, viewer, issue),
        asyncio.gather(backends.my_hotlists(viewer), _attachments(frontend, viewer, issue)),
        backends.capabilities(),
        custom_fields.fields_of_component(backends, viewer, issue.component_id),
    )
    form_fields = _with_moved(fields, moved_fields)

    timeline = Timeline.of(
        history,
        viewer_id=viewer.caller.user_id,
        can_redact=can_redact,
        expected_version=issue.version,
        user_fields=custom_fields.user_history_fields(fields),
    )
    # The conflict's entries are shown outside the timeline (which may be kept).
    shown = [*history, *(conflict or [])]
    names = await names_for(
        backends,
        viewer,
        shown,
        issues=[issue],
        extra_users=relations.people()
        | custom_fields.user_ids(issue.custom_fields)
        | timeline.people(shown)
        | {a.uploader for a in attachments},
    )

    def render_timeline(csrf_token: str) -> str:
        return frontend.templates.get_template("_timeline.html").render(
            history=history,
            timeline=timeline,
            names=names,
            comment_edit=comment_edit,
            csrf_token=csrf_token,
        )

    if kept is not None:
        timeline_html = kept
    elif comment_edit is None:
        newest = max((e.version for e in history), default=0)
        timeline_html = frontend.timelines.get_or_render(
            (*key[:2], newest, *key[3:]), csrf_token, render_timeline
        )
    else:
        timeline_html = Markup(render_timeline(csrf_token))
    current_form = EditForm.from_issue(issue, names.users)
    if form is None:
        form = current_form
    elif form.version != issue.version:
        form = form.rebased_on(current_form)  # re-applying targets the version now shown
    return render(
        request,
        "issue.html",
        {
            "issue": issue,
            "history": history,
            "timeline": timeline,
            "timeline_html": timeline_html,
            "comment_edit": comment_edit,
            "related": relations.issues,
            "relations": relations,
            "names": names,
            "component_picker": await backends.from_components(
                viewer,
                ("issue picker", issue.component_id, form.component_id),
                functools.partial(_component_picker, issue.component_id, form.component_id),
            ),
            "my_hotlists": my_hotlists,
            "form": form,
            "conflict": conflict,
            "edited_version": edited_version,
            "original": form.original or current_form,
            "errors": errors
            or FieldErrors(edit_fields(form_fields), labels=custom_fields.labelled(form_fields)),
            "custom_fields": form_fields,
            "attachments": attachments,
            "can_change": can_change,
            "live": "watch" in capabilities,
            "title": f"{issue.id}: {issue.title}",
        },
        status_code=status_code,
        viewer=viewer,
    )


async def issue_page_with_edit(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    issue_id: int,
    *,
    entry_version: int,
    text: str,
    problem: str,
) -> Response[str]:
    """The issue page after a refused comment edit: its form open, the text kept (409)."""
    return await _issue_page(
        request,
        viewer,
        issue_id,
        comment_edit=(entry_version, text, problem),
        status_code=409,
    )


@get("/issues/{issue_text:str}")
async def issue_page(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[str]:
    """An issue with every field, its relations and its whole timeline."""
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    return await _issue_page(request, viewer, issue_id)


@post("/issues/{issue_text:str}")
async def change_issue(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[Any]:
    """Apply the edit form: changed fields plus the comment, one history entry.

    The delta is computed against the version the form was rendered from; a
    newer issue means a conflict page listing what changed meanwhile, with
    the user's values kept for re-applying. Nothing is overwritten silently.
    """
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form_data = await request.form()
    current = await call(
        backends.model.get_issue, v1.GetIssueRequest(caller=viewer.caller, issue_id=issue_id)
    )
    fields = await custom_fields.applicable_fields(backends, viewer, current.component_id)
    # A move reads (and shows again) the destination's fields too: one it
    # requires without a default is given with the move, or the Model
    # refuses the move and the form shows that field with the reason.
    destination = _destination(form_data, current.component_id)
    moved_fields: list[v1.CustomField] = []
    if destination != current.component_id:
        # A component that is not there: the change refuses it at the picker.
        with contextlib.suppress(NotFound, PermissionDenied):
            moved_fields = await custom_fields.applicable_fields(backends, viewer, destination)
        fields = _with_moved(fields, moved_fields)
    errors = FieldErrors(edit_fields(fields), labels=custom_fields.labelled(fields))
    submitted = EditForm.from_form(form_data, errors=errors)
    people, users = await asyncio.gather(
        backends.users_by_name(
            submitted.usernames() | custom_fields.usernames(fields, submitted.custom)
        ),
        backends.users(
            (
                current.assignee,
                current.verifier,
                *current.cc,
                *custom_fields.user_ids(current.custom_fields),
            )
        ),
    )
    rebased = submitted.rebased_on(EditForm.from_issue(current, users))
    if current.version != submitted.version:
        return await _conflict(request, viewer, issue_id, submitted.version, rebased)
    if not submitted.title:
        errors.add("title", "an issue needs a title")
    submitted.check_people(people, errors)
    wanted = custom_fields.to_wire(fields, rebased.custom, people, errors)
    if errors:
        return await _issue_page(
            request,
            viewer,
            issue_id,
            form=submitted,
            errors=errors,
            status_code=400,
            moved_fields=moved_fields,
        )
    delta = rebased.delta_against(current, people, users)
    delta.custom_fields_set = custom_fields.changed(wanted, current.custom_fields)
    if delta_is_empty(delta) and not submitted.comment.strip():
        session_of(request).update(notice="Nothing to save: no field changed and no comment.")
        return redirect(f"/issues/{issue_id}")
    try:
        response = await call(
            backends.model.change_issue,
            v1.ChangeIssueRequest(
                caller=viewer.caller,
                issue_id=issue_id,
                expected_version=submitted.version,
                delta=delta,
                comment=submitted.comment,
            ),
        )
    except IssueVersionConflict:
        return await _conflict(request, viewer, issue_id, submitted.version, submitted)
    except (InvalidArgument, NotFound, FailedPrecondition, PermissionDenied) as exc:
        if not errors.take(exc):
            raise
        return await _issue_page(
            request,
            viewer,
            issue_id,
            form=submitted,
            errors=errors,
            status_code=400,
            moved_fields=moved_fields,
        )
    version = response.entry.version if response.entry else submitted.version + 1
    if response.issue is not None:
        retitled = response.issue.title if response.issue.title != current.title else ""
        await warn_of_hidden_people(
            request, viewer, current, response.issue, texts=(submitted.comment, retitled)
        )
    return redirect(f"/issues/{issue_id}#entry-{version}")


def _destination(form: Any, current: int) -> int:
    """The component the edit form moves the issue to (``current`` when none is read).

    Read as an id (:func:`bugless_core.ids.try_parse_id`): one past int64 is
    no component (its fields were asked for with the value wrapped); the
    form's own reading of it (:func:`bugless_web.issue_form.read_int`)
    refuses it at the picker.
    """
    text = str(form.get("component_id", "") or "").strip()
    return try_parse_id(text) or current


def _with_moved(
    fields: Sequence[v1.CustomField], moved: Sequence[v1.CustomField]
) -> list[v1.CustomField]:
    """The issue's fields, then those of the component it moves to that it lacks."""
    ids = {f.id for f in fields}
    return [*fields, *(f for f in moved if f.id not in ids)]


def edit_fields(fields: Sequence[v1.CustomField]) -> tuple[str, ...]:
    """The edit form's inputs in page order: the built-in ones, then the custom fields."""
    names = custom_fields.form_field_names(fields)
    return (*EDIT_FIELDS[:-1], *names, EDIT_FIELDS[-1])


async def _conflict(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    issue_id: int,
    edited_version: int,
    form: EditForm,
) -> Response[str]:
    """The stale-edit page: what changed since ``edited_version``, and the edit rebased."""
    backends = frontend_of(request).backends
    meanwhile = await load_history(backends, viewer, issue_id, after_version=edited_version)
    return await _issue_page(
        request,
        viewer,
        issue_id,
        form=form,
        conflict=meanwhile,
        edited_version=edited_version,
        status_code=409,
    )


def parse_level(enum: Any, name: str) -> Any:
    """The member of ``enum`` a form's select names (empty: unset); InvalidArgument otherwise."""
    try:
        return enum[name] if name else enum(0)
    except KeyError:
        msg = f"{name!r} is not a known value"
        raise InvalidArgument(msg) from None


@get("/issues/{issue_text:str}/entries/{version_text:str}")
async def timeline_entry(
    request: Request[Any, Any, Any], issue_text: FromPath[str], version_text: FromPath[str]
) -> Response[str]:
    """One rendered timeline entry (what live updates insert).

    Rendered without the page's layout (not through :func:`render`), so the
    session's one-shot notice and warning are left for the next page: a
    live update fetching an entry while the person saves a change must not
    use up the "Saved" the page after the save shows.
    """
    issue_id = path_id(issue_text, "issue_id")
    version = path_id(version_text, "version")
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    entries = await load_history(frontend.backends, viewer, issue_id, after_version=version - 1)
    entry = next((e for e in entries if e.version == version), None)
    if entry is None:
        msg = f"issue {issue_id} has no entry {version}"
        raise NotFound(msg)
    names = await names_for(frontend.backends, viewer, [entry])
    html = frontend.templates.get_template("_entry_fragment.html").render(
        {"entry": entry, "names": names, "viewer": viewer, "csrf_token": session_of(request).csrf}
    )
    return Response(html, media_type=MediaType.HTML)


ROUTES = [issue_page, change_issue, timeline_entry]
