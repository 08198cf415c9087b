"""A component's custom fields: the list, and defining, changing and deleting them.

Fields are defined on a component by its admins and apply to its whole
subtree, so the page lists the fields inherited from ancestors (read only
here, with a link to where they are defined) and the component's own.
Every change names the field's version, so two admins at once get a 409
page instead of undoing each other; the Model checks who may do what and
whether a value fits, and its refusal is the 4xx page with its reason.
Deleting a field removes its values from issues; the history keeps them
under the field's name. A definition the Model refuses (a default that does
not fit the type, a name already taken, no options for an enum) shows the
page again with what was typed and the reason next to the field (400).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core import custom_fields as cf
from bugless_core.clients import call
from bugless_core.errors import AlreadyExists, BuglessError, FailedPrecondition, InvalidArgument
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Backends, Viewer
from bugless_web.custom_fields import applicable_fields
from bugless_web.form_errors import (
    REQUEST_FIELD_ALIASES,
    FieldErrors,
    field_of,
    message_without_path,
)
from bugless_web.frontend import (
    audit,
    form_int,
    frontend_of,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)

#: The type picker's values (the words people and the CLI use).
TYPES_BY_NAME = {name: kind for kind, name in cf.TYPE_NAMES.items()}
#: The "Define a field" form's inputs, in page order.
NEW_FIELD_INPUTS = ("name", "type", "description", "options", "default", "required")
#: The Model names the request's fields; the form calls ``default_values`` "default".
_REQUEST_TO_FORM = {**REQUEST_FIELD_ALIASES, "default_values": "default"}
#: Labels of its inputs the shared form labels do not know.
_NEW_FIELD_LABELS = {"type": "Type", "options": "Options", "default": "Default"}


def _text(form: Any, name: str) -> str:
    return str(form.get(name, "") or "")


def _options(form: Any) -> list[str]:
    """One option a line (blank lines ignored)."""
    return [line.strip() for line in _text(form, "options").splitlines() if line.strip()]


async def _defaults(backends: Backends, form: Any, field_type: v1.CustomFieldType) -> list[str]:
    """The default typed into the form: comma-separated for multi-choice, a username for users."""
    raw = _text(form, "default").strip()
    if not raw:
        return []
    if field_type is v1.CustomFieldType.ENUM_MULTI:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if field_type is v1.CustomFieldType.USER:
        found = await backends.users_by_name([raw])
        if raw not in found:
            raise InvalidArgument(f"default: no user named {raw!r}")
        return [found[raw].user_id]
    return [raw]


@get("/components/{component_text:str}/fields")
async def custom_fields_page(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[str]:
    """The fields that apply to the component's issues; forms for its admins."""
    component_id = path_id(component_text, "component_id")
    return await _fields_page(request, await viewer_of(request), component_id)


async def _fields_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    component_id: int,
    *,
    refused: BuglessError | None = None,
    typed: dict[str, str] | None = None,
    edited: int = 0,
) -> Response[str]:
    """The page; with ``refused``, again with the form as typed and the reason.

    The form is the new-field one, or field ``edited``'s change form (open).
    Only an admin sees these forms, so anyone else gets ``refused`` as the
    error page it would have been.
    """
    backends = frontend_of(request).backends
    component, fields = await asyncio.gather(
        call(
            backends.model.get_component,
            v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
        ),
        applicable_fields(backends, viewer, component_id),
    )
    defaults = {
        value for f in fields if f.type is v1.CustomFieldType.USER for value in f.default_values
    }
    users, paths = await asyncio.gather(
        backends.users(defaults),
        backends.component_paths(viewer, {f.component_id for f in fields}),
    )
    is_admin = component.caller_role == v1.Role.ADMIN
    errors = FieldErrors(NEW_FIELD_INPUTS, labels=_NEW_FIELD_LABELS)
    # A change form's inputs get ids of their own (the new-field form has field-NAME).
    edit_ids = {name: f"edit-{edited}-{name}" for name in NEW_FIELD_INPUTS} if edited else {}
    if refused is not None:
        if not is_admin:
            raise refused
        name = field_of(refused, NEW_FIELD_INPUTS, _REQUEST_TO_FORM)
        if name is None:
            errors.general.append(refused.message)
        else:
            errors.add(name, message_without_path(refused.message))
    return render(
        request,
        "component_fields.html",
        {
            "component": component,
            "fields": fields,
            "users": users,
            "paths": paths,
            "is_admin": is_admin,
            "type_names": cf.TYPE_NAMES,
            "errors": None if edited else errors,
            "typed": {} if edited else typed or {},
            "edited": edited,
            "edit_errors": errors if edited else None,
            "edit_typed": (typed or {}) if edited else {},
            "edit_ids": edit_ids,
        },
        viewer=viewer,
        status_code=400 if refused is not None else 200,
    )


