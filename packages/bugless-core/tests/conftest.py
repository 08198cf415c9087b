"""Fixtures bugless-core's tests share, and the plugins they use.

The real PostgreSQL (``postgres_server``) and local stack (``bugless_stack``)
fixtures are enabled here, for every module of the tree, as every package's
tests conftest does, rather than by the modules that use them: pytest honours
``pytest_plugins`` in a conftest it loads before collecting (a test folder
named on the command line, and its parents) and refuses it in any other; in
a test module it applies to the whole run from whenever collection reaches
that module, which pytest's documentation advises against.

The gRPC bootstrap tests' fixtures (``grpc/``: certificates, runners,
channels, a server process) are here too, not in a conftest of that folder:
everything is real (trustme certificates written to files, servers bound to
loopback ports, grpclib channels over sockets). One conftest per package's
tests, so ``mypy --strict packages/bugless-core/tests`` checks them in one
run, as for every other package (two ``conftest`` modules cannot be one
mypy run: the test folders are no packages).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from grpc_test_server import (
    HERE,
    PROCESS_DRAIN_SECONDS,
    SOURCES,
    OpenChannel,
    Pki,
    ServerProcess,
    SlowModel,
    StartRunner,
)
from grpclib.client import Channel
from prometheus_client import CollectorRegistry

from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.stack"]

PluginFactory = Callable[..., Path]


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[PluginFactory]:
    """Install a real distribution with a `bugless` entry point on sys.path.

    It is a genuine *.dist-info next to its module, so importlib.metadata and
    `bugless plugins` in a subprocess discover it exactly as they would a
    pip-installed plugin.
    """
    added: list[str] = []

    def install(
        dist: str, module: str, source: str, entry_name: str | None = None, suffix: str = ""
    ) -> Path:
        site = tmp_path / f"site-{dist}{suffix}"
        site.mkdir()
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[bugless]\n{entry_name or dist} = {module}\n")
        (info / "top_level.txt").write_text(module + "\n")
        sys.path.insert(0, str(site))
        added.append(str(site))
        return site

    yield install
    for path in added:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m.startswith("bugless_fixture_")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("bot.example", common_name="bot.example")
    stranger = trustme.CA().issue_cert("stranger.example", common_name="stranger.example")

    def write(name: str, blob: trustme.Blob) -> str:
        path = directory / name
        blob.write_to_path(str(path))
        return str(path)

    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server_cert=write("server.pem", server.cert_chain_pems[0]),
        server_key=write("server.key", server.private_key_pem),
        client_cert=write("client.pem", client.cert_chain_pems[0]),
        client_key=write("client.key", client.private_key_pem),
        client_der=ssl.PEM_cert_to_DER_cert(client.cert_chain_pems[0].bytes().decode()),
        stranger_cert=write("stranger.pem", stranger.cert_chain_pems[0]),
        stranger_key=write("stranger.key", stranger.private_key_pem),
    )


@pytest.fixture
async def start_runner() -> AsyncIterator[StartRunner]:
    """Start runners serving a :class:`SlowModel`; close them all afterwards.

    Takes the settings (plaintext, no drain delay by default), a servicer (a
    fresh one by default) and any other runner argument. Each runner gets its
    own metrics registry, so its counters start at zero.
    """
    runners: list[GrpcServiceRunner] = []

    async def start(
        settings: GrpcServerSettings | None = None,
        servicer: SlowModel | None = None,
        **kwargs: Any,
    ) -> GrpcServiceRunner:
        if settings is None:
            settings = GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=1.0)
        kwargs.setdefault("metrics_registry", CollectorRegistry())
        runner = GrpcServiceRunner(
            [servicer or SlowModel()],
            settings,
            name="test-model",
            **kwargs,
        )
        await runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.close()


@pytest.fixture
def open_channel() -> Iterator[OpenChannel]:
    """Open grpclib channels to loopback; close them all afterwards."""
    channels: list[Channel] = []

    def open_(port: int, ssl_context: ssl.SSLContext | None = None) -> Channel:
        channel = Channel("127.0.0.1", port, ssl=ssl_context)
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        channel.close()


@pytest.fixture
async def server_process() -> AsyncIterator[ServerProcess]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [*map(str, SOURCES), environment.get("PYTHONPATH", "")]
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "grpc_test_server.py"),
        "--drain-seconds",
        str(PROCESS_DRAIN_SECONDS),
        "--grace-seconds",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(15):
            first_line = await process.stdout.readline()
        assert first_line, "the server process exited before printing its port"
        yield ServerProcess(process, json.loads(first_line)["port"])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
