"""The gRPC server bootstrap every bugless service runs on.

:class:`GrpcServiceRunner` serves a process's services with what DESIGN §6
requires of each: ``grpc.health.v1``, server reflection, Prometheus metrics on
a side port, structured logs, TLS or mutual TLS, and a graceful drain on
SIGTERM. Handlers learn who is calling through :func:`current_peer`,
:func:`current_peer_certificate` and :func:`current_metadata`, since
betterproto2 hands them only the request message.
"""

from __future__ import annotations

from bugless_core._compat.grpclib import IServable
from bugless_core.grpc._codec import UpbCodec
from bugless_core.grpc._cork import CorkedChannel, CorkedServer, CorkedTransport
from bugless_core.grpc._errors import grpc_errors, handler_errors, internal_error
from bugless_core.grpc._peer import (
    PeerConnection,
    current_metadata,
    current_peer,
    current_peer_certificate,
)
from bugless_core.grpc._server import GrpcServiceRunner, listening_port
from bugless_core.grpc._settings import GrpcServerSettings
from bugless_core.grpc._tls import build_client_ssl_context, build_server_ssl_context

__all__ = [
    "CorkedChannel",
    "CorkedServer",
    "CorkedTransport",
    "GrpcServerSettings",
    "GrpcServiceRunner",
    "IServable",
    "PeerConnection",
    "UpbCodec",
    "build_client_ssl_context",
    "build_server_ssl_context",
    "current_metadata",
    "current_peer",
    "current_peer_certificate",
    "grpc_errors",
    "handler_errors",
    "internal_error",
    "listening_port",
]
