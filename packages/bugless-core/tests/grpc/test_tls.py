"""TLS and mutual TLS: who gets in, and what handlers learn about them."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme
from grpc_test_server import OpenChannel, Pki, SlowModel, StartRunner
from grpclib.exceptions import StreamTerminatedError

from bugless_core.grpc import GrpcServerSettings, build_client_ssl_context, build_server_ssl_context
from bugless_proto import v1


async def test_client_with_a_certificate_from_the_trusted_ca_gets_in_and_is_seen(
    pki: Pki, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    servicer = SlowModel()
    runner = await start_runner(pki.mutual_tls_settings(), servicer=servicer)

    channel = open_channel(runner.port, pki.client_context())
    reply = await v1.ModelStub(channel).get_server_info(timeout=5)

    assert reply.backend == "test"
    assert servicer.seen_certificates == [pki.client_der]


async def test_peer_connection_carries_the_decoded_certificate(
    pki: Pki, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    from bugless_core.grpc import PeerConnection, current_peer

    seen: list[PeerConnection | None] = []

    class Recording(SlowModel):
        async def get_server_info(
            self, message: v1.GetServerInfoRequest
        ) -> v1.GetServerInfoResponse:
            seen.append(current_peer())
            return await super().get_server_info(message)

    runner = await start_runner(pki.mutual_tls_settings(), servicer=Recording())
    await v1.ModelStub(open_channel(runner.port, pki.client_context())).get_server_info(timeout=5)

    (peer,) = seen
    assert peer is not None
    assert peer.certificate == pki.client_der
    assert peer.address is not None
    assert peer.address[0] == "127.0.0.1"
    assert peer.certificate_fields is not None
    subject = peer.certificate_fields["subject"]
    assert isinstance(subject, tuple)  # ssl's decoded form: a tuple of RDNs
    assert (("commonName", "bot.example"),) in subject


@pytest.mark.parametrize("client", ["no certificate", "certificate from another CA", "plaintext"])
async def test_mutual_tls_refuses_clients_without_a_trusted_certificate_at_connection_level(
    pki: Pki, start_runner: StartRunner, open_channel: OpenChannel, client: str
) -> None:
    servicer = SlowModel()
    runner = await start_runner(pki.mutual_tls_settings(), servicer=servicer)
    context: ssl.SSLContext | None = {
        "no certificate": build_client_ssl_context(pki.ca),
        "certificate from another CA": build_client_ssl_context(
            pki.ca, pki.stranger_cert, pki.stranger_key
        ),
        "plaintext": None,
    }[client]

    # Under TLS 1.3 the client's side of the handshake completes before the
    # server checks its certificate, so the refusal reaches grpclib as the
    # connection being dropped: no gRPC status, no handler ever runs.
    with pytest.raises((StreamTerminatedError, ssl.SSLError, ConnectionError)):
        await v1.ModelStub(open_channel(runner.port, context)).get_server_info(timeout=5)

    assert servicer.seen_certificates == []


async def test_server_only_tls_serves_clients_without_certificates(
    pki: Pki, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    servicer = SlowModel()
    settings = GrpcServerSettings(
        tls_cert=Path(pki.server_cert),
        tls_key=Path(pki.server_key),
        drain_seconds=0.0,
        insecure_local=True,
    )
    runner = await start_runner(settings, servicer=servicer)

    channel = open_channel(runner.port, build_client_ssl_context(pki.ca))
    reply = await v1.ModelStub(channel).get_server_info(timeout=5)

    assert reply.backend == "test"
    assert servicer.seen_certificates == [None]


async def test_server_negotiates_http2_over_tls_1_2_or_later(
    pki: Pki, start_runner: StartRunner
) -> None:
    runner = await start_runner(pki.mutual_tls_settings())

    _, writer = await asyncio.open_connection(
        "127.0.0.1", runner.port, ssl=pki.client_context(), server_hostname="localhost"
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    finally:
        writer.transport.abort()  # the server has sent HTTP/2 SETTINGS: no clean TLS close


def test_server_context_requires_client_certificates_only_with_a_client_ca(pki: Pki) -> None:
    mutual = build_server_ssl_context(pki.mutual_tls_settings())
    server_only = build_server_ssl_context(
        GrpcServerSettings(
            tls_cert=Path(pki.server_cert), tls_key=Path(pki.server_key), insecure_local=True
        )
    )

    assert mutual is not None
    assert server_only is not None
    assert mutual.verify_mode is ssl.CERT_REQUIRED
    assert server_only.verify_mode is ssl.CERT_NONE
    assert mutual.minimum_version is ssl.TLSVersion.TLSv1_2
    assert build_server_ssl_context(GrpcServerSettings(insecure_local=True)) is None


def test_client_key_without_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="without a client certificate"):
        build_client_ssl_context(pki.ca, key=pki.client_key)


def test_more_client_cas_are_trusted_beside_the_client_ca_and_need_it(
    pki: Pki, tmp_path: Path
) -> None:
    """The API's people CAs: each file adds its CA to what the handshake trusts;
    without ``client_ca`` no certificate is asked for, so they are refused."""
    people_ca = tmp_path / "people-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(people_ca))
    mutual = build_server_ssl_context(pki.mutual_tls_settings())
    more = build_server_ssl_context(pki.mutual_tls_settings(), more_client_cas=[people_ca])
    assert mutual is not None
    assert more is not None
    assert more.cert_store_stats()["x509_ca"] == mutual.cert_store_stats()["x509_ca"] + 1
    server_only = GrpcServerSettings(
        tls_cert=Path(pki.server_cert), tls_key=Path(pki.server_key), insecure_local=True
    )
    with pytest.raises(ValueError, match="more_client_cas need client_ca"):
        build_server_ssl_context(server_only, more_client_cas=[people_ca])
