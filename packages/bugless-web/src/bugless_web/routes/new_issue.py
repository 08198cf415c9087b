"""Creating an issue: the form, its component templates, and the create itself.

Picking a component fills the form from that component's template, and must
never throw away what the person already typed. The rule, the same in the
script and on the server: a field still showing what the previous template
(or the defaults) put there takes the new template's value; a field the
person changed keeps their value. With JavaScript the template comes from
``GET /issues/new/template`` and nothing reloads; without it the "Use this
component's template" button posts the whole form, and the server applies
the same rule (``shown_template`` says which template the page showed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from litestar import Request, Response, get, post
from litestar.enums import MediaType

from bugless_core.clients import call
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from bugless_proto import v1
from bugless_web import custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import FieldErrors, message_without_path
from bugless_web.frontend import (
    form_int,
    frontend_of,
    new_idempotency_key,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.issue_form import choice_reader
from bugless_web.routes.issues import list_all_components
from bugless_web.viewer_warnings import warn_of_hidden_people

#: Form fields a component template fills, in form order.
TEMPLATE_FIELDS = ("title", "priority", "severity", "type", "assignee", "cc", "description")
#: The create form's fields in page order (the first invalid one gets the focus).
CREATE_FIELDS = ("component_id", *TEMPLATE_FIELDS)
#: What the form shows when no template says otherwise.
DEFAULTS: dict[str, str] = {
    "title": "",
    "priority": v1.Priority.P2.name,
    "severity": v1.Severity.S2.name,
    "type": v1.IssueType.BUG.name,
    "assignee": "",
    "cc": "",
    "description": "",
}


async def _open_components(backends: Backends, viewer: Viewer) -> list[v1.Component]:
    """The components ``viewer`` may file issues in: not archived, and not only readable to them.

    Filing needs the editor role (the Model refuses a viewer), so the picker
    offers no component that would only come back refused.
    """
    return [
        c
        for c in await list_all_components(backends, viewer)
        if not c.archived and c.caller_role != v1.Role.VIEWER
    ]


async def template_values(backends: Backends, component: v1.Component | None) -> dict[str, str]:
    """The form values ``component``'s template gives (the defaults for unset ones)."""
    values = dict(DEFAULTS)
    template = component.template if component is not None else None
    if template is None:
        return values
    values["title"] = template.title
    values["description"] = template.description
    if template.priority:
        values["priority"] = template.priority.name
    if template.severity:
        values["severity"] = template.severity.name
    if template.type:
        values["type"] = template.type.name
    if template.assignee:
        users = await backends.users([template.assignee])
        if template.assignee in users:
            values["assignee"] = users[template.assignee].username
    return values


def merge_template(
    typed: Mapping[str, str], shown: Mapping[str, str], chosen: Mapping[str, str]
) -> dict[str, str]:
    """The form after picking a template: untouched fields change, typed ones stay.

    Args:
        typed: What the form holds now.
        shown: What the previously applied template (or the defaults) put there.
        chosen: What the newly picked template gives.
    """
    return {
        name: chosen[name] if typed.get(name, "") == shown[name] else typed.get(name, "")
        for name in TEMPLATE_FIELDS
    }


async def field_defaults(
    backends: Backends, fields: list[v1.CustomField]
) -> custom_fields.CustomValues:
    """What a new issue's custom fields show: each field's default (users by username)."""
    users = await backends.users(
        {u for f in fields if f.type is v1.CustomFieldType.USER for u in f.default_values}
    )
    return {
        f.id: tuple(
            users[v].username if f.type is v1.CustomFieldType.USER and v in users else v
            for v in f.default_values
        )
        for f in fields
    }


def _form_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    components: list[v1.Component],
    chosen: v1.Component | None,
    values: Mapping[str, str],
    *,
    template: Mapping[str, str],
    idempotency_key: str,
    fields: list[v1.CustomField],
    custom: custom_fields.CustomValues,
    errors: FieldErrors | None = None,
    status_code: int = 200,
    files_dropped: bool = False,
) -> Response[str]:
    return render(
        request,
        "new_issue.html",
        {
            "components": components,
            "chosen": chosen,
            "values": values,
            "template": template,
            "idempotency_key": idempotency_key,
            "custom_fields": fields,
            "custom": custom,
            "errors": errors or _errors(fields),
            "files_dropped": files_dropped,
        },
        status_code=status_code,
        viewer=viewer,
    )


def _errors(fields: list[v1.CustomField]) -> FieldErrors:
    """The create form's problems, its custom field inputs after the built-in ones."""
    names = custom_fields.form_field_names(fields)
    return FieldErrors(
        (*CREATE_FIELDS[:-1], *names, CREATE_FIELDS[-1]),
        labels=custom_fields.labelled(fields),
    )


