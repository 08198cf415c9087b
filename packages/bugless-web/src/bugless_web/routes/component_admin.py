"""Administering components: create, edit the access list and issue template, archive.

Who may do what is decided by the services, not by what the pages show: a
top-level component needs the global ``create_component`` permission, which
the Model leaves to the frontends, so it is asked of the Authenticator here;
everything else (a subcomponent needs admin on its parent, an ACL or a
template needs admin on the component) the Model enforces itself, and its
refusal is the 403 page with its reason. The pages only hide the forms a
person could not use. Every change names the version it was made against,
so two admins editing at once get a 409 page instead of silently undoing
each other.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.enums import enum_by_name
from bugless_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import FieldErrors
from bugless_web.frontend import (
    audit,
    form_int,
    frontend_of,
    path_id,
    redirect,
    render,
    require_permission,
    session_of,
    viewer_of,
)
from bugless_web.routes.components import (
    TEMPLATE_FIELDS,
    RefusedAclEdit,
    RefusedTemplateEdit,
    component_page_for,
)

#: The role picker's value that drops an entry.
REMOVE = "remove"
#: The create form's fields, in page order.
NEW_COMPONENT_FIELDS = ("name", "description")
_MAX_GROUP = 200


def _audit_component(
    viewer: Viewer, action: str, component: v1.Component, **details: object
) -> None:
    """The audit line of a change to ``component``, naming it for an operator.

    The path is the one the Model gave this admin, shortened (``…>Net``)
    where it runs below a component they may not view, and the web acts
    only as the person (identity assertions), so it has no whole path to
    log for them: the line carries the component's id and its parent's,
    which name it whatever its path (``bugless component show ID`` as an
    admin), and the version the change made, which orders the lines of
    one component.
    """
    audit(
        viewer,
        action,
        f"component {component.id}",
        component_id=component.id,
        parent_id=component.parent_id,
        path=component.path,
        version=component.version,
        **details,
    )


async def _component(backends: Backends, viewer: Viewer, component_id: int) -> v1.Component:
    return await call(
        backends.model.get_component,
        v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
    )


@get("/components/new")
async def new_component_form(request: Request[Any, Any, Any]) -> Response[str]:
    """The create form: top level (``create_component``) or under ``?parent=ID`` (its admins)."""
    viewer = await viewer_of(request)
    parent_id = form_int(request.query_params.get("parent"), "parent")
    parent = await _parent_to_create_in(request, viewer, parent_id)
    values = dict.fromkeys(NEW_COMPONENT_FIELDS, "")
    return _new_component_page(request, viewer, parent, values, FieldErrors(NEW_COMPONENT_FIELDS))


async def _parent_to_create_in(
    request: Request[Any, Any, Any], viewer: Viewer, parent_id: int
) -> v1.Component | None:
    """The component to create under (None: top level), refusing who may not create there."""
    if not parent_id:
        await require_permission(
            request, viewer, "create_component", "Creating a top-level component"
        )
        return None
    parent = await _component(frontend_of(request).backends, viewer, parent_id)
    if parent.caller_role != v1.Role.ADMIN:
        msg = (
            f"creating a subcomponent of {parent.path} needs the admin role on it; "
            f"you are {parent.caller_role.name.lower()} there"
        )
        raise PermissionDenied(msg)
    return parent


def _new_component_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    parent: v1.Component | None,
    values: dict[str, str],
    errors: FieldErrors,
    *,
    status_code: int = 200,
) -> Response[str]:
    """The create form, with what was typed and its problems when it comes back refused."""
    return render(
        request,
        "component_new.html",
        {
            "parent": parent,
            "creator_becomes_admin": parent is None and not viewer.is_admin,
            "values": values,
            "errors": errors,
        },
        status_code=status_code,
        viewer=viewer,
    )


@post("/components")
async def create_component(request: Request[Any, Any, Any]) -> Response[Any]:
    """Create a component and show it.

    A top-level component made by someone who is not a global admin gets
    one ACL entry making its creator its admin: with no entries it would be
    open to everybody and administered only by global admins, so its
    creator could not even set its access list. A subcomponent inherits its
    parent's entries, whose admins include the creator.

    A refused name (empty, or taken by a sibling) brings the form back with
    what was typed and the problem next to the field, not an error page.
    """
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    values = {name: str(form.get(name, "")).strip() for name in NEW_COMPONENT_FIELDS}
    parent_id = form_int(str(form.get("parent_id", "")), "parent")
    acl: list[v1.AclEntry] = []
    if not parent_id:
        await require_permission(
            request, viewer, "create_component", "Creating a top-level component"
        )
        if not viewer.is_admin:
            acl = [
                v1.AclEntry(principal=v1.Principal(user=viewer.caller.user_id), role=v1.Role.ADMIN)
            ]
    errors = FieldErrors(NEW_COMPONENT_FIELDS)
    try:
        if not values["name"]:
            raise InvalidArgument("name: give the component a name")
        component = await call(
            backends.model.create_component,
            v1.CreateComponentRequest(
                caller=viewer.caller,
                parent_id=parent_id,
                name=values["name"],
                description=values["description"],
                acl=acl,
            ),
        )
    except (InvalidArgument, AlreadyExists) as exc:
        if not errors.take(exc):
            raise
        parent = await _component(backends, viewer, parent_id) if parent_id else None
        return _new_component_page(
            request, viewer, parent, values, errors, status_code=exc.http_status
        )
    backends.forget_components()
    _audit_component(viewer, "created", component)
    session_of(request).update(notice=f"Created component {component.path}.")
    return redirect(f"/components/{component.id}")


async def _acl_from_form(backends: Backends, form: Any) -> list[v1.AclEntry]:
    """The access list a submitted ACL form describes.

    Existing rows carry their principal (``userid:<id>`` or ``group:<name>``)
    and a role or ``remove``; the one blank row adds a user (by username) or
    a group, and wins over an existing row for the same principal, so
    "add bob as admin" also promotes bob.

    A list saved before the Model refused a principal named twice may still
    hold two rows for one person or group. Kept with two different roles,
    they are refused, naming both, rather than one silently dropped: the
    Model counts the higher, so keeping the last would demote an admin
    whenever anyone saved the list, and keeping the higher would ignore a
    demotion typed into the other row. Setting one of them to Remove (or
    naming the principal in the add row) saves one entry.

    Raises:
        InvalidArgument: a row is malformed, a role unknown, the added user
            or group not one, or two kept rows give one principal two roles.
    """
    principals = [str(v) for v in form.getall("principal", [])]
    roles = [str(v) for v in form.getall("role", [])]
    if len(principals) != len(roles):
        raise InvalidArgument("acl: every entry needs a principal and a role; reload the page")
    chosen: dict[tuple[str, str], v1.Role] = {}
    twice: dict[tuple[str, str], tuple[v1.Role, v1.Role]] = {}
    for principal, role in zip(principals, roles, strict=True):
        kind, _, value = principal.partition(":")
        if kind not in ("userid", "group") or not value:
            raise InvalidArgument(f"acl: {principal!r} is not a user or group entry")
        if role != REMOVE:
            principal_key = ("user" if kind == "userid" else "group", value)
            picked = enum_by_name(v1.Role, role, "role")
            earlier = chosen.setdefault(principal_key, picked)
            if earlier != picked:
                twice.setdefault(principal_key, (earlier, picked))
    new_name = str(form.get("new_name", "")).strip()
    if new_name:
        new_role = enum_by_name(v1.Role, str(form.get("new_role", "")), "role")
        if form.get("new_kind") == "group":
            # Spaces are a directory group's (Domain Users; LDAP's "Sales, EMEA"),
            # as the Model takes them; a line break or other control character no one's.
            if len(new_name) > _MAX_GROUP or any(
                not ch.isprintable() and unicodedata.category(ch) != "Zs" for ch in new_name
            ):
                msg = (
                    f"group: {new_name[:40]!r} is not a group name "
                    "(no line breaks or control characters, at most 200)"
                )
                raise InvalidArgument(msg)
            key = ("group", new_name)
        else:
            found = await backends.users_by_name([new_name])
            if new_name not in found:
                raise InvalidArgument(f"no user named {new_name!r}")
            key = ("user", found[new_name].user_id)
        chosen.pop(key, None)
        chosen[key] = new_role
        twice.pop(key, None)
    if twice:
        raise InvalidArgument(await _named_twice(backends, twice))
    return [
        v1.AclEntry(
            principal=v1.Principal(user=value) if kind == "user" else v1.Principal(group=value),
            role=role,
        )
        for (kind, value), role in chosen.items()
    ]


async def _named_twice(
    backends: Backends, twice: dict[tuple[str, str], tuple[v1.Role, v1.Role]]
) -> str:
    """The refusal of rows that give one principal two roles, naming who and which roles."""
    users = await backends.users([value for kind, value in twice if kind == "user"])
    (kind, value), (first, second) = next(iter(twice.items()))
    if kind == "group":
        who = f"group {value!r}"
    else:
        found = users.get(value)
        who = repr(found.username) if found is not None and found.username else f"user {value}"
    return (
        f"acl: {who} has two entries here, as {first.name.lower()} and as "
        f"{second.name.lower()}; set one of them to Remove, so the list gives them one role"
    )


def _holds_admin(viewer: Viewer, acl: list[v1.AclEntry]) -> bool:
    """Whether an ADMIN entry of ``acl`` names the viewer or one of their groups."""
    groups = set(viewer.caller.groups)
    return any(
        entry.role == v1.Role.ADMIN
        and entry.principal is not None
        and (
            (entry.principal.user and entry.principal.user == viewer.caller.user_id)
            or (entry.principal.group and entry.principal.group in groups)
        )
        for entry in acl
    )


async def _refuse_self_lockout(
    backends: Backends, viewer: Viewer, component_id: int, version: int, acl: list[v1.AclEntry]
) -> None:
    """Refuse an ACL edit that silently ends the viewer's own admin access.

    Only a global admin could give it back, so leaving needs the form's
    explicit "leave_admin" box. Admin inherited from an ancestor stays, so it
    does not count as leaving. A stale form is left to the Model's 409.

    Raises:
        FailedPrecondition: The viewer would no longer be an admin here.
    """
    if viewer.caller.admin or _holds_admin(viewer, acl):
        return
    current = await call(
        backends.model.get_component,
        v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
    )
    if current.version != version or current.caller_role != v1.Role.ADMIN:
        return
    if current.parent_id:
        parent = await call(
            backends.model.get_component,
            v1.GetComponentRequest(caller=viewer.caller, component_id=current.parent_id),
        )
        if parent.caller_role == v1.Role.ADMIN:
            return
    raise FailedPrecondition(
        f"acl: saving this would remove your own admin access to {current.path}, and only "
        "a global admin could give it back; keep an admin entry for yourself (or a group "
        'you are in), or tick "I may remove my own admin access"'
    )


@post("/components/{component_text:str}/acl")
async def change_acl(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Replace the component's own ACL entries (its admins only; the Model checks)."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    version = form_int(str(form.get("version", "")), "version")
    try:
        acl = await _acl_from_form(backends, form)
        if form.get("leave_admin") != "yes":
            await _refuse_self_lockout(backends, viewer, component_id, version, acl)
        changed = await call(
            backends.model.update_component,
            v1.UpdateComponentRequest(
                caller=viewer.caller,
                component=v1.Component(id=component_id, acl=acl),
                update_mask=FieldMask(paths=["acl"]),
                expected_version=version,
            ),
        )
    except (InvalidArgument, FailedPrecondition) as exc:
        # Nothing saved: the page again with the form as sent and the reason.
        return await component_page_for(
            request,
            viewer,
            component_id,
            refused_acl=RefusedAclEdit.from_form(form, exc.message),
            status_code=exc.http_status,
        )
    backends.forget_components()
    _audit_component(viewer, "changed the access list of", changed, entries=len(acl))
    count = f"{len(acl)} entr{'y' if len(acl) == 1 else 'ies'}"
    session_of(request).update(notice=f"Saved the access list ({count}).")
    return redirect(f"/components/{component_id}#acl")


@post("/components/{component_text:str}/template")
async def change_template(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Replace the issue template new issues here start from (its admins only)."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()

    def text(name: str) -> str:
        return str(form.get(name, "") or "")

    errors = FieldErrors(TEMPLATE_FIELDS)
    try:
        template = await _template_from_form(backends, text)
        changed = await call(
            backends.model.update_component,
            v1.UpdateComponentRequest(
                caller=viewer.caller,
                component=v1.Component(id=component_id, template=template),
                update_mask=FieldMask(paths=["template"]),
                expected_version=form_int(text("version"), "version"),
            ),
        )
    except InvalidArgument as exc:
        if not errors.take(exc):
            raise
        # Nothing saved: the page again, the template as typed, the problem at its field.
        refused = RefusedTemplateEdit(
            {name: text(name) for name in TEMPLATE_FIELDS}, errors, version=text("version")
        )
        return await component_page_for(
            request, viewer, component_id, refused_template=refused, status_code=400
        )
    backends.forget_components()
    _audit_component(viewer, "changed the issue template of", changed)
    session_of(request).update(notice="Saved the issue template.")
    return redirect(f"/components/{component_id}#template")


async def _template_from_form(backends: Backends, text: Callable[[str], str]) -> v1.IssueTemplate:
    """The template the form describes.

    Raises:
        InvalidArgument: An unknown assignee or a value no picker offers.
    """
    assignee = text("assignee").strip()
    assignee_id = ""
    if assignee:
        found = await backends.users_by_name([assignee])
        if assignee not in found:
            raise InvalidArgument(f"assignee: no user named {assignee!r}")
        assignee_id = found[assignee].user_id
    return v1.IssueTemplate(
        title=text("title"),
        description=text("description"),
        priority=enum_by_name(v1.Priority, text("priority"), "priority", blank=v1.Priority(0)),
        severity=enum_by_name(v1.Severity, text("severity"), "severity", blank=v1.Severity(0)),
        type=enum_by_name(v1.IssueType, text("type"), "type", blank=v1.IssueType(0)),
        assignee=assignee_id,
    )


@post("/components/{component_text:str}/archive")
async def archive_component(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Archive (``archived=yes``) or unarchive (``no``) a component (its admins; the Model checks).

    An archived component takes no new issues; its issues stay changeable.
    """
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    wanted = str(form.get("archived", ""))
    if wanted not in ("yes", "no"):
        raise InvalidArgument(f"archived: {wanted!r} is not yes or no; nothing was changed")
    component = await call(
        backends.model.update_component,
        v1.UpdateComponentRequest(
            caller=viewer.caller,
            component=v1.Component(id=component_id, archived=wanted == "yes"),
            update_mask=FieldMask(paths=["archived"]),
            expected_version=form_int(str(form.get("version", "")), "version"),
        ),
    )
    backends.forget_components()
    action = "archived" if component.archived else "unarchived"
    _audit_component(viewer, action, component)
    session_of(request).update(notice=f"{action.capitalize()} {component.path}.")
    return redirect(f"/components/{component_id}")


ROUTES = [new_component_form, create_component, change_acl, change_template, archive_component]
