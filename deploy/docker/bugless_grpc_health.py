"""Readiness probe for a bugless gRPC server that speaks TLS or mutual TLS.

Kubelet's native ``grpc:`` probe connects in plaintext only, so a server with
``--tls-cert`` (the bot API; Model and Authenticator with internal mTLS) is
probed by this script instead, run with ``exec:`` inside the pod. It asks
``grpc.health.v1.Health/Check`` on the loopback address and exits 0 when the
answer is SERVING, 1 otherwise (NOT_SERVING while draining, an error, a
timeout).

The server's certificate names the Service, not 127.0.0.1, so the host name is
not checked; the chain is, against ``--ca`` when given. It imports grpclib
only, not bugless, to start quickly: a probe runs every few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys

from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

# The same choices as bugless_core.grpc._tls, which the server enforces.
_HTTP2_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_HTTP2_CIPHERS)
    context.set_alpn_protocols(["h2"])
    context.check_hostname = False
    if ca is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def check(
    port: int, *, host: str, service: str, context: ssl.SSLContext, deadline: float
) -> str:
    """Return the serving status name the server reports for ``service``."""
    channel = Channel(host, port, ssl=context)
    try:
        reply = await HealthStub(channel).Check(
            HealthCheckRequest(service=service), timeout=deadline
        )
    finally:
        channel.close()
    return str(HealthCheckResponse.ServingStatus.Name(reply.status))


def main(argv: list[str] | None = None) -> int:
    """Probe once; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--service", default="", help="service name; empty = the whole server")
    parser.add_argument("--ca", help="CA bundle of the server certificate; unset = not verified")
    parser.add_argument("--cert", help="client certificate, for mutual TLS")
    parser.add_argument("--key", help="private key of --cert")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        context = _client_context(args.ca, args.cert, args.key)
        status = asyncio.run(
            check(
                args.port,
                host=args.host,
                service=args.service,
                context=context,
                deadline=args.timeout,
            )
        )
    except Exception as exc:
        print(f"not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"not ready: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
