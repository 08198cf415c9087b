"""Replacing the people CA: the old CA's certificates work until the operator drops it.

Real Authenticators on one schema (as replicas before, during and after the
rotation), real CAs from trustme, real certificates from people's CSRs. The
TLS handshake at the API with both CAs in its client bundle is
packages/bugless-api/tests/test_api_people_ca_rotation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from auth_support import (
    AuthServer,
    StartAuth,
    certificate_der,
    new_user_token,
    person_csr,
    unique,
)
from cryptography import x509
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.settings import PeopleCaSettings
from bugless_core.errors import from_grpc_error
from bugless_proto import v1


def _ca_files(directory: Path, ca: trustme.CA, stem: str) -> tuple[Path, Path]:
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    return cert, key


async def _issue(server: AuthServer, token: str, label: str) -> v1.PersonCertificate:
    return await server.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), label=label)
    )


async def _username(server: AuthServer, issued: v1.PersonCertificate) -> str:
    result = await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=certificate_der(issued.certificate_pem))
    )
    assert result.identity is not None
    assert result.identity.user is not None
    return result.identity.user.username


@pytest.mark.parametrize("new_subject", ["another name", "the same name (re-keyed)"])
async def test_during_a_rotation_both_cas_certificates_sign_in_and_only_the_new_ca_issues(
    start_auth_server: StartAuth, tmp_path: Path, new_subject: str
) -> None:
    """With the old CA in ``previous_cert_files``, its certificates map; without it, not.

    A re-keyed CA keeping its name is told apart by the signature, not the issuer name.
    """
    old_ca = trustme.CA(organization_name="bugless people CA", organization_unit_name="2025")
    new_ca = trustme.CA(
        organization_name="bugless people CA",
        organization_unit_name="2025" if new_subject.startswith("the same") else "2026",
    )
    old_cert, old_key = _ca_files(tmp_path, old_ca, "people-ca-2025")
    new_cert, new_key = _ca_files(tmp_path, new_ca, "people-ca-2026")
    before = await start_auth_server(
        authenticators=("local",), people_ca=PeopleCaSettings(cert_file=old_cert, key_file=old_key)
    )
    name = unique("dana")
    token = await new_user_token(before, name)
    old, old_spare = await _issue(before, token, "laptop"), await _issue(before, token, "desk")

    schema = before.settings.schema
    during = await start_auth_server(
        schema=schema,
        authenticators=("local",),
        people_ca=PeopleCaSettings(
            cert_file=new_cert, key_file=new_key, previous_cert_files=(old_cert,)
        ),
    )
    new = await _issue(during, token, "laptop")
    signed = x509.load_pem_x509_certificate(new.certificate_pem.encode())
    signed.verify_directly_issued_by(x509.load_pem_x509_certificate(new_ca.cert_pem.bytes()))
    assert [await _username(during, c) for c in (old, new)] == [name, name]
    # `bugless logout` with an old certificate revokes it, as before the rotation.
    revoked = await during.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(
            presented_certificate_der=certificate_der(old_spare.certificate_pem)
        )
    )
    assert revoked.serial == old_spare.serial
    error = await expect_status(
        during.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(
                certificate_der=certificate_der(old_spare.certificate_pem)
            )
        ),
        Status.UNAUTHENTICATED,
    )
    assert "revoked" in (error.message or "")

    after = await start_auth_server(
        schema=schema,
        authenticators=("local",),
        people_ca=PeopleCaSettings(cert_file=new_cert, key_file=new_key),
    )
    refused = await expect_status(
        after.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=certificate_der(old.certificate_pem))
        ),
        Status.UNAUTHENTICATED,
    )
    assert from_grpc_error(refused).reason == "CERTIFICATE_UNTRUSTED"
    assert "is not a people CA this Authenticator trusts" in (refused.message or "")
    assert await _username(after, new) == name


async def test_a_replaced_people_ca_without_overlap_ends_the_old_ones_certificates(
    start_auth_server: StartAuth, people_ca_settings: PeopleCaSettings, tmp_path: Path
) -> None:
    """Replaced with no ``previous_cert_files``: every certificate of the old CA signs nobody in.

    The password sign-in's session goes on (it hangs on the token keys) and
    the new CA issues at once; the session an old certificate's connections
    shared ends at its refusal (before, it stayed live until it expired).
    """
    before = await start_auth_server(authenticators=("local",), people_ca=people_ca_settings)
    name = unique("carol")
    token = await new_user_token(before, name)
    old = await _issue(before, token, "laptop")
    connected = await before.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=certificate_der(old.certificate_pem))
    )
    replacement = trustme.CA(organization_name="bugless people CA 2")
    cert, key = _ca_files(tmp_path, replacement, "people-ca-2")
    after = await start_auth_server(
        schema=before.settings.schema,
        authenticators=("local",),
        people_ca=PeopleCaSettings(cert_file=cert, key_file=key),
    )
    refused = await expect_status(
        after.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=certificate_der(old.certificate_pem))
        ),
        Status.UNAUTHENTICATED,
    )
    assert from_grpc_error(refused).reason == "CERTIFICATE_UNTRUSTED"
    assert "is not a people CA this Authenticator trusts" in (refused.message or "")
    ended = await expect_status(
        after.stub.validate_token(v1.ValidateTokenRequest(token=connected.token)),
        Status.UNAUTHENTICATED,
    )
    assert "ended" in (ended.message or "")
    await after.stub.validate_token(v1.ValidateTokenRequest(token=token))
    new = await _issue(after, token, "laptop")
    issuer = x509.load_pem_x509_certificate(new.certificate_pem.encode()).issuer
    assert issuer == x509.load_pem_x509_certificate(replacement.cert_pem.bytes()).subject
    assert await _username(after, new) == name


def test_an_earlier_ca_without_a_current_one_is_refused(tmp_path: Path) -> None:
    cert, _ = _ca_files(tmp_path, trustme.CA(), "old")
    with pytest.raises(ValueError, match="--people-ca-previous-cert needs --people-ca-cert"):
        PeopleCaSettings(previous_cert_files=(cert,))


async def test_the_current_ca_listed_as_an_earlier_one_is_refused_at_start(
    start_auth_server: StartAuth, people_ca_settings: PeopleCaSettings, tmp_path: Path
) -> None:
    """Say the old CA's Secret was overwritten with the new CA: the overlap would be none."""
    assert people_ca_settings.cert_file is not None
    copy = tmp_path / "previous.pem"
    copy.write_bytes(people_ca_settings.cert_file.read_bytes())
    with pytest.raises(ValueError, match=r"previous\.pem is the current people CA"):
        await start_auth_server(
            people_ca=PeopleCaSettings(
                cert_file=people_ca_settings.cert_file,
                key_file=people_ca_settings.key_file,
                previous_cert_files=(copy,),
            )
        )


