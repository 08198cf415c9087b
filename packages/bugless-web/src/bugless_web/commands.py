"""``bugless web serve``: flags and ``BUGLESS_WEB_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bugless_core.cli_options import log_options

DEFAULT_WEB_PORT = 8080


def _address(value: str, ca: Path | None, cert: Path | None, key: Path | None) -> Any:
    from bugless_core.clients import ServiceAddress  # noqa: PLC0415

    try:
        return ServiceAddress.parse(value, ca=ca, cert=cert, key=key)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group("web")
def web_group() -> None:
    """Run the web frontend (server-rendered pages for people)."""


@web_group.command("serve")
@click.option(
    "--model",
    "model",
    envvar="BUGLESS_WEB_MODEL",
    required=True,
    help="Model service host:port [env BUGLESS_WEB_MODEL].",
)
@click.option(
    "--auth",
    "auth",
    envvar="BUGLESS_WEB_AUTH",
    required=True,
    help="Authenticator service host:port [env BUGLESS_WEB_AUTH].",
)
@click.option(
    "--session-key",
    "session_keys",
    envvar="BUGLESS_WEB_SESSION_KEYS",
    multiple=True,
    required=True,
    help="Cookie secret (16+ chars); repeat for rotation, newest first "
    "[env BUGLESS_WEB_SESSION_KEYS, space-separated].",
)
@click.option(
    "--host",
    envvar="BUGLESS_WEB_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind [env BUGLESS_WEB_HOST]; 0.0.0.0 in a pod.",
)
@click.option(
    "--port",
    envvar="BUGLESS_WEB_PORT",
    type=int,
    default=DEFAULT_WEB_PORT,
    show_default=True,
    help="HTTP port [env BUGLESS_WEB_PORT].",
)
@click.option(
    "--public-url",
    envvar="BUGLESS_WEB_PUBLIC_URL",
    default="",
    help="External base URL, e.g. https://bugs.example.com (OIDC redirect URI).",
)
@click.option(
    "--steer-to",
    envvar="BUGLESS_WEB_STEER_TO",
    default="",
    help="While draining, redirect page loads here (another instance or version).",
)
@click.option(
    "--dev",
    envvar="BUGLESS_WEB_DEV",
    is_flag=True,
    default=False,
    help="Plain-HTTP development mode: cookie without Secure, templates reload.",
)
@click.option(
    "--drain-seconds",
    envvar="BUGLESS_WEB_DRAIN_SECONDS",
    type=float,
    default=5.0,
    show_default=True,
    help="After SIGTERM, fail readiness this long before closing.",
)
@click.option(
    "--grace-seconds",
    envvar="BUGLESS_WEB_GRACE_SECONDS",
    type=float,
    default=20.0,
    show_default=True,
    help="Then wait this long for in-flight requests.",
)
@click.option(
    "--token-cache-seconds",
    envvar="BUGLESS_WEB_TOKEN_CACHE_SECONDS",
    type=float,
    default=30.0,
    show_default=True,
    help="How long a validated token is reused.",
)
@click.option(
    "--component-cache-seconds",
    envvar="BUGLESS_WEB_COMPONENT_CACHE_SECONDS",
    type=float,
    default=10.0,
    show_default=True,
    help="How long each caller's component tree (paths, pickers) is reused.",
)
@click.option(
    "--user-cache-ttl",
    "user_cache_seconds",
    envvar="BUGLESS_WEB_USER_CACHE_TTL",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds each person shown (username, display name) is reused; 0 = ask every page.",
)
@click.option(
    "--export-row-cap",
    envvar="BUGLESS_WEB_EXPORT_ROW_CAP",
    type=int,
    default=10_000,
    show_default=True,
    help="Most issues one CSV export writes [env BUGLESS_WEB_EXPORT_ROW_CAP].",
)
@click.option(
    "--reuse-port",
    envvar="BUGLESS_WEB_REUSE_PORT",
    is_flag=True,
    default=False,
    help=(
        "Bind with SO_REUSEPORT, so that several web processes share the port "
        "(one per core on a single machine) [env BUGLESS_WEB_REUSE_PORT]."
    ),
)
@click.option(
    "--tls-ca",
    envvar="BUGLESS_WEB_TLS_CA",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA of the Model/Authenticator certificates; enables TLS to them.",
)
@click.option(
    "--tls-cert",
    envvar="BUGLESS_WEB_TLS_CERT",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="This frontend's client certificate (mTLS to the services).",
)
@click.option(
    "--tls-key",
    envvar="BUGLESS_WEB_TLS_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key of --tls-cert.",
)
@log_options
def serve_command(**params: Any) -> None:  # fmt: skip
    """Serve the web UI with uvicorn until SIGTERM (then drain and stop)."""
    from bugless_core.logs import configure_logging  # noqa: PLC0415
    from bugless_web.server import serve  # noqa: PLC0415
    from bugless_web.settings import WebSettings  # noqa: PLC0415

    configure_logging(params.pop("log_level"), json=params.pop("log_json"))
    tls = (params["tls_ca"], params["tls_cert"], params["tls_key"])
    keys: list[str] = []
    for value in params["session_keys"]:
        keys.extend(value.split())
    try:
        settings = WebSettings(
            model=_address(params["model"], *tls),
            auth=_address(params["auth"], *tls),
            session_keys=tuple(keys),
            host=params["host"],
            port=params["port"],
            public_url=params["public_url"],
            steer_to=params["steer_to"],
            dev=params["dev"],
            drain_seconds=params["drain_seconds"],
            grace_seconds=params["grace_seconds"],
            token_cache_seconds=params["token_cache_seconds"],
            component_cache_seconds=params["component_cache_seconds"],
            user_cache_seconds=params["user_cache_seconds"],
            reuse_port=params["reuse_port"],
            export_row_cap=params["export_row_cap"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    serve(settings)