def custom_inputs_html(
    request: Request[Any, Any, Any],
    fields: list[v1.CustomField],
    custom: custom_fields.CustomValues,
) -> str:
    """The create form's custom field inputs alone (what the script swaps in)."""
    fragment = frontend_of(request).templates.get_template("_custom_fields_fragment.html")
    return fragment.render({"custom_fields": fields, "custom": custom})


@get("/issues/new")
async def new_issue_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The create form, pre-filled from ``?component=``'s template when given."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    components = await _open_components(backends, viewer)
    component_id = form_int(request.query_params.get("component"), "component")
    chosen = next((c for c in components if c.id == component_id), None)
    values = await template_values(backends, chosen)
    fields = await custom_fields.applicable_fields(backends, viewer, chosen.id if chosen else 0)
    errors = _errors(fields)
    if component_id and chosen is None:
        errors.add("component_id", await _not_offered(backends, viewer, component_id))
    return _form_page(
        request,
        viewer,
        components,
        chosen,
        values,
        template=values,
        idempotency_key=new_idempotency_key(),
        fields=fields,
        custom=await field_defaults(backends, fields),
        errors=errors,
    )


async def _not_offered(backends: Backends, viewer: Viewer, component_id: int) -> str:
    """Why ``?component=`` (a link to file an issue there) is not in the picker.

    Only readable to the person, archived, or not visible to them at all:
    the form says so at the picker, instead of silently showing no component
    chosen to someone who followed a "file a bug in X" link.
    """
    listed = await list_all_components(backends, viewer)
    found = next((c for c in listed if c.id == component_id), None)
    if found is None:
        return f"there is no component {component_id} you can see: choose one from the list"
    if found.archived:
        return f"{found.path} is archived and takes no new issues: choose another component"
    return (
        f"filing issues in {found.path} needs the editor role on it (you can read it; its "
        "admins can give it): choose another component"
    )


@get("/issues/new/template", cache_control=None)
async def component_template(request: Request[Any, Any, Any]) -> Response[Any]:
    """``{"component", "description", "values": {field: value}}`` for ``?component=``.

    What the create form's script fills untouched fields from. A component
    the viewer cannot see (or an archived one) is a 404 like any other.
    """
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    component_id = form_int(request.query_params.get("component"), "component")
    components = await _open_components(backends, viewer)
    chosen = next((c for c in components if c.id == component_id), None)
    if component_id and chosen is None:
        return Response(
            {"error": f"component {component_id} not found"},
            status_code=404,
            media_type=MediaType.JSON,
        )
    fields = await custom_fields.applicable_fields(backends, viewer, chosen.id if chosen else 0)
    return Response(
        {
            "component": chosen.id if chosen else 0,
            "description": chosen.description if chosen else "",
            "values": await template_values(backends, chosen),
            "custom_fields_html": custom_inputs_html(
                request, fields, await field_defaults(backends, fields)
            ),
        },
        media_type=MediaType.JSON,
        headers={"cache-control": "private, no-store"},
    )


@post("/issues/new")
async def create_issue(request: Request[Any, Any, Any]) -> Response[Any]:
    """Create an issue from a plain form (no files); a repeated submission makes one issue.

    The page's form carries files and posts to ``/issues/new/with-files``
    (:mod:`bugless_web.routes.new_issue_files`); this is for forms without
    them (a page of an earlier build, scripts).
    """
    viewer = await viewer_of(request)
    form = await request.form()
    outcome = await create_from_form(request, viewer, form)
    if isinstance(outcome, Response):
        return outcome
    description = str(form.get("description", "") or "")
    return await after_create(request, viewer, outcome, description=description)


