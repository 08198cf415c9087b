"""What each client process of :mod:`bench.api` calls: one closed-loop scenario per row.

``bench._load`` imports these by name (``bench._api_calls:api_get``) in the
client processes; each returns the call to repeat and the close to run once.
``params`` carries the addresses, certificates and seeded ids the run found.
"""

from __future__ import annotations

import datetime
import itertools
import random
import time
from pathlib import Path
from typing import Any

from grpclib.client import UnaryUnaryMethod

from bench import _dataset as data
from bench._load import Call, Close
from bench._model_reads import model_stub, random_gets
from bench._services import ECHO_METHOD
from bugless_api.client import BuglessClient
from bugless_core.clients import ServiceAddress
from bugless_core.grpc import CorkedChannel
from bugless_proto import v1
from bugless_testing.codecs import RawCodec

SEARCH_QUERY = f"is:open assignee:{data.BENCH_ASSIGNEE}"
SEARCH_PAGE = 25


def api_client(params: dict[str, Any]) -> BuglessClient:
    """A client of the API as a bot (its certificate), one HTTP/2 connection."""
    return BuglessClient(
        params["address"], cert=params["cert"], key=params["key"], ca=params["ca"], timeout=30
    )


async def api_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue of a random visible issue through the API."""
    client = api_client(params)
    ids: list[int] = params["issue_ids"]
    rng = random.Random(params["client"])

    async def call() -> None:
        await client.get_issue(rng.choice(ids))

    async def close() -> None:
        client.close()

    return call, close


async def api_search(params: dict[str, Any]) -> tuple[Call, Close]:
    """The benchmark search through the API."""
    client = api_client(params)

    async def call() -> None:
        await client.search_issues(SEARCH_QUERY, page_size=SEARCH_PAGE)

    async def close() -> None:
        client.close()

    return call, close


async def api_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue through the API (title, component, priority, assignee by username)."""
    client = api_client(params)
    counter = itertools.count()
    prefix = f"bench create {params['client']}-{time.time_ns()}"

    async def call() -> None:
        await client.create_issue(
            f"{prefix}-{next(counter)}",
            params["component_id"],
            priority="P2",
            assignee=data.BENCH_ASSIGNEE,
        )

    async def close() -> None:
        client.close()

    return call, close


async def model_get(params: dict[str, Any]) -> tuple[Call, Close]:
    """GetIssue straight to the Model (mutual TLS as the API), as the API's caller."""
    channel, stub = model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    return random_gets(channel, stub, caller, params["issue_ids"], params["client"])


async def model_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """CreateIssue straight to the Model as the API's caller (what the API's create ends in)."""
    channel, stub = model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    counter = itertools.count()
    prefix = f"bench model create {params['client']}-{time.time_ns()}"

    async def call() -> None:
        await stub.create_issue(
            v1.CreateIssueRequest(
                caller=caller,
                fields=v1.IssueFields(
                    title=f"{prefix}-{next(counter)}",
                    component_id=params["component_id"],
                    priority=v1.Priority.P2,
                ),
            )
        )

    async def close() -> None:
        channel.close()

    return call, close


#: Items per BatchCreateIssues of :func:`model_batch_create` (the API's coalescer
#: sent 2.6 on average at 16 clients, run D).
BATCH_ITEMS = 4


async def model_batch_create(params: dict[str, Any]) -> tuple[Call, Close]:
    """BatchCreateIssues of :data:`BATCH_ITEMS` straight to the Model, as the API's coalescer sends.

    The Model's side of a coalesced create at a fixed batch size (the API's
    own batch sizes follow the load); its row counts issues, not calls.
    """
    channel, stub = model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    counter = itertools.count()
    prefix = f"bench model batch {params['client']}-{time.time_ns()}"

    async def call() -> None:
        items = [
            v1.CreateIssueRequest(
                fields=v1.IssueFields(
                    title=f"{prefix}-{next(counter)}",
                    component_id=params["component_id"],
                    priority=v1.Priority.P2,
                ),
            )
            for _ in range(BATCH_ITEMS)
        ]
        reply = await stub.batch_create_issues(
            v1.BatchCreateIssuesRequest(caller=caller, items=items)
        )
        if any(r.code for r in reply.results):
            raise RuntimeError(f"a batch item failed: {reply.results}")

    async def close() -> None:
        channel.close()

    return call, close


async def model_search(params: dict[str, Any]) -> tuple[Call, Close]:
    """The benchmark search straight to the Model (structured query, ids not names)."""
    from bugless_core.search import parse_query, to_structured  # noqa: PLC0415

    channel, stub = model_stub(params)
    caller = v1.Caller(user_id=params["caller_id"], groups=["eng"])
    request = v1.SearchIssuesRequest(
        caller=caller,
        query=to_structured(
            parse_query(SEARCH_QUERY),
            me=params["caller_id"],
            users={data.BENCH_ASSIGNEE: data.BENCH_ASSIGNEE},
            today=datetime.date.today(),
        ),
        page=v1.PageRequest(page_size=SEARCH_PAGE),
    )

    async def call() -> None:
        await stub.search_issues(request)

    async def close() -> None:
        channel.close()

    return call, close


async def echo(params: dict[str, Any]) -> tuple[Call, Close]:
    """The transport floor: a bytes echo over mTLS, payload sized like a GetIssue reply."""
    address = ServiceAddress(
        "127.0.0.1",
        params["echo_port"],
        ca=Path(params["ca"]),
        cert=Path(params["echo_cert"]),
        key=Path(params["echo_key"]),
    )
    channel = CorkedChannel(address.host, address.port, ssl=address.ssl_context(), codec=RawCodec())
    method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(channel, ECHO_METHOD, bytes, bytes)
    payload = b"x" * params["payload"]

    async def call() -> None:
        await method(payload, timeout=30)

    async def close() -> None:
        channel.close()

    return call, close
