"""``bugless web serve``: flags and ``BUGLESS_WEB_*`` environment variables.

They are generated from :class:`bugless_web.settings.WebSettings`, where each
is declared once; the command receives the typed object.
"""

from __future__ import annotations

import click

from bugless_core.settings import settings_command
from bugless_web.settings import WebSettings

ENV_PREFIX = "BUGLESS_WEB_"


@click.group("web")
def web_group() -> None:
    """Run the web frontend (server-rendered pages for people)."""


@web_group.command("serve")
@settings_command(WebSettings, env_prefix=ENV_PREFIX)
def serve_command(settings: WebSettings) -> None:
    """Serve the web UI with uvicorn until SIGTERM (then drain and stop)."""
    from bugless_web.server import listen, serve  # noqa: PLC0415

    settings.log.configure()
    try:
        listener = listen(settings.host, settings.port, reuse_port=settings.reuse_port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from exc
    serve(settings, listener)