async def test_an_earlier_ca_file_that_is_no_ca_is_refused_at_start(
    start_auth_server: StartAuth, people_ca_settings: PeopleCaSettings, tmp_path: Path
) -> None:
    leaf = tmp_path / "leaf.pem"
    trustme.CA().issue_cert("bot.invalid").cert_chain_pems[0].write_to_path(str(leaf))
    with pytest.raises(ValueError, match=r"leaf\.pem: not a CA certificate"):
        await start_auth_server(
            people_ca=PeopleCaSettings(
                cert_file=people_ca_settings.cert_file,
                key_file=people_ca_settings.key_file,
                previous_cert_files=(leaf,),
            )
        )


async def test_the_incoming_ca_listed_first_maps_its_certificates_before_anything_uses_it(
    start_auth_server: StartAuth, tmp_path: Path
) -> None:
    """The README's step 2: the new CA listed in ``previous_cert_files`` beside the
    current one, so the API and every replica trust it before the swap. A replica
    still at that step maps a certificate a swapped replica already issued, and
    issues from the current CA only."""
    old_ca = trustme.CA(organization_name="bugless people CA", organization_unit_name="2025")
    new_ca = trustme.CA(organization_name="bugless people CA", organization_unit_name="2026")
    old_cert, old_key = _ca_files(tmp_path, old_ca, "people-ca-2025")
    new_cert, new_key = _ca_files(tmp_path, new_ca, "people-ca-2026")
    step_2 = await start_auth_server(
        authenticators=("local",),
        people_ca=PeopleCaSettings(
            cert_file=old_cert, key_file=old_key, previous_cert_files=(new_cert,)
        ),
    )
    swapped = await start_auth_server(
        schema=step_2.settings.schema,
        authenticators=("local",),
        people_ca=PeopleCaSettings(
            cert_file=new_cert, key_file=new_key, previous_cert_files=(old_cert,)
        ),
    )
    name = unique("erin")
    token = await new_user_token(step_2, name)
    from_step_2 = await _issue(step_2, token, "desk")
    from_swapped = await _issue(swapped, token, "laptop")
    x509.load_pem_x509_certificate(from_step_2.certificate_pem.encode()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(old_ca.cert_pem.bytes())
    )
    for server in (step_2, swapped):
        assert [await _username(server, c) for c in (from_step_2, from_swapped)] == [name, name]
