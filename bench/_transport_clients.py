"""The two clients ``bench.transport`` compares, as ``bench._load`` scenarios.

Each scenario instance is one client with its own connection (a grpclib
``CorkedChannel`` as the frontends open, or a grpc.aio channel with a local
subchannel pool, so that two clients never share a connection), sending a
``GetIssueRequest`` with one metadata entry and decoding the reply with
bugless' upb codec, over mutual TLS with the bench client certificate. Both
run on uvloop (``bench._load`` runs every worker on ``bugless_core.eventloop``).

Parameters: ``kind`` (``grpclib`` or ``grpcio``), ``port``, ``method``
(``Issue`` or ``Page``), ``ca``, ``cert``, ``key`` (PEM paths), ``pem`` (the same
files' bytes, by those names), ``client``.
"""

from __future__ import annotations

from typing import Any

from bench._load import Call, Close
from bench._transport_serve import METADATA_KEY, REPLY_TYPES, SERVICE
from bugless_core.grpc import UpbCodec, build_client_ssl_context
from bugless_proto import v1


async def grpclib_call(params: dict[str, Any]) -> tuple[Call, Close]:
    """One grpclib client (pure-Python HTTP/2, Python ``ssl``), as bugless' channels."""
    from grpclib.client import UnaryUnaryMethod  # noqa: PLC0415

    from bugless_core.grpc import CorkedChannel  # noqa: PLC0415

    ssl = build_client_ssl_context(params["ca"], params["cert"], params["key"])
    channel = CorkedChannel("127.0.0.1", params["port"], ssl=ssl, codec=UpbCodec())
    name = params["method"]
    method: UnaryUnaryMethod[Any, Any] = UnaryUnaryMethod(
        channel, f"/{SERVICE}/{name}", v1.GetIssueRequest, REPLY_TYPES[name]
    )
    metadata = {METADATA_KEY: f"client-{params['client']}"}
    issue_id = 100_000 + params["client"]

    async def call() -> None:
        await method(v1.GetIssueRequest(issue_id=issue_id), timeout=30, metadata=metadata)

    async def close() -> None:
        channel.close()

    return call, close


async def grpcio_call(params: dict[str, Any]) -> tuple[Call, Close]:
    """One grpc.aio client (C-core HTTP/2 and TLS), the same messages and codec."""
    import grpc  # noqa: PLC0415

    codec = UpbCodec()
    reply_type = REPLY_TYPES[params["method"]]

    def encode(message: Any) -> bytes:
        return codec.encode(message, v1.GetIssueRequest)

    def decode(data: bytes) -> Any:
        return codec.decode(data, reply_type)

    pem: dict[str, bytes] = params["pem"]  # read by the parent: no file I/O on the loop
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem["ca"], private_key=pem["key"], certificate_chain=pem["cert"]
    )
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{params['port']}",
        credentials,
        options=[("grpc.use_local_subchannel_pool", 1)],
    )
    method = channel.unary_unary(
        f"/{SERVICE}/{params['method']}", request_serializer=encode, response_deserializer=decode
    )
    metadata = ((METADATA_KEY, f"client-{params['client']}"),)
    issue_id = 100_000 + params["client"]

    async def call() -> None:
        await method(v1.GetIssueRequest(issue_id=issue_id), timeout=30, metadata=metadata)

    async def close() -> None:
        await channel.close()

    return call, close
