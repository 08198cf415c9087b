"""The people CA: certificates for people from their own CSRs; listing, revocation, device login."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.people_ca import USER_URI_PREFIX, PeopleCa
from bugless_auth.settings import PeopleCaSettings
from bugless_proto import v1

DeviceState = v1.DeviceLoginState


@pytest.fixture
async def people(start_auth_server: StartAuth, people_ca_settings: PeopleCaSettings) -> AuthServer:
    return await start_auth_server(authenticators=("local",), people_ca=people_ca_settings)


async def test_a_person_gets_a_certificate_named_by_their_id_and_signs_in_with_it(
    people: AuthServer,
) -> None:
    name = unique("alice")
    token = await new_user_token(people, name)
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), label="laptop")
    )
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    user_id = issued.user_id
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [USER_URI_PREFIX + user_id]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3600 <= lifetime.total_seconds() <= 3600 + 61  # the default, backdated a minute
    assert issued.serial == format(cert.serial_number, "x")

    # No mapping file and no tls backend: the people CA's certificates map by user id.
    result = await people.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=certificate_der(issued.certificate_pem))
    )
    assert result.identity is not None
    assert result.identity.user is not None
    assert (result.identity.user.user_id, result.identity.user.username) == (user_id, name)

    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token)
    )
    assert [(c.serial, c.label, c.source) for c in listed.certificates] == [
        (issued.serial, "laptop", "web")
    ]
    assert all(not c.certificate_pem for c in listed.certificates)  # only at issuance


@pytest.mark.parametrize(
    ("csr", "message"),
    [
        (lambda name: person_csr(common_name="admin"), "is not yours"),
        (
            lambda name: person_csr(san=USER_URI_PREFIX + "someone-else"),
            "subject alternative names",
        ),
        (lambda name: person_csr(common_name=name, ca=True), "CA"),
        (lambda name: person_csr(key=rsa.generate_private_key(65537, 1024)), "2048"),
        (lambda name: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "never"),
        (lambda name: "not a csr", "not a PEM certificate signing request"),
        (lambda name: "", "required"),
    ],
)
async def test_a_csr_asking_for_more_than_ones_own_certificate_is_refused(
    people: AuthServer, csr: object, message: str
) -> None:
    name = unique("forger")
    token = await new_user_token(people, name)
    make = csr if callable(csr) else None
    assert make is not None
    error = await expect_status(
        people.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=token, csr_pem=make(name))
        ),
        Status.INVALID_ARGUMENT,
    )
    assert message in (error.message or "")
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token, include_inactive=True)
    )
    assert not listed.certificates  # nothing signed, nothing recorded


async def test_own_common_name_is_accepted_and_lifetimes_are_capped(people: AuthServer) -> None:
    name = unique("capped")
    token = await new_user_token(people, name)
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(
            token=token, csr_pem=person_csr(common_name=name), validity_seconds=10 * 24 * 3600
        )
    )
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 7200 + 61


async def test_a_lifetime_that_is_not_a_number_is_refused_naming_it(people: AuthServer) -> None:
    """Before, NaN passed the checks and failed signing: INTERNAL (a 500 at the web's form)."""
    token = await new_user_token(people, unique("nan"))
    for seconds in (float("nan"), -1.0):
        error = await expect_status(
            people.stub.issue_person_certificate(
                v1.IssuePersonCertificateRequest(
                    token=token, csr_pem=person_csr(), validity_seconds=seconds
                )
            ),
            Status.INVALID_ARGUMENT,
        )
        assert "validity_seconds: " in (error.message or ""), seconds
        assert "is not a number of seconds from 0" in (error.message or ""), seconds
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token, include_inactive=True)
    )
    assert not listed.certificates  # nothing signed, nothing recorded


async def test_an_expired_certificate_signs_nobody_in(people: AuthServer) -> None:
    token = await new_user_token(people, unique("brief"))
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), validity_seconds=5)
    )
    der = certificate_der(issued.certificate_pem)
    # Certificate times are whole seconds: 5 s leaves the first use at least
    # 4 s (2 s left as little as 1 on a loaded machine); then past its end.
    await people.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )
    ends = x509.load_der_x509_certificate(der).not_valid_after_utc
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 1.0)
    error = await expect_status(
        people.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=der)
        ),
        Status.UNAUTHENTICATED,
    )
    assert "expired" in (error.message or "")


