"""GetIssue of random issues straight to the Model: one scenario two benches run.

``bench.api`` (the Model beside the API's figures) and ``bench.model_change``
(two Models side by side) open their channel and caller their own way; the
calls are the same.
"""

from __future__ import annotations

import random

from grpclib.client import Channel

from bench._load import Call, Close
from bugless_proto import v1


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