async def create_from_form(
    request: Request[Any, Any, Any], viewer: Viewer, form: Any, *, files_chosen: bool = False
) -> Response[Any] | v1.Issue:
    """The issue ``form`` creates, or the form's page again (its problems, or another template).

    The "Use this component's template" button (``use_template``) posts the
    same form without JavaScript: it re-renders the form for the picked
    component, keeping everything typed, and creates nothing. A browser
    does not keep chosen files in a form that comes back, so with
    ``files_chosen`` the page asks for them again.
    """
    backends = frontend_of(request).backends

    def text(name: str) -> str:
        return str(form.get(name, "") or "")

    typed = {name: text(name) for name in TEMPLATE_FIELDS}
    picked = FieldErrors(CREATE_FIELDS)
    component_id = _read(picked, "component_id", text("component_id"), form_int)
    fields = await custom_fields.applicable_fields(backends, viewer, component_id)
    errors = _errors(fields)
    errors.messages.update(picked.messages)
    errors.raw.update(picked.raw)
    custom = custom_fields.read_form(form)
    idempotency_key = text("idempotency_key")[:128] or new_idempotency_key()
    if text("use_template"):
        components = await _open_components(backends, viewer)
        chosen = next((c for c in components if c.id == component_id), None)
        previous_id = _read(errors, "component_id", text("shown_template"), form_int)
        previous = next((c for c in components if c.id == previous_id), None)
        shown = await template_values(backends, previous)
        offered = await template_values(backends, chosen)
        # Fields of both components keep what was typed; new ones show their defaults.
        kept = {**await field_defaults(backends, fields), **custom}
        return _form_page(
            request,
            viewer,
            components,
            chosen,
            merge_template(typed, shown, offered),
            template=offered,
            idempotency_key=idempotency_key,
            fields=fields,
            custom={f.id: kept.get(f.id, ()) for f in fields},
            files_dropped=files_chosen,
        )
    title = typed["title"].strip()
    assignee = typed["assignee"].strip()
    cc = sorted({u for u in typed["cc"].replace(",", " ").split() if u})
    if not title:
        errors.add("title", "an issue needs a title")
    if not component_id and "component_id" not in errors.messages:
        errors.add("component_id", "choose the component the issue belongs to")
    priority = _read(errors, "priority", typed["priority"], choice_reader(v1.Priority))
    severity = _read(errors, "severity", typed["severity"], choice_reader(v1.Severity))
    issue_type = _read(errors, "type", typed["type"], choice_reader(v1.IssueType))
    people = await backends.users_by_name([assignee, *cc, *custom_fields.usernames(fields, custom)])
    values = custom_fields.to_wire(fields, custom, people, errors)
    if assignee and assignee not in people:
        errors.add("assignee", f"no user named {assignee!r}")
    unknown = [n for n in cc if n not in people]
    if unknown:
        errors.add("cc", f"no user named {', '.join(map(repr, unknown))}")
    issue: v1.Issue | None = None
    if not errors:
        try:
            issue = await call(
                backends.model.create_issue,
                v1.CreateIssueRequest(
                    caller=viewer.caller,
                    fields=v1.IssueFields(
                        title=title,
                        component_id=component_id,
                        priority=priority,
                        severity=severity,
                        type=issue_type,
                        assignee=people[assignee].user_id if assignee else "",
                    ),
                    description=typed["description"],
                    cc=[people[n].user_id for n in cc],
                    idempotency_key=idempotency_key,
                    custom_fields=[v for v in values if v.values],
                ),
            )
        except (InvalidArgument, NotFound, FailedPrecondition, PermissionDenied) as exc:
            if not errors.take(exc):
                raise
    if issue is None:
        components = await _open_components(backends, viewer)
        chosen = next((c for c in components if c.id == component_id), None)
        return _form_page(
            request,
            viewer,
            components,
            chosen,
            typed,
            template=await template_values(backends, chosen),
            idempotency_key=idempotency_key,
            fields=fields,
            custom=custom,
            errors=errors,
            status_code=400,
            files_dropped=files_chosen,
        )
    return issue


async def after_create(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    issue: v1.Issue,
    *,
    description: str,
    attached: int = 0,
    files_note: str = "",
) -> Response[Any]:
    """Back to the new issue, saying it was made; warned of people who cannot view it.

    Those named, and those its title and ``description`` mention, are
    checked. ``attached`` files are counted in the notice; ``files_note`` (the files
    that were not attached, and why) leads the page's warning: the person
    must see it before leaving the issue.
    """
    session = session_of(request)
    with_files = f" with {attached} file{'s' if attached > 1 else ''} attached" if attached else ""
    session.update(notice=f"Created issue {issue.id}{with_files}.")
    await warn_of_hidden_people(request, viewer, None, issue, texts=(issue.title, description))
    if files_note:
        session.update(warning=f"{files_note} {session.warning}".strip())
    return redirect(f"/issues/{issue.id}")


_T = TypeVar("_T")


def _read(errors: FieldErrors, name: str, value: str, reader: Callable[[str, str], _T]) -> _T:
    """``reader(value, name)``, or its zero value with the problem recorded for ``name``."""
    try:
        return reader(value, name)
    except InvalidArgument as exc:
        errors.add(name, message_without_path(exc.message), typed=value)
        return reader("", name)


ROUTES = [new_issue_form, component_template, create_issue]
