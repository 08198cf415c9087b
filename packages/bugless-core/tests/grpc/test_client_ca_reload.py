"""A serving gRPC server re-reads ``client_ca`` when the file changes: a CA rotation, no restart.

Before, the bundle was read once when the server started, so trusting a new
bot CA (or dropping the old one) at the API needed a restart of every
replica. Real trustme CAs written to files, a real runner on a loopback port,
grpclib channels over real TLS connections.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from grpc_test_server import OpenChannel, Pki, SlowModel, StartRunner
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner, build_client_ssl_context
from bugless_proto import v1

#: What a client sees when the server refuses its certificate in the handshake.
REFUSED = (StreamTerminatedError, ssl.SSLError, ConnectionError)


@dataclass(frozen=True)
class Rotation:
    """The old client CA and the new one, a client of each, and the bundle file the server reads."""

    bundle: Path
    old: trustme.CA
    new: trustme.CA
    old_client: ssl.SSLContext
    new_client: ssl.SSLContext

    def trust(self, *cas: trustme.CA) -> None:
        self.bundle.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))


def _client(pki: Pki, ca: trustme.CA, directory: Path, name: str) -> ssl.SSLContext:
    leaf = ca.issue_cert(f"{name}.example", common_name=f"{name}.example")
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return build_client_ssl_context(pki.ca, cert, key)


@pytest.fixture
def rotation(pki: Pki, tmp_path: Path) -> Rotation:
    old, new = trustme.CA(), trustme.CA()
    made = Rotation(
        tmp_path / "client-ca.pem",
        old,
        new,
        _client(pki, old, tmp_path, "old-bot"),
        _client(pki, new, tmp_path, "new-bot"),
    )
    made.trust(old)
    return made


async def _start(pki: Pki, rotation: Rotation, start_runner: StartRunner) -> GrpcServiceRunner:
    settings = GrpcServerSettings(
        tls_cert=Path(pki.server_cert),
        tls_key=Path(pki.server_key),
        client_ca=rotation.bundle,
        drain_seconds=0.0,
        grace_seconds=1.0,
    )
    return await start_runner(settings, servicer=SlowModel())


async def _answers(channel: Channel) -> bool:
    """Whether a call on ``channel`` is answered (False: its handshake was refused)."""
    try:
        reply = await v1.ModelStub(channel).get_server_info(timeout=5)
    except REFUSED:
        return False
    assert reply.backend == "test"
    return True


async def test_a_changed_client_ca_file_is_used_for_new_connections_without_a_restart(
    pki: Pki,
    rotation: Rotation,
    start_runner: StartRunner,
    open_channel: OpenChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rotation at the API: the new CA added (its clients get in), then the old one
    removed (its new connections are refused); a connection the old CA's client opened
    before goes on, and each change is logged."""
    caplog.set_level(logging.INFO, logger="bugless_core.grpc")
    runner = await _start(pki, rotation, start_runner)
    assert await _answers(open_channel(runner.port, rotation.old_client))
    assert not await _answers(open_channel(runner.port, rotation.new_client))
    kept = open_channel(runner.port, rotation.old_client)
    assert await _answers(kept)

    rotation.trust(rotation.old, rotation.new)
    for _ in range(100):  # the server looks every CLIENT_CA_CHECK_SECONDS (2) by itself
        if await _answers(open_channel(runner.port, rotation.new_client)):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("a client of the CA added to the bundle was still refused after 10 s")
    assert "client CA bundle reloaded from" in caplog.text
    assert "2 CA certificates" in caplog.text

    rotation.trust(rotation.new)
    assert runner.client_cas is not None
    assert await runner.client_cas.check()
    assert not await _answers(open_channel(runner.port, rotation.old_client))
    assert await _answers(open_channel(runner.port, rotation.new_client))
    assert await _answers(kept)  # open before the change: unaffected


@pytest.mark.parametrize(
    "edit", ["no certificate", "a private key only", "not PEM at all", "file removed"]
)
async def test_a_client_ca_file_that_cannot_be_used_keeps_the_last_good_bundle(
    pki: Pki,
    rotation: Rotation,
    *,
    start_runner: StartRunner,
    open_channel: OpenChannel,
    caplog: pytest.LogCaptureFixture,
    edit: str,
) -> None:
    runner = await _start(pki, rotation, start_runner)
    assert runner.client_cas is not None
    if edit == "no certificate":
        rotation.bundle.write_text("# the bots' CAs go here\n")
    elif edit == "a private key only":
        rotation.bundle.write_bytes(rotation.new.private_key_pem.bytes())
    elif edit == "not PEM at all":
        rotation.bundle.write_bytes(
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        )
    else:
        rotation.bundle.unlink()

    assert not await runner.client_cas.check()

    assert "the client CA files changed but cannot be used" in caplog.text
    assert "last good ones" in caplog.text
    assert await _answers(open_channel(runner.port, rotation.old_client))
    assert not await _answers(open_channel(runner.port, rotation.new_client))
    # Fixed again: taken into use.
    rotation.trust(rotation.new)
    assert await runner.client_cas.check()
    assert await _answers(open_channel(runner.port, rotation.new_client))