async def test_revocation_by_owner_admin_and_disabling(people: AuthServer) -> None:
    owner, other, admin = unique("owner"), unique("other"), unique("root")
    owner_token = await new_user_token(people, owner)
    other_token = await new_user_token(people, other)
    admin_token = await new_user_token(people, admin, groups=("admins",))

    async def issue() -> v1.PersonCertificate:
        return await people.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=owner_token, csr_pem=person_csr())
        )

    async def refused(cert: v1.PersonCertificate) -> None:
        await expect_status(
            people.stub.authenticate_certificate(
                v1.AuthenticateCertificateRequest(
                    certificate_der=certificate_der(cert.certificate_pem)
                )
            ),
            Status.UNAUTHENTICATED,
        )

    first, second, third = await issue(), await issue(), await issue()
    # Someone else can neither see nor revoke it.
    await expect_status(
        people.stub.revoke_person_certificate(
            v1.RevokePersonCertificateRequest(token=other_token, serial=first.serial)
        ),
        Status.NOT_FOUND,
    )
    await expect_status(
        people.stub.list_person_certificates(
            v1.ListPersonCertificatesRequest(token=other_token, username=owner)
        ),
        Status.NOT_FOUND,
    )
    revoked = await people.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(token=owner_token, serial=first.serial)
    )
    assert revoked.revoked_at is not None
    await refused(first)
    # An administrator sees and revokes anyone's.
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=admin_token, username=owner)
    )
    assert {c.serial for c in listed.certificates} == {second.serial, third.serial}
    by_admin = await people.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(token=admin_token, serial=second.serial)
    )
    assert admin in by_admin.revoked_by
    await refused(second)
    # Disabling the person revokes every certificate they have.
    await people.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=owner, disabled=True)
    )
    await refused(third)
    everything = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=admin_token, username=owner, include_inactive=True)
    )
    assert all(c.revoked_at is not None for c in everything.certificates)


async def test_issuance_is_limited_per_person_per_hour(people: AuthServer) -> None:
    token = await new_user_token(people, unique("eager"))
    for _ in range(3):
        await people.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr())
        )
    error = await expect_status(
        people.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr())
        ),
        Status.RESOURCE_EXHAUSTED,
    )
    assert "per hour" in (error.message or "")


async def test_device_login_approved_once_then_delivered_once(people: AuthServer) -> None:
    name = unique("device")
    token = await new_user_token(people, name)
    started = await people.stub.start_device_login(
        v1.StartDeviceLoginRequest(
            csr_pem=person_csr(), label="build box", client_address="192.0.2.4"
        )
    )
    assert len(started.device_code) >= 40
    assert len(started.user_code) == 9
    pending = await people.stub.poll_device_login(
        v1.PollDeviceLoginRequest(device_code=started.device_code)
    )
    assert pending.state == DeviceState.PENDING
    assert not pending.certificate_pem
    shown = await people.stub.get_device_login(
        v1.GetDeviceLoginRequest(token=token, user_code=started.user_code.lower().replace("-", ""))
    )
    assert (shown.label, shown.client_address, shown.state) == (
        "build box",
        "192.0.2.4",
        DeviceState.PENDING,
    )
    approved = await people.stub.approve_device_login(
        v1.ApproveDeviceLoginRequest(token=token, user_code=started.user_code)
    )
    assert approved.state == DeviceState.APPROVED
    await expect_status(
        people.stub.approve_device_login(
            v1.ApproveDeviceLoginRequest(token=token, user_code=started.user_code)
        ),
        Status.FAILED_PRECONDITION,
    )
    delivered = await people.stub.poll_device_login(
        v1.PollDeviceLoginRequest(device_code=started.device_code)
    )
    assert delivered.state == DeviceState.APPROVED
    assert delivered.username == name
    again = await people.stub.poll_device_login(
        v1.PollDeviceLoginRequest(device_code=started.device_code)
    )
    assert again.state == DeviceState.DELIVERED
    assert not again.certificate_pem
    result = await people.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(
            certificate_der=certificate_der(delivered.certificate_pem)
        )
    )
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == name
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token)
    )
    assert [(c.source, c.label) for c in listed.certificates] == [("device", "build box")]


