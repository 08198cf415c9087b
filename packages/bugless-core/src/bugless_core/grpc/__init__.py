"""The gRPC server bootstrap every bugless service runs on.

:class:`GrpcServiceRunner` serves a process's services with what DESIGN §6
requires of each: ``grpc.health.v1``, server reflection, Prometheus metrics on
a side port, structured logs, mutual TLS with a per-method check of the
caller's service identity (:mod:`bugless_core.grpc._access`), and a graceful
drain on SIGTERM. Handlers learn who is calling through :func:`current_peer`,
:func:`current_peer_certificate` and :func:`current_metadata`, since
betterproto2 hands them only the request message.

The names below are imported on first use (PEP 562): a frontend imports
:mod:`bugless_core.grpc._cork` and ``_tls`` for its client channels, and must
not pay for the server (health, reflection and its descriptor tables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute

if TYPE_CHECKING:
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
    from bugless_core.grpc._goaway import GRACEFUL_GOAWAY_CLIENT_SETTINGS
    from bugless_core.grpc._peer import (
        PeerConnection,
        current_identity,
        current_metadata,
        current_peer,
        current_peer_certificate,
    )
    from bugless_core.grpc._server import READINESS_TTL_SECONDS, GrpcServiceRunner
    from bugless_core.grpc._settings import GrpcServerSettings, TransferServerSettings
    from bugless_core.grpc._shutdown import CLOSE_LINGER_SECONDS, listening_port
    from bugless_core.grpc._tls import build_client_ssl_context, build_server_ssl_context
    from bugless_core.grpc._windows import (
        ConnectionWindowGauges,
        register_connection_windows,
        without_idle_sides,
    )

#: Public name -> the module defining it.
_LAZY = {
    "ADMIN_ROLE": "bugless_core.grpc._access",
    "ANY_CLIENT": "bugless_core.grpc._access",
    "AccessRules": "bugless_core.grpc._access",
    "AccessTable": "bugless_core.grpc._access",
    "CLOSE_LINGER_SECONDS": "bugless_core.grpc._shutdown",
    "ConnectionWindowGauges": "bugless_core.grpc._windows",
    "CorkedChannel": "bugless_core.grpc._cork",
    "CorkedServer": "bugless_core.grpc._cork",
    "CorkedTransport": "bugless_core.grpc._cork",
    "GRACEFUL_GOAWAY_CLIENT_SETTINGS": "bugless_core.grpc._goaway",
    "GrpcServerSettings": "bugless_core.grpc._settings",
    "GrpcServiceRunner": "bugless_core.grpc._server",
    "IMPORT_ROLE": "bugless_core.grpc._access",
    "IServable": "bugless_core._compat.grpclib",
    "PeerConnection": "bugless_core.grpc._peer",
    "READINESS_TTL_SECONDS": "bugless_core.grpc._server",
    "SERVICE_IDENTITIES": "bugless_core.grpc._access",
    "SPIFFE_PREFIX": "bugless_core.grpc._access",
    "TransferServerSettings": "bugless_core.grpc._settings",
    "UpbCodec": "bugless_core.grpc._codec",
    "build_client_ssl_context": "bugless_core.grpc._tls",
    "build_server_ssl_context": "bugless_core.grpc._tls",
    "current_identity": "bugless_core.grpc._peer",
    "current_metadata": "bugless_core.grpc._peer",
    "current_peer": "bugless_core.grpc._peer",
    "current_peer_certificate": "bugless_core.grpc._peer",
    "every_method": "bugless_core.grpc._access",
    "grpc_errors": "bugless_core.grpc._errors",
    "handler_errors": "bugless_core.grpc._errors",
    "internal_error": "bugless_core.grpc._errors",
    "listening_port": "bugless_core.grpc._shutdown",
    "register_connection_windows": "bugless_core.grpc._windows",
    "service_identity": "bugless_core.grpc._access",
    "without_idle_sides": "bugless_core.grpc._windows",
}

__all__ = [
    "ADMIN_ROLE",
    "ANY_CLIENT",
    "CLOSE_LINGER_SECONDS",
    "GRACEFUL_GOAWAY_CLIENT_SETTINGS",
    "IMPORT_ROLE",
    "READINESS_TTL_SECONDS",
    "SERVICE_IDENTITIES",
    "SPIFFE_PREFIX",
    "AccessRules",
    "AccessTable",
    "ConnectionWindowGauges",
    "CorkedChannel",
    "CorkedServer",
    "CorkedTransport",
    "GrpcServerSettings",
    "GrpcServiceRunner",
    "IServable",
    "PeerConnection",
    "TransferServerSettings",
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
    "register_connection_windows",
    "service_identity",
    "without_idle_sides",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
