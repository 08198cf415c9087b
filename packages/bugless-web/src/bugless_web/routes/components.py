"""The component tree, one component's issues, and its ACL and template (for its admins).

Changing them is :mod:`bugless_web.routes.component_admin`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.errors import BuglessError, PermissionDenied
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import FieldErrors
from bugless_web.frontend import frontend_of, path_id, render, viewer_of
from bugless_web.result_columns import DEFAULT_COLUMNS
from bugless_web.routes.issues import list_all_components
from bugless_web.searching import run_search
from bugless_web.timezones import zone_of


@get("/components")
async def component_tree(request: Request[Any, Any, Any]) -> Response[str]:
    """Every visible component, indented by depth, in path order."""
    viewer = await viewer_of(request)
    components = await list_all_components(frontend_of(request).backends, viewer)
    return render(
        request,
        "components.html",
        # Only shows the link; creating asks the Authenticator itself.
        {"components": components, "can_create": "create_component" in viewer.identity.permissions},
        viewer=viewer,
    )


@dataclass
class RefusedAclEdit:
    """An access list edit refused before anything was saved, shown again in its form.

    Attributes:
        problem: Why, as the form check or the Model said it.
        roles: The role picked for each existing entry, by its principal
            (``userid:<id>`` or ``group:<name>``), ``remove`` included.
        rows: Each existing row's principal and role, in form order, so
            two rows of one principal (a list from before the Model refused
            that) each come back with their own pick (:meth:`picked`).
        new_kind: ``user`` or ``group`` in the add row.
        new_name: What was typed in the add row.
        new_role: The role picked in the add row.
        leave_admin: Whether "I may remove my own admin access" was ticked.
        version: The component version the form was sent at: it is sent
            again, so a second send after someone else's change meanwhile is
            the stale-edit 409, not a silent overwrite of that change.
    """

    problem: str
    roles: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    new_kind: str = "user"
    new_name: str = ""
    new_role: str = "editor"
    leave_admin: bool = False
    version: str = ""

    @property
    def about_new_entry(self) -> bool:
        """Whether the problem is the added entry (an unknown user, a bad group name)."""
        return (
            bool(self.new_name.strip()) and repr(self.new_name.strip()[:40])[1:-1] in self.problem
        )

    def picked(self, index: int, principal: str) -> str | None:
        """The role sent for the page's ``index``-th row, which names ``principal``.

        By position while the row there names the same principal (the list
        unchanged since the form was sent), else by principal.
        """
        if index < len(self.rows) and self.rows[index][0] == principal:
            return self.rows[index][1]
        return self.roles.get(principal)

    @classmethod
    def from_form(cls, form: Any, problem: str) -> RefusedAclEdit:
        """The refused form's choices, as posted."""
        principals = [str(v) for v in form.getall("principal", [])]
        roles = [str(v) for v in form.getall("role", [])]
        return cls(
            problem=problem,
            roles=dict(zip(principals, roles, strict=False)),
            rows=list(zip(principals, roles, strict=False)),
            new_kind=str(form.get("new_kind", "user") or "user"),
            new_name=str(form.get("new_name", "") or ""),
            new_role=str(form.get("new_role", "editor") or "editor"),
            leave_admin=form.get("leave_admin") == "yes",
            version=str(form.get("version", "") or ""),
        )


#: The issue template form's fields, in page order.
TEMPLATE_FIELDS = ("title", "priority", "severity", "type", "assignee", "description")


@dataclass
class RefusedTemplateEdit:
    """An issue template edit refused before anything was saved, shown again in its form.

    Attributes:
        values: What was typed or picked in each of :data:`TEMPLATE_FIELDS`.
        errors: The problem, at its field.
        version: The component version the form was sent at (as
            :attr:`RefusedAclEdit.version`: a second send after a change
            meanwhile is the stale-edit 409).
    """

    values: dict[str, str]
    errors: FieldErrors
    version: str = ""


