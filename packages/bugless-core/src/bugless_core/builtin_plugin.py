"""bugless-core's own hook implementations: the commands every install has.

Registered directly by :func:`bugless_core.plugins.load_plugins` (not through an
entry point) so that core commands exist even when metadata is broken.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from bugless_core.hookspecs import hookimpl
from bugless_core.query_arguments import QueryCommand

if TYPE_CHECKING:
    from bugless_core.cli import CommandGroup
from bugless_core.plugins import Plugins


@hookimpl
def bugless_register_commands(cli: CommandGroup) -> None:
    """Add ``bugless plugins``, ``bugless query`` and ``bugless model``."""
    cli.add_command(plugins_command)
    cli.add_command(query_group)
    cli.add_lazy_command(
        "model",
        "bugless_core.model.commands:model_group",
        "Run the Model service (all tracker data).",
    )


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins_command(plugins: Plugins, as_json: bool) -> None:
    """List installed plugins and the backends they provide."""
    data: dict[str, Any] = {
        "plugins": [
            {
                "name": p.name,
                "module": p.module,
                "distribution": p.distribution,
                "version": p.version,
            }
            for p in plugins.loaded
        ],
        "model_backends": {
            name: {
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "capabilities": sorted(c.value for c in cls.capabilities),
            }
            for name, cls in plugins.model_backends
        },
        "authenticators": {
            name: {"class": f"{cls.__module__}.{cls.__qualname__}", "kind": cls.kind.value}
            for name, cls in plugins.authenticators
        },
        "blob_stores": {
            name: {"class": f"{cls.__module__}.{cls.__qualname__}"}
            for name, cls in plugins.blob_stores
        },
        "notification_channels": {
            name: {"class": f"{cls.__module__}.{cls.__qualname__}"}
            for name, cls in plugins.notification_channels
        },
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("Plugins:")
    for p in plugins.loaded:
        click.echo(f"  {p.name:<20} {p.distribution} {p.version}  ({p.module})")
    click.echo("Model backends:")
    for name, info in data["model_backends"].items():
        caps = ", ".join(info["capabilities"]) or "-"
        click.echo(f"  {name:<20} {info['class']}  capabilities: {caps}")
    if not plugins.model_backends:
        click.echo("  (none: pip install bugless-model-postgres)")
    click.echo("Authenticator backends:")
    for name, info in data["authenticators"].items():
        click.echo(f"  {name:<20} {info['class']}  kind: {info['kind']}")
    if not plugins.authenticators:
        click.echo("  (none: pip install bugless-auth)")
    click.echo("Blob stores:")
    for name, info in data["blob_stores"].items():
        click.echo(f"  {name:<20} {info['class']}")
    if not plugins.blob_stores:
        click.echo("  (none: pip install bugless-model-postgres or bugless-blob-s3)")
    click.echo("Notification channels:")
    for name, info in data["notification_channels"].items():
        click.echo(f"  {name:<20} {info['class']}")
    if not plugins.notification_channels:
        click.echo("  (none: pip install bugless-notify)")


@click.group("query")
def query_group() -> None:
    """Work with the search language."""


@query_group.command("explain", cls=QueryCommand)
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed tree as JSON.")
def explain_command(query: str, as_json: bool) -> None:
    """Print how QUERY is parsed, or where it is wrong.

    Example: bugless query explain 'is:open p<p2 -assignee:none "disk full"'
    """
    from bugless_core.cli import EXIT_USAGE  # noqa: PLC0415 - cli loads this plugin
    from bugless_core.search import QuerySyntaxError, explain, parse_query, query_to_json  # noqa: PLC0415

    try:
        parsed = parse_query(query)
    except QuerySyntaxError as exc:
        if as_json:
            click.echo(
                json.dumps(
                    {"error": exc.message, "position": exc.position, "length": exc.length},
                    indent=2,
                )
            )
        else:
            click.echo(exc.render_caret(), err=True)
            click.echo(exc.message, err=True)
        # Bad usage, as the client commands report the same text from the server.
        raise SystemExit(EXIT_USAGE) from None
    if as_json:
        click.echo(json.dumps(query_to_json(parsed), indent=2))
    else:
        click.echo(explain(parsed))
