"""``bugless model migrate`` and ``bugless model serve``.

The commands live in core because the Model servicer does; the storage comes
from whichever backend plugin is installed and named with ``--model``.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from bugless_core import eventloop, limits
from bugless_core.cli_options import grpc_server_options, grpc_settings_from, log_options
from bugless_core.errors import BuglessError
from bugless_core.model.backend import ModelBackend, ModelSettings
from bugless_core.plugins import Plugins

_log = logging.getLogger("bugless.model")
DEFAULT_MODEL_PORT = 50051


def _model_options(fn: Any) -> Any:
    fn = click.option(
        "--schema",
        envvar="BUGLESS_DATABASE_SCHEMA",
        default="bugless",
        show_default=True,
        help="Database schema holding the tables.",
    )(fn)
    fn = click.option(
        "--database-url",
        envvar="BUGLESS_DATABASE_URL",
        required=True,
        help="postgresql://user:pass@host:port/db [env BUGLESS_DATABASE_URL].",
    )(fn)
    return click.option(
        "--model",
        "backend_name",
        envvar="BUGLESS_MODEL",
        default="postgres",
        show_default=True,
        help="Model backend to use; `bugless plugins` lists the installed ones.",
    )(fn)


def _backend_class(plugins: Plugins, name: str) -> type[ModelBackend]:
    try:
        return plugins.model_backends.get(name)
    except BuglessError as exc:
        raise click.UsageError(exc.message) from exc


@click.group("model")
def model_group() -> None:
    """Run the Model service (all tracker data)."""


@model_group.command("migrate")
@_model_options
@click.option(
    "--regions",
    envvar="BUGLESS_REGIONS",
    default="",
    help="Comma-separated database regions, primary first (multi-region backends).",
)
@click.pass_obj
def migrate_command(
    plugins: Plugins, backend_name: str, database_url: str, schema: str, regions: str
) -> None:
    """Create or upgrade the database schema (safe to run from several replicas)."""
    cls = _backend_class(plugins, backend_name)
    settings = ModelSettings(
        database_url=database_url,
        page_token_secret="-" * 16,  # unused by migrations
        schema=schema,
        regions=tuple(r.strip() for r in regions.split(",") if r.strip()),
    )
    version = eventloop.run(cls.migrate(settings))
    click.echo(f"schema {schema!r} is at version {version} ({backend_name})")


@model_group.command("serve")
@_model_options
@click.option(
    "--page-token-secret",
    envvar="BUGLESS_PAGE_TOKEN_SECRET",
    required=True,
    help="Secret (16+ chars) signing page tokens; the same on every replica.",
)
@click.option(
    "--pool-max-size",
    envvar="BUGLESS_POOL_MAX_SIZE",
    type=int,
    default=10,
    show_default=True,
    help="Database connections per replica.",
)
@click.option(
    "--search-count-cap",
    envvar="BUGLESS_SEARCH_COUNT_CAP",
    type=click.IntRange(min=1),
    default=limits.SEARCH_COUNT_CAP,
    show_default=True,
    help="Searches count matches up to this many (above: a lower bound).",
)
@click.option(
    "--migrate/--no-migrate",
    envvar="BUGLESS_MIGRATE",
    default=False,
    help="Apply migrations before serving.",
)
@grpc_server_options("model", DEFAULT_MODEL_PORT)
@log_options
@click.pass_obj
def serve_command(plugins: Plugins, /, **params: Any) -> None:
    """Serve bugless.v1.Model over gRPC until SIGTERM."""
    from bugless_core.logs import configure_logging  # noqa: PLC0415
    from bugless_core.model.runner import serve_model  # noqa: PLC0415

    configure_logging(params.pop("log_level"), json=params.pop("log_json"))
    grpc_settings = grpc_settings_from(params)
    cls = _backend_class(plugins, params["backend_name"])
    settings = ModelSettings(
        database_url=params["database_url"],
        page_token_secret=params["page_token_secret"],
        schema=params["schema"],
        pool_max_size=params["pool_max_size"],
        pool_min_size=min(2, params["pool_max_size"]),
        search_count_cap=params["search_count_cap"],
    )
    eventloop.run(serve_model(plugins, cls, settings, grpc_settings, migrate=params["migrate"]))
