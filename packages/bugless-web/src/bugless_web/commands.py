"""``bugless web serve``: flags and ``BUGLESS_WEB_*`` environment variables.

They are generated from :class:`bugless_web.settings.WebSettings`, where each
is declared once; the command receives the typed object.
"""

from __future__ import annotations

from pathlib import Path

import click

from bugless_core.service_address import host_port
from bugless_core.settings import settings_command
from bugless_web.builds import DEFAULT_KEEP, export_assets
from bugless_web.settings import WebSettings

ENV_PREFIX = "BUGLESS_WEB_"


@click.group("web")
def web_group() -> None:
    """Run the web frontend (server-rendered pages for people)."""


@web_group.command("serve")
@settings_command(WebSettings, env_prefix=ENV_PREFIX)
def serve_command(settings: WebSettings) -> None:
    """Serve the web UI with uvicorn until SIGTERM (then drain and stop)."""
    from bugless_web.metrics import prepare_workers  # noqa: PLC0415

    # Before the server's modules load: the workers' metrics must go to files
    # shared with the parent, and prometheus_client decides that on import.
    metrics_directory = (
        prepare_workers() if settings.workers > 1 and settings.metrics_port is not None else None
    )
    from bugless_web.server import bind_metrics, listen, serve  # noqa: PLC0415
    from bugless_web.workers import serve_workers  # noqa: PLC0415

    settings.log.configure()
    try:
        listener = listen(settings.host, settings.port, reuse_port=settings.reuse_port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host_port(settings.host, settings.port)}: {exc.strerror or exc}"
        ) from exc
    try:
        metrics = bind_metrics(settings, metrics_directory)
    except OSError as exc:  # only with a --metrics-port: without one nothing is bound
        listener.close()
        where = host_port(settings.metrics_host, settings.metrics_port or 0)
        raise click.ClickException(
            f"cannot serve metrics on {where}: {exc.strerror or exc}"
        ) from exc
    if settings.workers > 1:
        raise SystemExit(
            serve_workers(
                settings,
                listener,
                settings.workers,
                metrics=metrics,
                metrics_directory=metrics_directory,
            )
        )
    raise SystemExit(serve(settings, listener, metrics=metrics))


@web_group.group("assets")
def assets_group() -> None:
    """Static files across releases (safe rollouts of incompatible versions)."""


@assets_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, writable=True, path_type=Path))
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=DEFAULT_KEEP,
    show_default=True,
    help="Releases to keep in the archive, this one included.",
)
def export_command(directory: Path, keep: int) -> None:
    """Add this release's hashed static files to an asset archive.

    Run while building an image, on top of the previous image's archive; serve
    the archive with --asset-archive-dir so that pages of the previous
    releases keep their styles and script on a new replica.
    """
    from bugless_web.assets import AssetCatalog  # noqa: PLC0415

    catalog = AssetCatalog()
    try:
        result = export_assets(catalog.build_id, catalog.files, directory, keep=keep)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot export to {directory}: {exc}") from exc
    click.echo(
        f"build {catalog.build_id}: {len(result.written)} file(s) written, "
        f"{len(result.removed)} removed; the archive keeps {', '.join(result.releases)}"
    )
