"""The ACCESS tables: who may call what, checked by the runner before a handler runs.

Real sockets and real mutual TLS: a trustme CA signs service certificates
naming ``spiffe://bugless/<service>`` (built with ``cryptography`` on the CA's
key, since trustme issues no URI names) and a bot certificate naming none.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_test_server import OpenChannel, SlowModel, StartRunner
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from bugless_core.grpc import (
    ANY_CLIENT,
    AccessRules,
    AccessTable,
    GrpcServerSettings,
    build_client_ssl_context,
    current_identity,
    service_identity,
)
from bugless_proto import v1


class _WebOnlyModel(SlowModel):
    """GetServerInfo for the web and admins; every other RPC has no row."""

    ACCESS: ClassVar[AccessTable] = {"GetServerInfo": {"web", "@admin"}}

    def __init__(self) -> None:
        super().__init__()
        self.identities: list[str | None] = []

    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        self.identities.append(current_identity())
        return await super().get_server_info(message)


class _Certificates:
    """A trustme CA and files for the server and several callers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        bot = self.ca.issue_cert("bot.example", common_name="bot.example")
        self.bot = (directory / "bot.pem", directory / "bot.key")
        bot.cert_chain_pems[0].write_to_path(str(self.bot[0]))
        bot.private_key_pem.write_to_path(str(self.bot[1]))

    def service(self, *uris: str) -> tuple[Path, Path]:
        """A client certificate with these URI SANs, signed by the CA."""
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "service")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        stem = "-".join(u.rsplit("/", 1)[-1] for u in uris) or "none"
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    def settings(self, **fields: Any) -> GrpcServerSettings:
        return GrpcServerSettings(
            tls_cert=self.server_cert,
            tls_key=self.server_key,
            client_ca=self.ca_file,
            drain_seconds=0.0,
            grace_seconds=1.0,
            **fields,
        )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> _Certificates:
    return _Certificates(tmp_path_factory.mktemp("access-pki"))


async def _server_info(
    open_channel: OpenChannel, port: int, certificates: _Certificates, files: tuple[Path, Path]
) -> v1.GetServerInfoResponse:
    context = build_client_ssl_context(certificates.ca_file, *files)
    return await v1.ModelStub(open_channel(port, context)).get_server_info(timeout=5)


async def test_an_identity_in_the_row_is_served_and_the_handler_sees_it(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    servicer = _WebOnlyModel()
    runner = await start_runner(certificates.settings(), servicer=servicer)

    web = certificates.service("spiffe://bugless/web")
    reply = await _server_info(open_channel, runner.port, certificates, web)

    assert reply.backend == "test"
    assert servicer.identities == ["web"]


@pytest.mark.parametrize(
    "uris",
    [
        ("spiffe://bugless/notify",),
        ("spiffe://other/web",),
        ("spiffe://bugless/web", "spiffe://bugless/api"),
    ],
    ids=["another-service", "another-trust-domain", "two-identities"],
)
async def test_an_identity_not_in_the_row_is_refused_before_the_handler(
    uris: tuple[str, ...],
    certificates: _Certificates,
    start_runner: StartRunner,
    open_channel: OpenChannel,
) -> None:
    servicer = _WebOnlyModel()
    runner = await start_runner(certificates.settings(), servicer=servicer)

    with pytest.raises(GRPCError) as refused:
        await _server_info(open_channel, runner.port, certificates, certificates.service(*uris))

    assert refused.value.status is Status.PERMISSION_DENIED
    assert "/bugless.v1.Model/GetServerInfo may not be called" in str(refused.value.message)
    assert servicer.identities == []


async def test_a_bot_certificate_is_no_service_identity(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(certificates.settings(), servicer=_WebOnlyModel())

    with pytest.raises(GRPCError) as refused:
        await _server_info(open_channel, runner.port, certificates, certificates.bot)

    assert refused.value.status is Status.PERMISSION_DENIED
    assert "without a service identity" in str(refused.value.message)


async def test_an_rpc_without_a_row_is_refused_to_everyone(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(certificates.settings(), servicer=_WebOnlyModel())
    context = build_client_ssl_context(
        certificates.ca_file, *certificates.service("spiffe://bugless/web")
    )

    with pytest.raises(GRPCError) as refused:
        await v1.ModelStub(open_channel(runner.port, context)).get_issue(
            v1.GetIssueRequest(issue_id=1), timeout=5
        )

    assert refused.value.status is Status.PERMISSION_DENIED
    assert "has no access rule" in str(refused.value.message)


async def test_roles_are_resolved_from_the_settings(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(
        certificates.settings(admin_identities=("ops",)), servicer=_WebOnlyModel()
    )
    ops = certificates.service("spiffe://bugless/ops")
    admin = certificates.service("spiffe://bugless/admin")

    assert (await _server_info(open_channel, runner.port, certificates, ops)).backend == "test"
    with pytest.raises(GRPCError) as refused:
        await _server_info(open_channel, runner.port, certificates, admin)
    assert refused.value.status is Status.PERMISSION_DENIED


async def test_health_is_open_to_any_verified_caller(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    runner = await start_runner(certificates.settings(), servicer=_WebOnlyModel())
    context = build_client_ssl_context(certificates.ca_file, *certificates.bot)

    response = await HealthStub(open_channel(runner.port, context)).Check(
        HealthCheckRequest(service=""), timeout=5
    )

    assert response is not None


async def test_a_plaintext_caller_never_reaches_a_mutual_tls_server(
    certificates: _Certificates, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    servicer = _WebOnlyModel()
    runner = await start_runner(certificates.settings(), servicer=servicer)

    stub = v1.ModelStub(open_channel(runner.port))
    with pytest.raises((OSError, GRPCError, StreamTerminatedError)):
        await stub.get_server_info(timeout=5)
    assert servicer.identities == []


def test_a_table_naming_an_rpc_the_servicer_lacks_is_refused() -> None:
    class Typo(SlowModel):
        ACCESS: ClassVar[AccessTable] = {"GetServerInfo": {ANY_CLIENT}, "GetIsue": {"web"}}

    with pytest.raises(ValueError, match="GetIsue"):
        AccessRules([Typo()], roles={})


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="@admin"):
        AccessRules([_WebOnlyModel()], roles={"@import": ("import",)})


def test_service_identity_reads_only_bugless_spiffe_uris() -> None:
    assert service_identity({"subjectAltName": (("URI", "spiffe://bugless/web"),)}) == "web"
    assert service_identity({"subjectAltName": (("DNS", "web"),)}) is None
    assert service_identity({"subjectAltName": (("URI", "https://bugless/web"),)}) is None
    assert service_identity(None) is None
