"""``bugless api serve``: the API frontend as an operator runs it.

Its flags and ``BUGLESS_API_*`` variables are generated from
:class:`bugless_api.settings.ApiSettings`, where each is declared once.
"""

from __future__ import annotations

import click

from bugless_api.settings import ApiSettings
from bugless_core.settings import settings_command

DEFAULT_API_PORT = 50053
ENV_PREFIX = "BUGLESS_API_"


@click.group("api")
def api_group() -> None:
    """Run the gRPC API frontend for bots and scripts (mTLS only)."""


@api_group.command("serve")
@settings_command(ApiSettings, env_prefix=ENV_PREFIX, defaults={"grpc.port": DEFAULT_API_PORT})
def serve_command(settings: ApiSettings) -> None:
    """Serve the bugless.v1 public API over mutual TLS until SIGTERM.

    --tls-cert, --tls-key and --client-ca are required: the API accepts only
    clients presenting a certificate signed by the client CA, and maps its
    subject to a user through the Authenticator.
    """
    from bugless_api.server import serve_api  # noqa: PLC0415
    from bugless_core import eventloop  # noqa: PLC0415 - asyncio, not for --help

    settings.log.configure()
    raise SystemExit(eventloop.run(serve_api(settings)))
