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
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import message_factory
from grpclib.client import Channel
from grpclib.const import Cardinality
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth.runner import start_auth
from bugless_auth.settings import AuthSettings, PasswordHashing
from bugless_auth.store import IdentityStore
from bugless_auth.tokens import generate_ed25519_pem
from bugless_auth.user_admin import create_local_user
from bugless_core.grpc import GrpcServerSettings
from bugless_core.plugins import load_plugins
from bugless_dev.postgres import start_postgres
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
    await IdentityStore.migrate(database_url, "bench_auth")
    settings = AuthSettings(
        database_url=database_url,
        schema="bench_auth",
        token_keys=(key,),
        hashing=PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1),
        cache_ttl_seconds=3600,
    )
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    service, runner = await start_auth(
        plugins,
        settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
        metrics_registry=CollectorRegistry(),
    )
    channel = Channel("127.0.0.1", runner.port)
    try:
        ids = []
        for i in range(users):
            record = await create_local_user(
                service.store,
                service.hashes,
                username=f"user{i}",
                display_name=f"User {i}",
                email=f"user{i}@example.org",
                password="bench-password",
                groups=["eng"],
                min_password_length=1,
            )
            ids.append(record.user_id)
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
    finally:
        channel.close()
        await runner.close()
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "key.pem"
            key.write_bytes(generate_ed25519_pem())
            url = server.create_database("bench_auth")
            asyncio.run(bench(args.users, args.batch, args.calls, url, key))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
