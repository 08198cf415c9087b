"""``bugless component ...``: list, show, create, rename, change (access list too), archive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import (
    ID_OR_ZERO,
    Detail,
    Table,
    client_options,
    command,
    id_or_path,
)
from bugless_api.cli._option_names import COMPONENT_CREATE_OPTIONS, COMPONENT_UPDATE_OPTIONS
from bugless_api.cli.groups import component_group

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def _access_text(acl: list[v1.AclEntry]) -> str:
    """``admin user:alice, viewer group:eng``; "inherited" when the component lists none."""
    if not acl:
        return "inherited"
    parts = []
    for entry in acl:
        who = entry.principal
        name = f"user:{who.user}" if who is not None and who.user is not None else ""
        if who is not None and who.group is not None:
            name = f"group:{who.group}"
        parts.append(f"{entry.role.name.lower()} {name}")
    return ", ".join(parts)


def _component_detail(component: v1.Component) -> Detail:
    return Detail(
        lines=[
            ("id", component.id),
            ("path", component.path),
            ("parent", component.parent_id),
            ("archived", component.archived),
            ("your role", component.caller_role),
            ("access", _access_text(component.acl)),
            ("version", component.version),
            ("description", component.description),
        ],
        data=component,
    )


async def _component_id(client: BuglessClient, ref: str) -> int:
    """The id ``ref`` names: digits are an id (0: none, the top level), else a path."""
    if ref == "0":
        return 0
    found = id_or_path(ref)
    return found if isinstance(found, int) else (await client.get_component(found)).id


@component_group.command("list")
@click.option(
    "--parent", "parent_ref", default="0", help="Only this component's children (id or path)."
)
@click.option("--archived", is_flag=True, help="Include archived components.")
@client_options
@command
async def component_list(client: BuglessClient, parent_ref: str, archived: bool) -> Table:
    """List the components you can see, in path order."""
    parent_id = await _component_id(client, parent_ref)
    components = await client.list_components(parent_id=parent_id, include_archived=archived)
    return Table(
        headers=["id", "path", "role", "archived"],
        rows=[[c.id, c.path, c.caller_role, "yes" if c.archived else ""] for c in components],
        data={"components": components},
    )


@component_group.command("show")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_show(client: BuglessClient, component_ref: str) -> Detail:
    """Show a component by id or path (Platform>Storage)."""
    # Not named `key`: that is the client key option every command takes.
    component = await client.get_component(id_or_path(component_ref))
    return _component_detail(component)


_SET_ROLE_HELP = (
    "user:NAME or group:NAME (a bare name is a user) given the {} role, replacing the "
    "role it had (repeatable)."
)


_ROLE_HELP = "user:NAME or group:NAME (a bare name is a user) given the {} role (repeatable)."


def _principals(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[v1.AclEntry]:
    """The option's principals as ACL entries of its role, checked while parsing."""
    from bugless_proto import v1  # noqa: PLC0415

    role = v1.Role[str(param.name).removesuffix("s").upper()]
    entries = []
    for text in values:
        kind, _, name = text.partition(":")
        if not name:
            kind, name = "user", text
        if kind not in {"user", "group"} or not name:
            raise click.BadParameter(f"{text!r}: use user:NAME or group:NAME", ctx, param)
        who = v1.Principal(user=name) if kind == "user" else v1.Principal(group=name)
        entries.append(v1.AclEntry(principal=who, role=role))
    return entries


@component_group.command("create")
@click.argument("name")
@click.option("--parent", "parent_ref", default="0", help="Parent id or path; 0 = top level.")
@click.option("--description", default="", help="What the component covers.")
@click.option(
    "--admin", "admins", multiple=True, callback=_principals, help=_ROLE_HELP.format("admin")
)
@click.option(
    "--editor", "editors", multiple=True, callback=_principals, help=_ROLE_HELP.format("editor")
)
@click.option(
    "--viewer", "viewers", multiple=True, callback=_principals, help=_ROLE_HELP.format("viewer")
)
@client_options
@command(option_names=COMPONENT_CREATE_OPTIONS)
async def component_create(  # noqa: PLR0917 - click passes every option by keyword
    client: BuglessClient,
    name: str,
    parent_ref: str,
    description: str,
    admins: list[v1.AclEntry],
    editors: list[v1.AclEntry],
    viewers: list[v1.AclEntry],
) -> Detail:
    """Create a component (top level needs the create_component permission).

    Its creator gets no role by creating it: name its admins with --admin
    (yourself, to define its custom fields and change it later), else only
    the parent's admins (or global admins, at the top level) can. With no
    entries here or above, every signed-in person may see and edit it.
    """
    acl = [*admins, *editors, *viewers]
    parent_id = await _component_id(client, parent_ref)
    component = await client.create_component(
        name, parent_id=parent_id, description=description, acl=acl
    )
    return _component_detail(component)


async def _update(
    client: BuglessClient, ref: str, changes: Mapping[str, object], expected_version: int | None
) -> Detail:
    from bugless_proto import v1  # noqa: PLC0415

    found = id_or_path(ref)
    component_id = found if isinstance(found, int) else (await client.get_component(found)).id
    component = v1.Component(id=component_id, **changes)  # type: ignore[arg-type]
    updated = await client.update_component(
        component, list(changes), expected_version=expected_version or 0
    )
    return _component_detail(updated)


