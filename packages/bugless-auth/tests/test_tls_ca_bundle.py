"""The tls backend's ``ca_file`` as a bundle: the overlap of a bot-CA rotation.

Before, ``ca_file`` was read as one certificate (the first of the file), so
the moment it named a new bot CA every bot still holding a certificate of
the old one was refused. Real trustme CAs, a real Authenticator over gRPC.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import pytest
import trustme
from auth_support import AuthServer, StartAuth
from certificates import Pki, make_pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.tls import TlsAuthenticator
from bugless_core.errors import BuglessError, from_grpc_error
from bugless_proto import v1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_bundle(path: Path, *cas: trustme.CA) -> None:
    path.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))


async def start_with_bundle(start: StartAuth, pki: Pki, ca_file: Path) -> AuthServer:
    return await start(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {
                "mapping_file": str(pki.mapping_file),
                "ca_file": str(ca_file),
                "reload_check_seconds": "0",
            }
        },
    )


async def signs_in_as(server: AuthServer, der: bytes) -> str:
    result = await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )
    assert result.identity is not None
    assert result.identity.user is not None
    return result.identity.user.username


async def is_refused(server: AuthServer, der: bytes) -> None:
    error = await expect_status(
        server.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=der)
        ),
        Status.UNAUTHENTICATED,
    )
    assert "CN=deploy-bot" in (error.message or "")


async def test_a_bundle_of_two_cas_accepts_a_leaf_of_each_and_refuses_a_third(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path
) -> None:
    old, new, third = pki.ca, trustme.CA(), trustme.CA()
    bundle = tmp_path / "bots-ca.pem"
    write_bundle(bundle, old, new)
    server = await start_with_bundle(start_auth_server, pki, bundle)

    assert await signs_in_as(server, pki.client("deploy-bot", ca=old)) == "deploy-bot"
    assert await signs_in_as(server, pki.client("deploy-bot", ca=new)) == "deploy-bot"
    await is_refused(server, pki.client("deploy-bot", ca=third))


async def test_a_ca_removed_from_the_bundle_refuses_its_leaves_without_a_restart(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rotation's last step: the old CA leaves the file and its certificates stop mapping."""
    caplog.set_level(logging.INFO, logger="bugless.auth.tls")
    old, new = trustme.CA(), trustme.CA()
    bundle = tmp_path / "bots-ca.pem"
    write_bundle(bundle, new, old)
    server = await start_with_bundle(start_auth_server, pki, bundle)
    old_leaf, new_leaf = pki.client("deploy-bot", ca=old), pki.client("deploy-bot", ca=new)
    assert await signs_in_as(server, old_leaf) == "deploy-bot"

    write_bundle(bundle, new)
    await is_refused(server, old_leaf)
    assert await signs_in_as(server, new_leaf) == "deploy-bot"
    assert f"tls ca_file {bundle} reloaded: 1 CA certificates" in caplog.text

    # A replacement with no certificate in it is logged and changes nothing.
    bundle.write_text("# the bots' CAs\n")
    assert await signs_in_as(server, new_leaf) == "deploy-bot"
    await is_refused(server, old_leaf)
    assert "changed but cannot be used (tls ca_file" in caplog.text
    assert "no BEGIN CERTIFICATE block" in caplog.text

    # Putting the old CA back (a rotation undone) is read too.
    write_bundle(bundle, old, new)
    assert await signs_in_as(server, old_leaf) == "deploy-bot"


async def test_a_ca_file_with_no_certificate_is_refused_at_open_naming_it(
    pki: Pki, tmp_path: Path
) -> None:
    empty = tmp_path / "bots-ca.pem"
    empty.write_text("")
    with pytest.raises(ValueError, match="no BEGIN CERTIFICATE block") as raised:
        await TlsAuthenticator.open({"mapping_file": str(pki.mapping_file), "ca_file": str(empty)})
    assert str(empty) in str(raised.value)
    assert "the PEM certificate of the CA that signs the bots' certificates" in str(raised.value)


def self_signed(common_name: str, *extensions: x509.ExtensionType) -> x509.Certificate:
    """A self-signed certificate with only ``extensions`` (none: no basicConstraints at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


def not_a_ca_pem(common_name: str) -> bytes:
    return self_signed(common_name).public_bytes(Encoding.PEM)


def person_certificate(user_id: str) -> bytes:
    """A person's certificate (its ``bugless:user:`` URI) that no people CA here signed."""
    name = x509.UniformResourceIdentifier(f"bugless:user:{user_id}")
    return self_signed("ann", x509.SubjectAlternativeName([name])).public_bytes(Encoding.DER)


def with_two_basic_constraints(ca: trustme.CA) -> bytes:
    """``ca``'s certificate (PEM) with its subjectKeyIdentifier relabelled basicConstraints.

    Well-formed DER holding one extension twice, which cryptography refuses
    to read with DuplicateExtension (not a ValueError): how a hand-edited
    or badly generated CA certificate can look.
    """
    der = ca.cert_pem.bytes()
    cert = x509.load_pem_x509_certificate(der).public_bytes(Encoding.DER)
    ski, basic = bytes.fromhex("0603551d0e"), bytes.fromhex("0603551d13")
    assert cert.count(ski) == 1
    twice = x509.load_der_x509_certificate(cert.replace(ski, basic))
    return twice.public_bytes(Encoding.PEM)


