"""GetUsers latency through gRPC for a cached 50-id batch (target: p99 <= 1 ms).

Starts a throwaway PostgreSQL (bugless_dev.postgres), an Authenticator
on a loopback socket, adds users, warms the cache, then times sequential
GetUsers calls from grpclib clients in the same process (so the figures
include client encode/decode and the loopback round trip). Two clients:

* ``upb``: messages from google.protobuf (C) built from the embedded
  descriptors -- the server's own latency plus a cheap client;
* ``betterproto2``: the generated stub, whose pure-Python decoding of 50
  users costs ~2 ms on the *client* side alone.

    python -m bench.auth_lookup [--users 1000] [--batch 50] [--calls 5000]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path
from typing import Any

from google.protobuf import message_factory
from grpclib.const import Cardinality

from bench._auth_served import run_on_postgres, served_auth
from bugless_proto import DESCRIPTOR_POOL, v1

GET_USERS = "/bugless.v1.Authenticator/GetUsers"


def _upb(name: str) -> type[Any]:
    cls: type[Any] = message_factory.GetMessageClass(DESCRIPTOR_POOL.FindMessageTypeByName(name))
    return cls


def _report(label: str, samples: list[float], batch: int) -> None:
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    print(f"  {label:<13} p50 {p50:.3f} ms   p99 {p99:.3f} ms   ({batch} ids, target p99 <= 1 ms)")


async def bench(users: int, batch: int, calls: int, database_url: str, key: Path) -> None:
    async with served_auth(database_url, key) as auth:
        channel = auth.channel
        ids = await auth.add_users(users)
        stub = v1.AuthenticatorStub(channel)
        request = v1.GetUsersRequest(user_ids=ids[:batch])
        request_cls, response_cls = (
            _upb("bugless.v1.GetUsersRequest"),
            _upb("bugless.v1.UsersResponse"),
        )
        upb_request = request_cls(user_ids=ids[:batch])

        async def upb_call() -> None:
            async with channel.request(
                GET_USERS, Cardinality.UNARY_UNARY, request_cls, response_cls
            ) as stream:
                await stream.send_message(upb_request, end=True)
                response = await stream.recv_message()
                assert response is not None
                assert len(response.users) == batch

        async def betterproto2_call() -> None:
            await stub.get_users(request)

        print(f"GetUsers, {batch} cached ids, {calls} sequential calls over gRPC (loopback):")
        for label, call in (("upb", upb_call), ("betterproto2", betterproto2_call)):
            for _ in range(200):  # warm the cache and the connection
                await call()
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - started)
            _report(label, samples, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    run_on_postgres(functools.partial(bench, args.users, args.batch, args.calls))


if __name__ == "__main__":
    main()