async def test_device_login_denied_or_expired_gives_nothing(people: AuthServer) -> None:
    token = await new_user_token(people, unique("wary"))
    denied = await people.stub.start_device_login(v1.StartDeviceLoginRequest(csr_pem=person_csr()))
    await people.stub.approve_device_login(
        v1.ApproveDeviceLoginRequest(token=token, user_code=denied.user_code, deny=True)
    )
    answer = await people.stub.poll_device_login(
        v1.PollDeviceLoginRequest(device_code=denied.device_code)
    )
    assert answer.state == DeviceState.DENIED
    assert not answer.certificate_pem
    late = await people.stub.start_device_login(v1.StartDeviceLoginRequest(csr_pem=person_csr()))
    await people.store.run(
        lambda conn: conn.execute(
            "UPDATE device_logins SET expires_at = now() - INTERVAL '1 second' "
            "WHERE user_code = $1",
            late.user_code,
        )
    )
    await expect_status(
        people.stub.approve_device_login(
            v1.ApproveDeviceLoginRequest(token=token, user_code=late.user_code)
        ),
        Status.FAILED_PRECONDITION,
    )
    expired = await people.stub.poll_device_login(
        v1.PollDeviceLoginRequest(device_code=late.device_code)
    )
    assert expired.state == DeviceState.EXPIRED
    await expect_status(
        people.stub.poll_device_login(v1.PollDeviceLoginRequest(device_code="guessed")),
        Status.NOT_FOUND,
    )


async def test_revoking_the_presented_certificate(people: AuthServer) -> None:
    token = await new_user_token(people, unique("leaving"))
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr())
    )
    der = certificate_der(issued.certificate_pem)
    revoked = await people.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(presented_certificate_der=der)
    )
    assert revoked.serial == issued.serial
    assert revoked.revoked_at is not None
    await expect_status(
        people.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=der)
        ),
        Status.UNAUTHENTICATED,
    )


async def test_without_a_people_ca_issuance_is_a_clear_refusal(auth: AuthServer) -> None:
    token = await new_user_token(auth, unique("nobody"))
    error = await expect_status(
        auth.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr())
        ),
        Status.FAILED_PRECONDITION,
    )
    assert "no people CA" in (error.message or "")


async def test_a_people_ca_certificate_outside_the_records_acts_as_nobody(
    people: AuthServer, people_ca_settings: PeopleCaSettings
) -> None:
    """One signed with the CA's key but not by the Authenticator (say, naming another id)."""
    victim = await people.add_user(unique("victim"))
    assert people_ca_settings.cert_file is not None
    assert people_ca_settings.key_file is not None
    ca = PeopleCa.load(people_ca_settings.cert_file, people_ca_settings.key_file, max_seconds=3600)
    minted = ca.sign(person_csr(), user_id=victim.user_id, username=victim.username, seconds=600)
    error = await expect_status(
        people.stub.authenticate_certificate(
            v1.AuthenticateCertificateRequest(certificate_der=certificate_der(minted.pem))
        ),
        Status.UNAUTHENTICATED,
    )
    assert "records" in (error.message or "")


async def test_a_bots_certificate_from_the_same_ca_still_goes_to_the_tls_mapping(
    start_auth_server: StartAuth, tmp_path: Path
) -> None:
    """``bugless dev`` uses one CA for bots and people: a bot has no bugless:user: name."""
    ca = trustme.CA()
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    server = await start_auth_server(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {"mapping": '{"deploy-bot": {"username": "deploy-bot"}}', "ca_file": str(cert)}
        },
        people_ca=PeopleCaSettings(cert_file=cert, key_file=key),
    )
    leaf = ca.issue_cert("bot.invalid", common_name="deploy-bot")
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )
    result = await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == "deploy-bot"