@post("/components/{component_text:str}/fields")
async def create_custom_field(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Define a field on the component (its admins; the Model checks)."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    type_name = _text(form, "type")
    try:
        if type_name not in TYPES_BY_NAME:
            kinds = ", ".join(TYPES_BY_NAME)
            raise InvalidArgument(f"type: {type_name!r} is not a field type; use one of {kinds}")
        field_type = TYPES_BY_NAME[type_name]
        created = await call(
            backends.model.create_custom_field,
            v1.CreateCustomFieldRequest(
                caller=viewer.caller,
                component_id=component_id,
                name=_text(form, "name").strip(),
                description=_text(form, "description").strip(),
                type=field_type,
                options=_options(form),
                required=_text(form, "required") == "yes",
                default_values=await _defaults(backends, form, field_type),
            ),
        )
    except (InvalidArgument, AlreadyExists, FailedPrecondition) as exc:
        typed = {name: _text(form, name) for name in NEW_FIELD_INPUTS}
        return await _fields_page(request, viewer, component_id, refused=exc, typed=typed)
    backends.forget_custom_fields()  # this replica's pages show it at once
    audit(viewer, "create custom field", f"component {component_id}", field_id=created.id)
    session_of(request).update(notice=f"Defined the custom field {created.name!r}.")
    return redirect(f"/components/{component_id}/fields#field-{created.id}")


async def _field(
    backends: Backends, viewer: Viewer, component_id: int, field_id: int
) -> v1.CustomField:
    """The component's own field ``field_id`` (an inherited one is changed where it is defined)."""
    for found in await applicable_fields(backends, viewer, component_id):
        if found.id == field_id:
            if found.component_id != component_id:
                msg = (
                    f"custom field {field_id} is defined on component {found.component_id}; "
                    "change it there"
                )
                raise InvalidArgument(msg)
            return found
    msg = f"component {component_id} has no custom field {field_id}"
    raise InvalidArgument(msg)


@post("/components/{component_text:str}/fields/{field_text:str}")
async def update_custom_field(
    request: Request[Any, Any, Any], component_text: FromPath[str], field_text: FromPath[str]
) -> Response[Any]:
    """Change a field's name, description, options, required flag and default."""
    component_id = path_id(component_text, "component_id")
    field_id = path_id(field_text, "field_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    current = await _field(backends, viewer, component_id, field_id)
    paths = ["name", "description", "required", "default_values"]
    if current.type in (v1.CustomFieldType.ENUM, v1.CustomFieldType.ENUM_MULTI):
        paths.append("options")
    try:
        updated = await call(
            backends.model.update_custom_field,
            v1.UpdateCustomFieldRequest(
                caller=viewer.caller,
                custom_field=v1.CustomField(
                    id=field_id,
                    name=_text(form, "name").strip(),
                    description=_text(form, "description").strip(),
                    options=_options(form),
                    required=_text(form, "required") == "yes",
                    default_values=await _defaults(backends, form, current.type),
                ),
                update_mask=FieldMask(paths=paths),
                expected_version=form_int(_text(form, "version"), "version"),
            ),
        )
    except (InvalidArgument, AlreadyExists, FailedPrecondition) as exc:
        if field_of(exc, ("version",)) is not None:
            raise  # a malformed version is no typing mistake to show by a field
        typed = {name: _text(form, name) for name in NEW_FIELD_INPUTS}
        return await _fields_page(
            request, viewer, component_id, refused=exc, typed=typed, edited=field_id
        )
    backends.forget_custom_fields()
    audit(viewer, "update custom field", f"component {component_id}", field_id=field_id)
    session_of(request).update(notice=f"Saved the custom field {updated.name!r}.")
    return redirect(f"/components/{component_id}/fields#field-{field_id}")


@post("/components/{component_text:str}/fields/{field_text:str}/delete")
async def delete_custom_field(
    request: Request[Any, Any, Any], component_text: FromPath[str], field_text: FromPath[str]
) -> Response[Any]:
    """Delete a field: its values leave every issue; the history keeps them by name."""
    component_id = path_id(component_text, "component_id")
    field_id = path_id(field_text, "field_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    current = await _field(backends, viewer, component_id, field_id)
    await call(
        backends.model.delete_custom_field,
        v1.DeleteCustomFieldRequest(
            caller=viewer.caller,
            field_id=field_id,
            expected_version=form_int(_text(form, "version"), "version"),
        ),
    )
    backends.forget_custom_fields()
    audit(viewer, "delete custom field", f"component {component_id}", field_id=field_id)
    session_of(request).update(
        notice=f"Deleted the custom field {current.name!r}; issue histories keep its old values."
    )
    return redirect(f"/components/{component_id}/fields")


ROUTES = [custom_fields_page, create_custom_field, update_custom_field, delete_custom_field]