@get("/components/{component_text:str}")
async def component_page(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[str]:
    """A component: description, subcomponents, open issues, and the ACL for admins."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    return await component_page_for(request, viewer, component_id)


async def component_page_for(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    component_id: int,
    *,
    refused_acl: RefusedAclEdit | None = None,
    refused_template: RefusedTemplateEdit | None = None,
    status_code: int = 200,
) -> Response[str]:
    """The component's page; with a refused edit, that form as it was sent and the reason.

    Also whether the viewer subscribed to it (one ListSubscriptions call: this
    page is no hot path), so the page offers Subscribe or Unsubscribe.
    """
    backends = frontend_of(request).backends
    component = await call(
        backends.model.get_component,
        v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
    )
    query = request.query_params.get("q") or f"componentid:{component_id}+ is:open"
    results, children, subscriptions = await asyncio.gather(
        run_search(backends, viewer, query, zone=zone_of(request), columns=DEFAULT_COLUMNS),
        call(
            backends.model.list_components,
            v1.ListComponentsRequest(
                caller=viewer.caller,
                parent_id=component_id,
                include_archived=True,
                page=v1.PageRequest(page_size=200),
            ),
        ),
        call(backends.model.list_subscriptions, v1.ListSubscriptionsRequest(caller=viewer.caller)),
    )
    is_admin = component.caller_role == v1.Role.ADMIN
    if (refused_acl or refused_template) and not is_admin:
        # The forms are an admin's; one whose admin role ended since the page
        # was loaded would get the page without the form and its problem.
        what = "its access list" if refused_acl else "its issue template"
        raise PermissionDenied(
            f"admin role on component {component.path} needed to change {what}; nothing was saved",
            metadata={"component_id": str(component_id)},
        )
    acl_users = (
        await backends.users(
            [
                *(e.principal.user or "" for e in component.acl if e.principal),
                component.template.assignee if component.template else "",
            ]
        )
        if is_admin
        else {}
    )
    results.users.update(acl_users)
    members = await group_members(backends, component.acl) if is_admin else {}
    subscription = next(
        (s for s in subscriptions.components if s.component_id == component_id), None
    )
    covering = (
        None
        if subscription is not None
        else await _covering_subscription(backends, viewer, component, subscriptions)
    )
    return render(
        request,
        "component.html",
        {
            "component": component,
            "children": children.components,
            "results": results,
            "columns": DEFAULT_COLUMNS,
            "is_admin": is_admin,
            "search_query": query,
            "subscription": subscription,
            "covering": covering,
            "refused_acl": refused_acl,
            "group_members": members,
            "empty_groups": sorted(
                g for g, n in members.items() if n.members == 0 and not n.unknown
            ),
            "refused_template": refused_template,
            "template_errors": refused_template.errors
            if refused_template
            else FieldErrors(TEMPLATE_FIELDS),
        },
        status_code=status_code,
        viewer=viewer,
    )


async def group_members(backends: Backends, acl: list[v1.AclEntry]) -> dict[str, v1.GroupMembers]:
    """How many enabled people each group ``acl`` names has, for its admins' form.

    An access list names groups by name only, and the Model cannot tell a
    group from a typo (it knows no groups): an entry for "platfrom" was
    saved and shown like any other, while it gave nobody access and, as the
    component's first entry, took it away from everyone else. The form
    shows each group's count and warns of one nobody is in. An LDAP group
    is counted from the directory (its members whether or not they have
    signed in); one the directory could not count now is ``unknown`` and
    shown as "members not counted", never warned of. Advisory: an
    Authenticator that does not answer (unreachable, or of an earlier
    release: UNIMPLEMENTED) leaves the page without counts.
    """
    groups = [e.principal.group for e in acl if e.principal and e.principal.group]
    if not groups:
        return {}
    try:
        answer = await call(
            backends.auth.count_group_members, v1.CountGroupMembersRequest(groups=groups)
        )
    except BuglessError:
        return {}
    return {g.group: g for g in answer.groups}


async def _covering_subscription(
    backends: Backends, viewer: Viewer, component: v1.Component, subscriptions: v1.Subscriptions
) -> v1.Component | None:
    """The nearest ancestor whose subscription with its subcomponents covers ``component``.

    Its page then says so instead of offering a second subscription that
    would notify of nothing more. Only a viewer with such a subscription pays
    for the (cached) component tree.
    """
    wide = {s.component_id for s in subscriptions.components if s.include_subtree}
    if not wide or not component.parent_id:
        return None
    by_id = {c.id: c for c in await backends.components(viewer)}
    ancestor = by_id.get(component.parent_id)
    while ancestor is not None:
        if ancestor.id in wide:
            return ancestor
        ancestor = by_id.get(ancestor.parent_id) if ancestor.parent_id else None
    return None


ROUTES = [component_tree, component_page]