async def test_ending_a_certificates_session_ends_that_connection_not_the_certificate(
    people: AuthServer,
) -> None:
    """Ending a people-ca session cuts its connections, not the certificate: it signs in again.

    What the README's sessions section says: ending such a session (EndSession,
    the web's Sessions page) does not stop the machine holding the certificate;
    revoking the certificate does.
    """
    name = unique("erin")
    token = await new_user_token(people, name)
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), label="laptop")
    )
    request = v1.AuthenticateCertificateRequest(
        certificate_der=certificate_der(issued.certificate_pem)
    )
    connection = await people.stub.authenticate_certificate(request)
    listed = await people.stub.list_sessions(v1.ListSessionsRequest(token=token))
    (ended,) = [s for s in listed.sessions if s.authenticator == "people-ca"]

    await people.stub.end_session(v1.EndSessionRequest(token=token, session_id=ended.session_id))

    await expect_status(
        people.stub.validate_token(v1.ValidateTokenRequest(token=connection.token)),
        Status.UNAUTHENTICATED,
    )
    again = await people.stub.authenticate_certificate(request)  # the next connection
    assert again.identity is not None
    assert again.identity.user is not None
    assert again.identity.user.username == name
    listed = await people.stub.list_sessions(v1.ListSessionsRequest(token=token))
    certificate_sessions = [s.session_id for s in listed.sessions if s.kind == "certificate"]
    assert len(certificate_sessions) == 1
    assert ended.session_id not in certificate_sessions
    await people.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(token=token, serial=issued.serial)
    )
    error = await expect_status(
        people.stub.authenticate_certificate(request), Status.UNAUTHENTICATED
    )
    assert "revoked" in (error.message or "")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "RSA keys need at least 2048 bits"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "use an EC key on P-256, P-384 or P-521"),
    ],
)
async def test_device_login_refuses_a_weak_key_at_once(
    people: AuthServer,
    key: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey],
    message: str,
) -> None:
    """The key rule of issuance (``check_csr_key``) applies when the login starts.

    Before, the start checked only the CSR's signature: a login with a key
    no certificate would be issued for was recorded, given a user code to
    show the person, and refused only at approval.
    """
    address = unique("weak-key-device")
    error = await expect_status(
        people.stub.start_device_login(
            v1.StartDeviceLoginRequest(csr_pem=person_csr(key=key()), client_address=address)
        ),
        Status.INVALID_ARGUMENT,
    )
    assert f"csr_pem: {message}" in (error.message or "")
    recorded = await people.store.run(
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM device_logins WHERE client_address = $1", address
        ),
        transaction=False,
    )
    assert recorded == 0


@pytest.mark.parametrize(
    ("label", "named"),
    [
        ("laptop\x1b[2J", "U+001B (a control character)"),
        ("work\rphone", "U+000D (a control character)"),
        ("bell\x07", "U+0007 (a control character)"),
        ("\u202eexe.txt", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ],
)
async def test_a_label_with_a_control_character_is_refused_naming_it(
    people: AuthServer, label: str, named: str
) -> None:
    """A label reaches an operator's terminal (``bugless auth user certificates``).

    Before, ESC, BEL and U+202E were stored as given (CR was made a space):
    listing the person's certificates sent them to the operator's terminal.
    Both ways a label is set refuse it and record nothing.
    """
    token = await new_user_token(people, unique("ctl"))
    error = await expect_status(
        people.stub.issue_person_certificate(
            v1.IssuePersonCertificateRequest(token=token, csr_pem=person_csr(), label=label)
        ),
        Status.INVALID_ARGUMENT,
    )
    assert f"label: {label!r} contains {named}" in (error.message or "")
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token, include_inactive=True)
    )
    assert not listed.certificates

    address = unique("ctl-device")
    error = await expect_status(
        people.stub.start_device_login(
            v1.StartDeviceLoginRequest(csr_pem=person_csr(), label=label, client_address=address)
        ),
        Status.INVALID_ARGUMENT,
    )
    assert f"label: {label!r} contains {named}" in (error.message or "")
    recorded = await people.store.run(
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM device_logins WHERE client_address = $1", address
        ),
        transaction=False,
    )
    assert recorded == 0


async def test_a_label_keeps_its_spaces_made_one(people: AuthServer) -> None:
    """Spaces (no-break ones too) are not refused: runs of them are stored as one."""
    token = await new_user_token(people, unique("spaces"))
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(
            token=token, csr_pem=person_csr(), label="  home\u00a0 laptop é "
        )
    )
    listed = await people.stub.list_person_certificates(
        v1.ListPersonCertificatesRequest(token=token)
    )
    assert [(c.serial, c.label) for c in listed.certificates] == [(issued.serial, "home laptop é")]
