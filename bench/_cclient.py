"""Load scenarios with a C-core client: grpcio channels, upb (C) protobuf messages.

The Python client (betterproto2 over grpclib) costs ~0.3 ms of CPU per call
on this machine, about as much as the server it measures, and it runs on the
same 2 cores. A bot fleet runs elsewhere; to see what the *server side* of the
chain can do, these scenarios send the same calls through grpcio's C core with
messages from ``google.protobuf`` built from the embedded descriptors (no
generated ``_pb2`` files), over the same mutual TLS with the same bot
certificate. Replies are fully decoded, as a client would.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory

from bench import _dataset as data
from bench._load import Call, Close
from bugless_proto import DESCRIPTOR_POOL


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(DESCRIPTOR_POOL.FindMessageTypeByName(name))


def _channel(params: dict[str, Any]) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(params["ca"]).read_bytes(),
        private_key=Path(params["key"]).read_bytes(),
        certificate_chain=Path(params["cert"]).read_bytes(),
    )
    # One connection per simulated client, as with the Python client.
    return grpc.aio.secure_channel(
        params["address"], credentials, options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def api_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue of a random visible issue through the API (C-core client)."""
    channel = _channel(params)
    request_type, reply_type = _message("bugless.v1.GetIssueRequest"), _message("bugless.v1.Issue")
    method = channel.unary_unary(
        "/bugless.v1.Issues/GetIssue",
        request_serializer=request_type.SerializeToString,
        response_deserializer=reply_type.FromString,
    )
    ids: list[int] = params["issue_ids"]
    rng = random.Random(params["client"])

    async def call() -> None:
        await method(request_type(issue_id=rng.choice(ids)), timeout=30)

    async def close() -> None:
        await channel.close()

    return call, close


async def api_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue through the API (C-core client), as ``bench._api_calls:api_create``."""
    channel = _channel(params)
    request_type = _message("bugless.v1.CreateIssueRequest")
    fields_type = _message("bugless.v1.IssueFields")
    method = channel.unary_unary(
        "/bugless.v1.Issues/CreateIssue",
        request_serializer=request_type.SerializeToString,
        response_deserializer=_message("bugless.v1.Issue").FromString,
    )
    counter = itertools.count()
    prefix = f"bench create {params['client']}-{time.time_ns()}"
    p2 = DESCRIPTOR_POOL.FindEnumTypeByName("bugless.v1.Priority").values_by_name["PRIORITY_P2"]

    async def call() -> None:
        fields = fields_type(
            title=f"{prefix}-{next(counter)}",
            component_id=params["component_id"],
            priority=p2.number,
            assignee=data.BENCH_ASSIGNEE,
        )
        await method(request_type(fields=fields), timeout=30)

    async def close() -> None:
        await channel.close()

    return call, close


async def echo(params: dict[str, Any]) -> tuple[Call, Close]:
    """The transport floor with the same C-core client: bytes echo over mTLS."""
    from bench._services import ECHO_METHOD  # noqa: PLC0415

    channel = _channel(
        {
            **params,
            "address": f"127.0.0.1:{params['echo_port']}",
            "cert": params["echo_cert"],
            "key": params["echo_key"],
        }
    )
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
    payload = b"x" * params["payload"]

    async def call() -> None:
        await method(payload, timeout=30)

    async def close() -> None:
        await channel.close()

    return call, close
