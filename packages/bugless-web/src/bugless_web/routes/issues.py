"""The issue page (fields, relations, timeline, one-form edit) and issue creation."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument, IssueVersionConflict, NotFound
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.frontend import (
    form_int,
    frontend_of,
    new_idempotency_key,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.issue_form import EditForm, delta_is_empty
from bugless_web.timeline import load_history, names_for


async def list_all_components(backends: Backends, viewer: Viewer) -> list[v1.Component]:
    """The whole visible component tree in path order (for pickers).

    Served from the caller's short-lived cache (``component_cache_seconds``,
    see :meth:`Backends.components`): a component renamed or re-templated on
    another replica may show its old state for those few seconds. Do not
    modify the returned messages; they are shared between requests.
    """
    return await backends.components(viewer)


async def _related(backends: Backends, viewer: Viewer, issue: v1.Issue) -> dict[int, v1.Issue]:
    ids = {
        *issue.blocking_ids,
        *issue.blocked_by_ids,
        issue.parent_id,
        issue.duplicate_of_id,
    } - {0}
    if not ids:
        return {}
    response = await call(
        backends.model.batch_get_issues,
        v1.BatchGetIssuesRequest(caller=viewer.caller, issue_ids=sorted(ids)),
    )
    return {i.id: i for i in response.issues}


async def _my_hotlists(backends: Backends, viewer: Viewer) -> list[v1.Hotlist]:
    response = await call(
        backends.model.list_hotlists,
        v1.ListHotlistsRequest(
            caller=viewer.caller, member=viewer.caller.user_id, page=v1.PageRequest(page_size=200)
        ),
    )
    return list(response.hotlists)


async def _issue_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    issue_id: int,
    *,
    form: EditForm | None = None,
    conflict: list[v1.HistoryEntry] | None = None,
    edited_version: int = 0,
    error: str = "",
    status_code: int = 200,
) -> Response[str]:
    backends = frontend_of(request).backends
    issue = await call(
        backends.model.get_issue, v1.GetIssueRequest(caller=viewer.caller, issue_id=issue_id)
    )
    history, related, components, my_hotlists, capabilities = await asyncio.gather(
        load_history(backends, viewer, issue_id),
        _related(backends, viewer, issue),
        list_all_components(backends, viewer),
        _my_hotlists(backends, viewer),
        backends.capabilities(),
    )
    names = await names_for(backends, viewer, history, issues=[issue])
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
            "related": related,
            "names": names,
            "components": components,
            "my_hotlists": my_hotlists,
            "form": form,
            "conflict": conflict,
            "edited_version": edited_version,
            "original": form.original or current_form,
            "error": error,
            "live": "watch" in capabilities,
            "title": f"{issue.id}: {issue.title}",
        },
        status_code=status_code,
        viewer=viewer,
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
    submitted = EditForm.from_form(await request.form())
    current = await call(
        backends.model.get_issue, v1.GetIssueRequest(caller=viewer.caller, issue_id=issue_id)
    )
    people, users = await asyncio.gather(
        backends.users_by_name(submitted.usernames()),
        backends.users((current.assignee, current.verifier, *current.cc)),
    )
    rebased = submitted.rebased_on(EditForm.from_issue(current, users))
    if current.version != submitted.version:
        return await _conflict(request, viewer, issue_id, submitted.version, rebased)
    try:
        delta = rebased.delta_against(current, people, users)
    except InvalidArgument as exc:
        return await _issue_page(
            request, viewer, issue_id, form=submitted, error=exc.message, status_code=400
        )
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
    except InvalidArgument as exc:
        return await _issue_page(
            request, viewer, issue_id, form=submitted, error=exc.message, status_code=400
        )
    version = response.entry.version if response.entry else submitted.version + 1
    return redirect(f"/issues/{issue_id}#entry-{version}")


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


@get("/issues/new")
async def new_issue_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The create form, pre-filled from the chosen component's template."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    components = [c for c in await list_all_components(backends, viewer) if not c.archived]
    component_id = form_int(request.query_params.get("component"), "component")
    chosen = next((c for c in components if c.id == component_id), None)
    template = chosen.template if chosen is not None and chosen.template else v1.IssueTemplate()
    users = await backends.users([template.assignee])
    return render(
        request,
        "new_issue.html",
        {
            "components": components,
            "chosen": chosen,
            "values": {
                "title": template.title,
                "description": template.description,
                "priority": template.priority,
                "severity": template.severity,
                "type": template.type,
                "assignee": users[template.assignee].username if template.assignee in users else "",
                "cc": "",
            },
            "idempotency_key": new_idempotency_key(),
            "error": "",
        },
        viewer=viewer,
    )


@post("/issues/new")
async def create_issue(request: Request[Any, Any, Any]) -> Response[Any]:
    """Create an issue; a repeated submission of the same form makes one issue."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()

    def text(name: str) -> str:
        return str(form.get(name, "") or "")

    title = text("title").strip()
    component_id = form_int(text("component_id"), "component")
    assignee = text("assignee").strip()
    cc = sorted({u for u in text("cc").replace(",", " ").split() if u})
    problems = []
    if not title:
        problems.append("title: an issue needs a title")
    if not component_id:
        problems.append("component: choose the component the issue belongs to")
    people = await backends.users_by_name([assignee, *cc])
    problems += [f"no user named {n!r}" for n in [assignee, *cc] if n and n not in people]
    if problems:
        components = [c for c in await list_all_components(backends, viewer) if not c.archived]
        return render(
            request,
            "new_issue.html",
            {
                "components": components,
                "chosen": next((c for c in components if c.id == component_id), None),
                "values": {
                    "title": title,
                    "description": text("description"),
                    "priority": parse_level(v1.Priority, text("priority")),
                    "severity": parse_level(v1.Severity, text("severity")),
                    "type": parse_level(v1.IssueType, text("type")),
                    "assignee": assignee,
                    "cc": " ".join(cc),
                },
                "idempotency_key": text("idempotency_key") or new_idempotency_key(),
                "error": "; ".join(problems),
            },
            status_code=400,
            viewer=viewer,
        )
    issue = await call(
        backends.model.create_issue,
        v1.CreateIssueRequest(
            caller=viewer.caller,
            fields=v1.IssueFields(
                title=title,
                component_id=component_id,
                priority=parse_level(v1.Priority, text("priority")),
                severity=parse_level(v1.Severity, text("severity")),
                type=parse_level(v1.IssueType, text("type")),
                assignee=people[assignee].user_id if assignee else "",
            ),
            description=text("description"),
            cc=[people[n].user_id for n in cc],
            idempotency_key=text("idempotency_key")[:128],
        ),
    )
    session_of(request).update(notice=f"Created issue {issue.id}.")
    return redirect(f"/issues/{issue.id}")


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
    """One rendered timeline entry (what live updates insert)."""
    issue_id = path_id(issue_text, "issue_id")
    version = path_id(version_text, "version")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    entries = await load_history(backends, viewer, issue_id, after_version=version - 1)
    entry = next((e for e in entries if e.version == version), None)
    if entry is None:
        msg = f"issue {issue_id} has no entry {version}"
        raise NotFound(msg)
    names = await names_for(backends, viewer, [entry])
    return render(request, "_entry_fragment.html", {"entry": entry, "names": names}, viewer=viewer)


ROUTES = [issue_page, change_issue, new_issue_form, create_issue, timeline_entry]