@pytest.mark.parametrize(
    "mistake", ["a leaf (CA:FALSE)", "no basicConstraints", "basicConstraints twice"]
)
async def test_a_ca_file_holding_a_certificate_that_is_not_a_ca_is_refused_at_open(
    pki: Pki, tmp_path: Path, mistake: str
) -> None:
    """A bot's own certificate (or one that says nothing of being a CA) beside the real CA
    is refused, naming the file and which certificate, before anything serves."""
    bundle = tmp_path / "bots-ca.pem"
    if mistake == "a leaf (CA:FALSE)":
        wrong = pki.ca.issue_cert("leaf.invalid", common_name="release-bot").cert_chain_pems[0]
        bundle.write_bytes(pki.ca.cert_pem.bytes() + wrong.bytes())
        said = "its basicConstraints say CA:FALSE"
    elif mistake == "basicConstraints twice":
        bundle.write_bytes(pki.ca.cert_pem.bytes() + with_two_basic_constraints(pki.ca))
        subject = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes()).subject
        said = f"certificate 2 of 2 (subject {subject.rfc4514_string()}) is not a CA: its"
        said += " extensions do not read: it holds extension 2.5.29.19 (basicConstraints) twice"
    else:
        bundle.write_bytes(pki.ca.cert_pem.bytes() + not_a_ca_pem("release-bot"))
        said = "it has no basicConstraints extension"
    with pytest.raises(ValueError, match="is not a CA") as raised:
        await TlsAuthenticator.open({"mapping_file": str(pki.mapping_file), "ca_file": str(bundle)})
    message = str(raised.value)
    assert str(bundle) in message
    assert said in message
    if mistake != "basicConstraints twice":
        assert "certificate 2 of 2 (subject CN=release-bot" in message


async def test_a_ca_file_changed_to_a_leaf_while_serving_keeps_the_last_good_bundle(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = tmp_path / "bots-ca.pem"
    write_bundle(bundle, pki.ca)
    server = await start_with_bundle(start_auth_server, pki, bundle)
    leaf = pki.client("deploy-bot")
    bundle.write_bytes(pki.ca.issue_cert("leaf.invalid").cert_chain_pems[0].bytes())
    assert await signs_in_as(server, leaf) == "deploy-bot"
    assert "changed but cannot be used" in caplog.text
    assert "is not a CA: its basicConstraints say CA:FALSE" in caplog.text


async def refusal(server: AuthServer, der: bytes) -> BuglessError:
    error = await expect_status(
        server.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=der)
        ),
        Status.UNAUTHENTICATED,
    )
    return from_grpc_error(error)


async def test_a_refusal_says_why_untrusted_expired_or_not_mapped(
    start_auth_server: StartAuth, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate that no CA of ca_file signed is refused as untrusted,
    naming its issuer, mapped or not, not as "not mapped" (which sent the
    operator to a mapping that names it), and telling its holder nothing of
    what ca_file holds (the operator's log says how many CAs and which); an
    expired one as expired, an unmapped one of a trusted CA as not mapped."""
    caplog.set_level(logging.INFO, logger="bugless.auth.tls")
    bundle = tmp_path / "bots-ca.pem"
    write_bundle(bundle, pki.ca)
    server = await start_with_bundle(start_auth_server, pki, bundle)
    stranger = trustme.CA(organization_name="Stranger Bots")

    untrusted = await refusal(server, pki.client("deploy-bot", ca=stranger))
    assert untrusted.reason == "CERTIFICATE_UNTRUSTED"
    assert untrusted.message.startswith("certificate subject CN=deploy-bot,")
    assert (
        " is not signed by a CA in the tls authenticator's ca_file (its issuer is "
        in untrusted.message
    )
    assert untrusted.message.endswith("O=Stranger Bots)")
    assert "not mapped" not in untrusted.message
    ours = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes()).subject.rfc4514_string()
    for configuration in ("holds", "CA certificate", " 1 ", str(bundle), ours):
        assert configuration not in untrusted.message
    logged = f"none of the 1 CA certificate of tls ca_file {bundle} did ({ours})"
    assert logged in caplog.text

    expired = await refusal(
        server,
        pki.client(
            "deploy-bot",
            not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            not_after=datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC),
        ),
    )
    assert expired.reason == "CERTIFICATE_EXPIRED"
    assert expired.message.endswith(" expired at 2020-01-02 00:00 UTC")

    unmapped = await refusal(server, pki.client("nobody-maps-me"))
    assert unmapped.reason == "CERTIFICATE_NOT_MAPPED"
    assert unmapped.message.endswith(" is not mapped to a bugless user")
    assert unmapped.message.startswith("certificate subject CN=nobody-maps-me,")
    # An unmapped CN of a CA outside ca_file hears what a mapped one does: the
    # API passes this reason on to the holder, so it must not tell which CNs
    # are mapped.
    other = await refusal(server, pki.client("nobody-maps-me", ca=stranger))
    assert other.reason == "CERTIFICATE_UNTRUSTED"
    assert (
        other.message.partition(" is not signed by ")[2]
        == (untrusted.message.partition(" is not signed by ")[2])
    )

    # A person's certificate (bugless:user: name) of a CA that is no people CA here.
    stale = await refusal(server, person_certificate("u_aaaaaaaaaaaaaaaa"))
    assert stale.reason == "CERTIFICATE_UNTRUSTED"
    assert "is a person's certificate, but its issuer" in stale.message
    assert "run `bugless login` for a new one" in stale.message
