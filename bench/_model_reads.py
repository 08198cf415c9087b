"""Calls straight to the Model as the API makes them: what two benches share.

``bench.api`` (the Model beside the API's figures) and ``bench.model_change``
(two Models side by side) both reach a Model over mutual TLS with an identity
assertion (:func:`model_stub`, from the ``model_*`` entries of a scenario's
``params``) and both run GetIssue of random issues (:func:`random_gets`); they
name their callers their own way.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from grpclib.client import Channel

from bench._load import Call, Close
from bugless_core.clients import CURRENT_ASSERTION, ServiceAddress
from bugless_proto import v1


def model_channel(
    host: str, port: int, *, ca: str, cert: str, key: str, assertion: str
) -> tuple[Channel, v1.ModelStub]:
    """A channel to the Model with ``cert``/``key`` (mutual TLS) and its stub.

    As the API does, every call on it carries the caller's identity
    ``assertion`` (set here for the client process's context).
    """
    address = ServiceAddress(host, port, ca=Path(ca), cert=Path(cert), key=Path(key))
    channel = address.channel()
    CURRENT_ASSERTION.set(assertion)
    return channel, v1.ModelStub(channel)


def model_stub(params: dict[str, Any]) -> tuple[Channel, v1.ModelStub]:
    """:func:`model_channel` as a scenario's ``params`` name it.

    ``model_host`` (default ``127.0.0.1``), ``model_port``, ``model_cert`` and
    ``model_key`` (the ``api`` identity's), ``ca`` and the caller's ``assertion``.
    """
    return model_channel(
        params.get("model_host", "127.0.0.1"),
        params["model_port"],
        ca=params["ca"],
        cert=params["model_cert"],
        key=params["model_key"],
        assertion=params["assertion"],
    )


def random_gets(
    channel: Channel, stub: v1.ModelStub, caller: v1.Caller, ids: list[int], client: int
) -> tuple[Call, Close]:
    """GetIssue of a random one of ``ids`` per call (seeded by ``client``); close the channel."""
    rng = random.Random(client)

    async def call() -> None:
        await stub.get_issue(v1.GetIssueRequest(caller=caller, issue_id=rng.choice(ids)))

    async def close() -> None:
        channel.close()

    return call, close
