"""The gRPC server bootstrap every bugless service runs on.

:class:`GrpcServiceRunner` serves a process's services with what DESIGN §6
requires of each: ``grpc.health.v1``, server reflection, Prometheus metrics on
a side port, structured logs, mutual TLS with a per-method check of the
caller's service identity (:mod:`bugless_core.grpc._access`), and a graceful
drain on SIGTERM. Handlers learn who is calling through :func:`current_peer`,
:func:`current_peer_certificate` and :func:`current_metadata`, since
betterproto2 hands them only the request message.
"""

from __future__ import annotations

from bugless_core._compat.grpclib import IServable
from bugless_core.grpc._access import (
    ADMIN_ROLE,
    ANY_CLIENT,
    IMPORT_ROLE,
    SERVICE_IDENTITIES,
    SPIFFE_PREFIX,
    AccessRules,
    AccessTable,
    every_method,
    service_identity,
)
from bugless_core.grpc._codec import UpbCodec
from bugless_core.grpc._cork import CorkedChannel, CorkedServer, CorkedTransport
from bugless_core.grpc._errors import grpc_errors, handler_errors, internal_error
from bugless_core.grpc._peer import (
    PeerConnection,
    current_identity,
    current_metadata,
    current_peer,
    current_peer_certificate,
)
from bugless_core.grpc._server import GrpcServiceRunner, listening_port
from bugless_core.grpc._settings import GrpcServerSettings
from bugless_core.grpc._tls import build_client_ssl_context, build_server_ssl_context

__all__ = [
    "ADMIN_ROLE",
    "ANY_CLIENT",
    "IMPORT_ROLE",
    "SERVICE_IDENTITIES",
    "SPIFFE_PREFIX",
    "AccessRules",
    "AccessTable",
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
    "current_identity",
    "current_metadata",
    "current_peer",
    "current_peer_certificate",
    "every_method",
    "grpc_errors",
    "handler_errors",
    "internal_error",
    "listening_port",
    "service_identity",
]
