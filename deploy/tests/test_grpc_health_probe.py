"""The exec readiness probe shipped in the images, against a real bugless gRPC server.

Kubelet's gRPC probe cannot speak TLS, so servers with TLS are probed by
deploy/docker/bugless_grpc_health.py; this runs it against the real runner
over mutual TLS, with trustme certificates, as the chart configures it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry

from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_proto import v1

PROBE = Path(__file__).resolve().parents[1] / "docker" / "bugless_grpc_health.py"


@dataclass(frozen=True)
class ServerFiles:
    """Where the test PKI is on disk."""

    ca: Path
    cert: Path
    key: Path
    stranger_cert: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    # One certificate serves and, as in the chart, identifies the probe.
    leaf = ca.issue_cert("bugless-model.bugless.svc")
    stranger = trustme.CA().issue_cert("stranger.example")
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / "tls.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(directory / "stranger.pem"))
    return ServerFiles(
        ca=directory / "ca.crt",
        cert=directory / "tls.pem",
        key=directory / "tls.key",
        stranger_cert=directory / "stranger.pem",
    )


@pytest.fixture
async def runner(pki: ServerFiles) -> AsyncIterator[GrpcServiceRunner]:
    settings = GrpcServerSettings(
        tls_cert=pki.cert, tls_key=pki.key, client_ca=pki.ca, drain_seconds=0, grace_seconds=0
    )
    server = GrpcServiceRunner(
        [v1.ModelBase()], settings, name="model", metrics_registry=CollectorRegistry()
    )
    async with server:
        yield server


async def _probe(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PROBE), *args, stderr=asyncio.subprocess.PIPE
    )
    await process.communicate()
    assert process.returncode is not None
    return process.returncode


async def test_probe_passes_while_serving_and_fails_while_draining(
    runner: GrpcServiceRunner, pki: ServerFiles
) -> None:
    args = (f"--port={runner.port}", f"--ca={pki.ca}", f"--cert={pki.cert}", f"--key={pki.key}")
    assert await _probe(*args) == 0
    runner.set_serving(False)
    assert await _probe(*args) == 1


async def test_probe_fails_without_a_client_certificate_the_server_trusts(
    runner: GrpcServiceRunner, pki: ServerFiles
) -> None:
    assert await _probe(f"--port={runner.port}", f"--ca={pki.ca}") == 1
    assert await _probe(f"--port={runner.port}", f"--cert={pki.stranger_cert}") == 1


async def test_probe_fails_when_nothing_listens(pki: ServerFiles) -> None:
    assert await _probe("--port=1", f"--ca={pki.ca}", "--timeout=1") == 1
