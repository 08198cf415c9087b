"""TLS contexts for bugless gRPC servers and for the clients that call them.

Both sides make the same choices, so that a server and a client built here
always agree: TLS 1.2 or later, only the AEAD ciphers with forward secrecy that
HTTP/2 allows (RFC 7540 §9.2.2 forbids the rest on TLS 1.2), and ALPN ``h2``,
which current gRPC clients (grpc-go, hence grpcurl) refuse to do without.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from bugless_core.grpc._settings import GrpcServerSettings

_HTTP2_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _restrict_for_http2(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_HTTP2_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["h2"])


def build_server_ssl_context(
    settings: GrpcServerSettings, *, more_client_cas: Sequence[Path] = ()
) -> ssl.SSLContext | None:
    """Build the server-side TLS context that ``settings`` asks for.

    With ``client_ca`` set, clients must present a certificate that chains to
    it (``CERT_REQUIRED``): the handshake fails otherwise, so an unauthenticated
    peer never reaches a handler. Handlers read the verified certificate with
    :func:`bugless_core.grpc.current_peer_certificate`.

    Args:
        settings: The server's settings; only the TLS fields are read.
        more_client_cas: CA certificate files trusted for client certificates
            beside ``client_ca`` (the API's people CAs, current and earlier:
            each is its own setting, so a rotation adds and drops a CA without
            anyone editing a bundle). Only with ``client_ca``.

    Returns:
        The context, or ``None`` when the settings configure plaintext.

    Raises:
        OSError: A configured file cannot be read.
        ssl.SSLError: A file is not valid PEM, or the key does not match.
        ValueError: ``more_client_cas`` without ``client_ca``.
    """
    if more_client_cas and settings.client_ca is None:
        raise ValueError("more_client_cas need client_ca: without it no certificate is asked for")
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _restrict_for_http2(context)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.client_ca)
        for ca_file in more_client_cas:
            context.load_verify_locations(cafile=ca_file)
    return context


def build_client_ssl_context(
    ca: Path | str, cert: Path | str | None = None, key: Path | str | None = None
) -> ssl.SSLContext:
    """Build a client TLS context for calling a bugless gRPC service.

    The server's certificate must chain to ``ca`` and name the host the client
    dials (hostname checking stays on). Pass ``cert`` (and ``key``, unless the
    key is inside the ``cert`` file) to authenticate with mutual TLS, as the
    frontends do towards the Model and the Authenticator. Use the result as
    ``grpclib.client.Channel(host, port, ssl=context)``.

    Args:
        ca: PEM bundle of the CAs trusted to sign the server's certificate.
        cert: PEM client certificate chain, for mutual TLS.
        key: PEM private key of ``cert``.

    Returns:
        A context restricted to TLS 1.2+ with ALPN ``h2``.

    Raises:
        ValueError: ``key`` is given without ``cert``.
        OSError: A file cannot be read.
        ssl.SSLError: A file is not valid PEM, or the key does not match.
    """
    if key is not None and cert is None:
        raise ValueError("a client key without a client certificate is useless: pass cert too")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    _restrict_for_http2(context)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