@component_group.command("update")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.option("--name", default=None, help="Rename it (its path and its children's change).")
@click.option("--description", default=None, help="Replace the description.")
@click.option(
    "--parent", "parent_ref", default=None, help="Move under this id or path (0: to the top level)."
)
@click.option(
    "--admin", "admins", multiple=True, callback=_principals, help=_SET_ROLE_HELP.format("admin")
)
@click.option(
    "--editor",
    "editors",
    multiple=True,
    callback=_principals,
    help=_SET_ROLE_HELP.format("editor"),
)
@click.option(
    "--viewer",
    "viewers",
    multiple=True,
    callback=_principals,
    help=_SET_ROLE_HELP.format("viewer"),
)
@click.option(
    "--remove",
    "removed",
    multiple=True,
    metavar="PRINCIPAL",
    help="user:NAME or group:NAME whose entry leaves the access list (repeatable; one it "
    "does not list is refused).",
)
@click.option(
    "--expected-version",
    metavar="N",
    type=ID_OR_ZERO,
    default=None,
    help="Fail (exit 4) unless at it.",
)
@client_options
@command(option_names=COMPONENT_UPDATE_OPTIONS)
async def component_update(
    client: BuglessClient,
    *,
    component_ref: str,
    name: str | None,
    description: str | None,
    parent_ref: str | None,
    admins: list[v1.AclEntry],
    editors: list[v1.AclEntry],
    viewers: list[v1.AclEntry],
    removed: tuple[str, ...],
    expected_version: int | None,
) -> Detail:
    """Rename, describe, move a component or change its access list (its admins).

    --admin/--editor/--viewer give a user or group that role, replacing the
    entry they had; --remove takes an entry out. The other entries stay as
    they are: the list is read, changed and written back at the version
    read (--expected-version pins another), so a change someone else made
    meanwhile is refused (exit 4), never overwritten.
    """
    parent_id = None if parent_ref is None else await _component_id(client, parent_ref)
    given = {"name": name, "description": description, "parent_id": parent_id}
    changes: dict[str, object] = {f: v for f, v in given.items() if v is not None}
    roles = [*admins, *editors, *viewers]
    if roles or removed:
        current = await client.get_component(id_or_path(component_ref))
        changes["acl"] = _changed_acl(current.acl, roles, removed)
        expected_version = expected_version or current.version
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --description, --parent, "
            "--admin/--editor/--viewer or --remove"
        )
    return await _update(client, component_ref, changes, expected_version)


def _key(kind: str, name: str) -> str:
    """Who an entry is for, as entries are compared: a user by its username's key.

    A username names one user however it is spelt ("Alice" is alice), so an
    entry typed in another case must find the user's entry; matched as
    typed, it was added beside it, and a demotion left the person their
    old role.
    """
    from bugless_core.usernames import username_key  # noqa: PLC0415

    return f"user:{username_key(name)}" if kind == "user" else f"group:{name}"


def _principal_text(principal: v1.Principal | None) -> tuple[str, str]:
    """(kind, name) of an entry's principal: ``user`` or ``group``."""
    if principal is None:
        return "user", ""
    if principal.user is not None:
        return "user", principal.user
    return "group", principal.group or ""


def _changed_acl(
    acl: list[v1.AclEntry], roles: list[v1.AclEntry], removed: tuple[str, ...]
) -> list[v1.AclEntry]:
    """``acl`` with each principal of ``roles`` set to its role and those of ``removed`` gone.

    A list saved before the Model refused a principal named twice may give
    one two roles; written back as read, one of them would be dropped
    silently (an admin left a viewer by an unrelated change), so such a
    principal must be named in this change.

    Raises:
        click.BadParameter: --remove names a principal the list does not hold,
            or one also given a role; or one principal is given more than
            one role.
        click.UsageError: the list gives a principal two roles and this
            change names it neither with a role nor in --remove.
    """
    entries: dict[str, v1.AclEntry] = {}
    twice: dict[str, tuple[str, str]] = {}
    for entry in acl:
        kind, name = _principal_text(entry.principal)
        earlier = entries.setdefault(_key(kind, name), entry)
        if earlier.role != entry.role:
            roles_held = f"{earlier.role.name.lower()} and {entry.role.name.lower()}"
            twice.setdefault(_key(kind, name), (f"{kind}:{name}", roles_held))
    given: dict[str, v1.AclEntry] = {}
    for entry in roles:
        kind, name = _principal_text(entry.principal)
        if (key := _key(kind, name)) in given:
            raise click.BadParameter(
                f"{kind}:{name} is named more than once in --admin/--editor/--viewer; "
                "give it one role"
            )
        given[key] = entry
    for text in removed:
        kind, _, name = text.partition(":")
        if kind not in {"user", "group"} or not name:
            kind, name = "user", text
        key = _key(kind, name)
        if key in given:
            raise click.BadParameter(f"{text!r} is also given a role", param_hint="--remove")
        if key not in entries:
            listed = ", ".join(":".join(_principal_text(e.principal)) for e in entries.values())
            raise click.BadParameter(
                f"the access list has no entry for {kind}:{name} (its entries: {listed or 'none'})",
                param_hint="--remove",
            )
        del entries[key]
        twice.pop(key, None)
    for key in given:
        twice.pop(key, None)
    if twice:
        principal, roles_held = next(iter(twice.values()))
        raise click.UsageError(
            f"the access list gives {principal} two entries ({roles_held}); "
            f"give it one role in this change (--admin/--editor/--viewer {principal}) "
            f"or --remove {principal}"
        )
    entries.update(given)
    return list(entries.values())


@component_group.command("archive")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_archive(client: BuglessClient, component_ref: str) -> Detail:
    """Archive a component: hidden from pickers, its issues stay searchable."""
    return await _update(client, component_ref, {"archived": True}, None)


@component_group.command("unarchive")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_unarchive(client: BuglessClient, component_ref: str) -> Detail:
    """Bring an archived component back."""
    return await _update(client, component_ref, {"archived": False}, None)
