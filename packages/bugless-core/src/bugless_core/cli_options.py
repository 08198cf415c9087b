"""Click options shared by every ``serve`` command.

Each option reads a flag or a ``BUGLESS_*`` environment variable (12-factor,
for Kubernetes), so a Helm chart can configure any service through ``env:``
alone. Service-specific prefixes keep two services on one host apart
(``BUGLESS_MODEL_PORT`` vs ``BUGLESS_AUTH_PORT``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bugless_core.grpc import GrpcServerSettings

F = TypeVar("F", bound=Callable[..., Any])


def grpc_server_options(service: str, default_port: int) -> Callable[[F], F]:
    """Add --host/--port/--tls-*/--metrics-*/--drain/--grace for ``service``."""
    prefix = f"BUGLESS_{service.upper()}_"
    options = [
        click.option(
            "--host",
            envvar=f"{prefix}HOST",
            default="127.0.0.1",
            show_default=True,
            help=f"Address to bind [env {prefix}HOST]; 0.0.0.0 in a pod.",
        ),
        click.option(
            "--port",
            envvar=f"{prefix}PORT",
            type=int,
            default=default_port,
            show_default=True,
            help=f"gRPC port, 0 for any free port [env {prefix}PORT].",
        ),
        click.option(
            "--tls-cert",
            envvar=f"{prefix}TLS_CERT",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"PEM certificate chain; enables TLS [env {prefix}TLS_CERT].",
        ),
        click.option(
            "--tls-key",
            envvar=f"{prefix}TLS_KEY",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"PEM private key of --tls-cert [env {prefix}TLS_KEY].",
        ),
        click.option(
            "--client-ca",
            envvar=f"{prefix}CLIENT_CA",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"CA bundle for client certificates; enables mTLS [env {prefix}CLIENT_CA].",
        ),
        click.option(
            "--metrics-host",
            envvar=f"{prefix}METRICS_HOST",
            default="127.0.0.1",
            show_default=True,
            help=f"Prometheus endpoint address [env {prefix}METRICS_HOST].",
        ),
        click.option(
            "--metrics-port",
            envvar=f"{prefix}METRICS_PORT",
            type=int,
            default=None,
            help=f"Prometheus /metrics port; unset = none [env {prefix}METRICS_PORT].",
        ),
        click.option(
            "--drain-seconds",
            envvar=f"{prefix}DRAIN_SECONDS",
            type=float,
            default=5.0,
            show_default=True,
            help="After SIGTERM, report NOT_SERVING this long before closing.",
        ),
        click.option(
            "--grace-seconds",
            envvar=f"{prefix}GRACE_SECONDS",
            type=float,
            default=20.0,
            show_default=True,
            help="Then wait this long for in-flight calls.",
        ),
        click.option(
            "--reuse-port",
            envvar=f"{prefix}REUSE_PORT",
            is_flag=True,
            default=False,
            help=(
                "Bind with SO_REUSEPORT, so that several processes of this service share "
                f"the port (one per core on a single machine) [env {prefix}REUSE_PORT]."
            ),
        ),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def grpc_settings_from(params: dict[str, Any]) -> GrpcServerSettings:
    """Pop the shared options out of a command's parameters into settings."""
    try:
        return GrpcServerSettings(
            host=params.pop("host"),
            port=params.pop("port"),
            tls_cert=params.pop("tls_cert"),
            tls_key=params.pop("tls_key"),
            client_ca=params.pop("client_ca"),
            metrics_host=params.pop("metrics_host"),
            metrics_port=params.pop("metrics_port"),
            drain_seconds=params.pop("drain_seconds"),
            reuse_port=params.pop("reuse_port"),
            grace_seconds=params.pop("grace_seconds"),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def log_options(fn: F) -> F:
    """Add --log-level and --log-json."""
    fn = click.option(
        "--log-json/--log-text",
        envvar="BUGLESS_LOG_JSON",
        default=False,
        help="One JSON object per log line (for log collectors).",
    )(fn)
    return click.option(
        "--log-level",
        envvar="BUGLESS_LOG_LEVEL",
        default="INFO",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    )(fn)
