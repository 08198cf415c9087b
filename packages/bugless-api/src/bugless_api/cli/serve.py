"""``bugless api serve``: the API frontend as an operator runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bugless_core import eventloop
from bugless_core.cli_options import grpc_server_options, grpc_settings_from, log_options

DEFAULT_API_PORT = 50053

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("api")
def api_group() -> None:
    """Run the gRPC API frontend for bots and scripts (mTLS only)."""


@api_group.command("serve")
@click.option(
    "--model",
    "model_address",
    envvar="BUGLESS_API_MODEL",
    required=True,
    help="host:port of the Model service [env BUGLESS_API_MODEL].",
)
@click.option(
    "--auth",
    "auth_address",
    envvar="BUGLESS_API_AUTH",
    required=True,
    help="host:port of the Authenticator [env BUGLESS_API_AUTH].",
)
@click.option(
    "--service-ca",
    envvar="BUGLESS_API_SERVICE_CA",
    type=_FILE,
    help="CA bundle of the Model's and Authenticator's certificates; enables TLS to them.",
)
@click.option(
    "--service-cert",
    envvar="BUGLESS_API_SERVICE_CERT",
    type=_FILE,
    help="This frontend's client certificate towards the backends (mTLS).",
)
@click.option(
    "--service-key",
    envvar="BUGLESS_API_SERVICE_KEY",
    type=_FILE,
    help="Private key of --service-cert.",
)
@click.option(
    "--rate",
    envvar="BUGLESS_API_RATE",
    type=float,
    default=50.0,
    show_default=True,
    help="Calls per second each identity may sustain.",
)
@click.option(
    "--burst",
    envvar="BUGLESS_API_BURST",
    type=int,
    default=100,
    show_default=True,
    help="Calls each identity may make at once.",
)
@click.option(
    "--identity-ttl",
    envvar="BUGLESS_API_IDENTITY_TTL",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a connection's certificate identity is reused before re-checking.",
)
@click.option(
    "--user-cache-ttl",
    envvar="BUGLESS_API_USER_CACHE_TTL",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds an id/username translation is reused (renames show after it; 0: no cache).",
)
@click.option(
    "--backend-timeout",
    envvar="BUGLESS_API_BACKEND_TIMEOUT",
    type=float,
    default=30.0,
    show_default=True,
    help="Deadline in seconds of each call to the Model or the Authenticator.",
)
@click.option(
    "--batch-reads/--no-batch-reads",
    envvar="BUGLESS_API_BATCH_READS",
    default=True,
    show_default=True,
    help="Send concurrent GetIssue calls of one caller to the Model as one batch.",
)
@grpc_server_options("api", DEFAULT_API_PORT)
@log_options
def serve_command(**params: Any) -> None:
    """Serve the bugless.v1 public API over mutual TLS until SIGTERM.

    --tls-cert, --tls-key and --client-ca are required: the API accepts only
    clients presenting a certificate signed by the client CA, and maps its
    subject to a user through the Authenticator.
    """
    from bugless_api.server import serve_api  # noqa: PLC0415
    from bugless_api.settings import ApiSettings, RateLimitSettings  # noqa: PLC0415
    from bugless_core.clients import ServiceAddress  # noqa: PLC0415
    from bugless_core.logs import configure_logging  # noqa: PLC0415

    configure_logging(params.pop("log_level"), json=params.pop("log_json"))
    for name, flag in (("tls_cert", "--tls-cert"), ("tls_key", "--tls-key")):
        if params[name] is None:
            raise click.UsageError(f"{flag} is required: the API serves TLS only")
    if params["client_ca"] is None:
        raise click.UsageError(
            "--client-ca is required: the API authenticates every caller by TLS client certificate"
        )
    grpc_settings = grpc_settings_from(params)
    try:
        tls = {
            "ca": params["service_ca"],
            "cert": params["service_cert"],
            "key": params["service_key"],
        }
        if (tls["cert"] or tls["key"]) and tls["ca"] is None:
            raise ValueError("--service-cert/--service-key need --service-ca (TLS to backends)")
        settings = ApiSettings(
            grpc=grpc_settings,
            model=ServiceAddress.parse(params["model_address"], **tls),
            auth=ServiceAddress.parse(params["auth_address"], **tls),
            rate_limit=RateLimitSettings(rate=params["rate"], burst=params["burst"]),
            identity_ttl_seconds=params["identity_ttl"],
            user_cache_seconds=params["user_cache_ttl"],
            backend_timeout_seconds=params["backend_timeout"],
            batch_reads=params["batch_reads"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    eventloop.run(serve_api(settings))
