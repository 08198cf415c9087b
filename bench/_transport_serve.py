"""The two servers ``bench.transport`` compares, each in a process of its own.

    python -m bench._transport_serve {grpclib|grpcio} READY_FILE CERT KEY CA [uvloop|asyncio]

Both serve the same two unary methods with the same work per call, so that
the difference in CPU per call is the transport's (HTTP/2, TLS, the call
machinery), not the application's:

* decode the request (a ``GetIssueRequest``) with bugless' upb codec;
* read the caller's certificate subject and the invocation metadata, as every
  bugless handler may (``bugless_core.grpc.current_peer`` and
  ``current_metadata``): on grpclib through the server's
  :class:`~bugless_core.grpc._peer.ConnectionRegistry` (the certificate
  decoded once per connection, looked up per call, as the services do), on
  grpcio through ``context.auth_context()`` (built by the C core per call);
* encode the reply with the upb codec: one ``Issue`` (``/bench.Transport/Issue``)
  or a 50-issue ``SearchIssuesResponse`` (``/bench.Transport/Page``), built once
  (the same objects ``bench.codec`` times).

grpclib runs as the services do (:class:`~bugless_core.grpc.CorkedServer`, the
TLS context of :func:`~bugless_core.grpc.build_server_ssl_context`, client
certificate required); grpcio as ``grpc.aio.server`` with
``require_client_auth=True``. Both settle the garbage collector once they
listen, as every bugless service does (``gc.freeze()``, a young threshold of
5,000; without it py-spy ``--native`` put a third of a grpclib server's
samples in the collector). Both on uvloop (``bugless_core.eventloop``), as
every bugless process; grpc.aio runs on it (its C core polls in a thread of
its own and hands completions to whichever asyncio loop runs); ``asyncio``
as the last argument runs asyncio's own loop instead, to compare. The port is
bound as 0 and read back (no race for a free port), then written to
``READY_FILE``. SIGTERM stops the server.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.codec import sample_issue
from bugless_core import eventloop
from bugless_core.garbage_collector import settle_garbage_collector
from bugless_core.grpc import UpbCodec
from bugless_core.ready_file import write_ready_file
from bugless_proto import v1

if TYPE_CHECKING:
    from grpclib.encoding.base import CodecBase

SERVICE = "bench.Transport"
#: Method name -> reply type; the request is always a ``GetIssueRequest``.
REPLY_TYPES: dict[str, type[Any]] = {"Issue": v1.Issue, "Page": v1.SearchIssuesResponse}
#: The metadata key every client sends and the server reads.
METADATA_KEY = "x-bench-request"


def replies() -> dict[str, Any]:
    """The reply of each method: one realistic Issue, and a page of 50."""
    page = v1.SearchIssuesResponse(
        issues=[sample_issue(n) for n in range(50)], total_count=1234, next_page_token="t" * 24
    )
    return {"Issue": sample_issue(3), "Page": page}


def _subject_text(subject: Any) -> str:
    # getpeercert()'s subject: ((("organizationName", "x"),), ...)
    return ",".join(f"{k}={v}" for rdn in subject for k, v in rdn)


async def serve_grpclib(ready: Path, cert: Path, key: Path, ca: Path, stop: asyncio.Event) -> None:
    """Serve with grpclib as the bugless services do, until ``stop`` is set."""
    from grpclib.const import Cardinality, Handler  # noqa: PLC0415

    from bugless_core.grpc._peer import ConnectionRegistry  # noqa: PLC0415

    registry = ConnectionRegistry()
    answers = replies()
    seen: list[str] = []

    def method(name: str) -> Callable[[Any], Awaitable[None]]:
        reply = answers[name]

        async def handle(stream: Any) -> None:
            request = await stream.recv_message()
            connection = registry.connection_of(stream.peer)
            fields = connection.certificate_fields or {}
            subject = _subject_text(fields.get("subject", ()))
            tag = stream.metadata.get(METADATA_KEY, "")
            if not subject or not tag or request.issue_id < 0:
                raise RuntimeError("no client certificate or metadata on a bench call")
            if not seen:
                seen.append(subject)
            await stream.send_message(reply)

        return handle

    class Service:
        def __mapping__(self) -> dict[str, Handler]:
            return {
                f"/{SERVICE}/{name}": Handler(
                    method(name), Cardinality.UNARY_UNARY, v1.GetIssueRequest, reply_type
                )
                for name, reply_type in REPLY_TYPES.items()
            }

    await run_corked_server([Service()], ServerTls(cert, key, ca), ready, stop)


async def serve_grpcio(ready: Path, cert: Path, key: Path, ca: Path, stop: asyncio.Event) -> None:
    """Serve with grpc.aio (C-core HTTP/2 and TLS) until ``stop`` is set."""
    import grpc  # noqa: PLC0415

    codec = UpbCodec()
    answers = replies()

    def decode_request(data: bytes) -> Any:
        return codec.decode(data, v1.GetIssueRequest)

    def encode_reply(message: Any) -> bytes:
        return codec.encode(message, type(message))

    def method(name: str) -> grpc.RpcMethodHandler[Any, Any]:
        reply = answers[name]

        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            subject = next(iter(context.auth_context().get("x509_subject", ())), b"")
            tag = next((v for k, v in context.invocation_metadata() or () if k == METADATA_KEY), "")
            if not subject or not tag or request.issue_id < 0:
                raise RuntimeError("no client certificate or metadata on a bench call")
            return reply

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=decode_request, response_serializer=encode_reply
        )

    handlers = {name: method(name) for name in REPLY_TYPES}
    await run_grpcio_server(SERVICE, handlers, ServerTls(cert, key, ca), ready, stop)


# ---- what every bench server process does around its handlers ----


@dataclass(frozen=True)
class ServerTls:
    """The PEM files of a bench server: its certificate chain, its key, the clients' CA."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> dict[str, bytes]:
        """The files' bytes by name (``cert``, ``key``, ``ca``), as grpcio takes them."""
        return {
            "cert": self.cert.read_bytes(),
            "key": self.key.read_bytes(),
            "ca": self.ca.read_bytes(),
        }


async def run_corked_server(
    servables: Sequence[Any],
    tls: ServerTls,
    ready: Path,
    stop: asyncio.Event,
    *,
    codec: CodecBase | None = None,
) -> None:
    """Serve grpclib ``servables`` on a bare ``CorkedServer`` until ``stop`` is set.

    As the services listen (the TLS context of
    :func:`~bugless_core.grpc.build_server_ssl_context`, client certificate
    required, upb codec unless ``codec`` says otherwise), without what
    ``GrpcServiceRunner`` adds (health, reflection, metrics, the call
    tracker): port 0, the garbage collector settled once listening, the port
    written to ``ready``. Also the server of ``bench.api``'s echo floor
    (:func:`bench._services.serve_echo`, raw bytes through ``codec``).
    """
    from bugless_core.grpc import (  # noqa: PLC0415
        CorkedServer,
        GrpcServerSettings,
        build_server_ssl_context,
        listening_port,
    )

    settings = GrpcServerSettings(
        host="127.0.0.1", port=0, tls_cert=tls.cert, tls_key=tls.key, client_ca=tls.ca
    )
    server = CorkedServer(servables, codec=codec)
    await server.start("127.0.0.1", 0, ssl=build_server_ssl_context(settings))
    settle_garbage_collector()  # as every bugless service does once it listens
    write_ready_file(ready, port=listening_port(server))
    await stop.wait()
    server.close()
    await server.wait_closed()


async def run_grpcio_server(
    service: str, handlers: dict[str, Any], tls: ServerTls, ready: Path, stop: asyncio.Event
) -> None:
    """Serve grpc.aio ``handlers`` (method name -> handler) of ``service`` until ``stop``.

    Mutual TLS with the client certificate required, port 0, the garbage
    collector settled once listening, the port written to ``ready``: the
    same as :func:`run_corked_server`, in grpcio's C core.
    """
    import grpc  # noqa: PLC0415

    pem = await asyncio.to_thread(tls.read)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    credentials = grpc.ssl_server_credentials(
        [(pem["key"], pem["cert"])], root_certificates=pem["ca"], require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    settle_garbage_collector()
    write_ready_file(ready, port=port)
    await stop.wait()
    await server.stop(grace=None)


async def _main(kind: str, ready: Path, cert: Path, key: Path, ca: Path) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = serve_grpclib if kind == "grpclib" else serve_grpcio
    await serve(ready, cert, key, ca, stop)


def main() -> None:
    kind, ready, cert, key, ca = sys.argv[1:6]
    loop = sys.argv[6] if len(sys.argv) > 6 else "uvloop"
    if kind not in ("grpclib", "grpcio") or loop not in ("uvloop", "asyncio"):
        raise SystemExit(f"unknown server kind {kind!r} or loop {loop!r}")
    serve = _main(kind, Path(ready), Path(cert), Path(key), Path(ca))
    if loop == "asyncio":
        asyncio.run(serve)
    else:
        eventloop.run(serve)


if __name__ == "__main__":
    main()
