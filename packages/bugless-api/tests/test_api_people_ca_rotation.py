"""Replacing the people CA, seen by a person calling the API over mutual TLS.

Real processes on the session's stack: Authenticators (``bugless auth serve``)
before, during and after the rotation on the stack's database, and an API
(``bugless api serve``) in front of each whose client CA bundle holds the
bot CA and both people CAs, as the operator's rotation steps have it
(packages/bugless-auth/README.md, "Replacing the people CA"). Each person's
certificate comes from their own CSR, and each call is a real TLS handshake
with it.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core.grpc import build_client_ssl_context
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1

PASSWORD = "rotation-password-1"


def _ca_files(directory: Path, stem: str) -> tuple[Path, Path]:
    ca = trustme.CA(organization_name="bugless people CA", organization_unit_name=stem)
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    return cert, key


def _people_ca_env(cert: Path, key: Path, *, previous: Path | None = None) -> dict[str, str]:
    """An Authenticator's people CA, as the chart sets it."""
    env = {"BUGLESS_AUTH_PEOPLE_CA_CERT": str(cert), "BUGLESS_AUTH_PEOPLE_CA_KEY": str(key)}
    if previous is not None:
        env["BUGLESS_AUTH_PEOPLE_CA_PREVIOUS_CERTS"] = str(previous)
    return env


async def _certificate(
    auth: RunningService, token: str, directory: Path, stem: str
) -> tuple[Path, Path]:
    """A person's certificate and key files: the key made here, its CSR signed by ``auth``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    assert auth.address is not None
    channel = auth.address.channel()
    try:
        issued = await v1.AuthenticatorStub(channel).issue_person_certificate(
            v1.IssuePersonCertificateRequest(
                token=token,
                csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
                label=stem,
            ),
            timeout=30,
        )
    finally:
        channel.close()
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_text(issued.certificate_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def _who_am_i(api: RunningService, stack: LocalStack, files: tuple[Path, Path]) -> str:
    context = build_client_ssl_context(stack.pki.ca_file, *files)
    channel = Channel("127.0.0.1", api.port, ssl=context)
    try:
        identity = await v1.AccountStub(channel).who_am_i(v1.WhoAmIRequest(), timeout=30)
    finally:
        channel.close()
    assert identity.user is not None
    return identity.user.username


async def _sign_in(auth: RunningService, username: str) -> str:
    assert auth.address is not None
    channel = auth.address.channel()
    try:
        result = await v1.AuthenticatorStub(channel).authenticate_password(
            v1.AuthenticatePasswordRequest(username=username, password=PASSWORD), timeout=30
        )
    finally:
        channel.close()
    return result.token


async def test_the_api_accepts_both_cas_people_during_a_rotation_and_the_old_ones_not_after(
    bugless_stack: LocalStack, tmp_path: Path
) -> None:
    """The overlap is the Authenticator's ``--people-ca-previous-cert``, nothing else.

    The API trusts both CAs throughout, so the refusal after the old CA is
    dropped from the Authenticator is the Authenticator's, not the handshake's.
    """
    stack = bugless_stack
    old_cert, old_key = _ca_files(tmp_path, "people-ca-2025")
    new_cert, new_key = _ca_files(tmp_path, "people-ca-2026")
    bundle = tmp_path / "api-client-ca.pem"
    bundle.write_bytes(b"".join(f.read_bytes() for f in (stack.pki.ca_file, old_cert, new_cert)))
    username = "rotating-person"
    await asyncio.to_thread(stack.add_user, username, PASSWORD)

    def start(name: str, env: dict[str, str]) -> tuple[RunningService, RunningService]:
        auth = stack.start("auth", ["auth", "serve", "--port", "0"], name=name, env=env)
        api = stack.start_api(
            "--auth", f"127.0.0.1:{auth.port}", "--client-ca", str(bundle), name=f"api-{name}"
        )
        return auth, api

    started: list[RunningService] = []
    try:
        # Before: the old CA signs a person's certificate.
        before = await asyncio.to_thread(
            stack.start,
            "auth",
            ["auth", "serve", "--port", "0"],
            name="auth-ca-2025",
            env=_people_ca_env(old_cert, old_key),
        )
        started.append(before)
        old = await _certificate(before, await _sign_in(before, username), tmp_path, "old")

        # During: the new CA signs, the old one is still trusted.
        during = await asyncio.to_thread(
            start,
            "auth-ca-2026-overlap",
            _people_ca_env(new_cert, new_key, previous=old_cert),
        )
        started += during
        new = await _certificate(during[0], await _sign_in(during[0], username), tmp_path, "new")
        issuer = x509.load_pem_x509_certificate(new[0].read_bytes()).issuer
        assert issuer == x509.load_pem_x509_certificate(new_cert.read_bytes()).subject
        assert [await _who_am_i(during[1], stack, c) for c in (old, new)] == [username] * 2

        # After: the old CA is removed from the Authenticator.
        after = await asyncio.to_thread(
            start,
            "auth-ca-2026",
            _people_ca_env(new_cert, new_key),
        )
        started += after
        with pytest.raises(GRPCError) as refused:
            await _who_am_i(after[1], stack, old)
        assert refused.value.status is Status.UNAUTHENTICATED
        # Told why, and the fix: the person's own certificate, not a mapping.
        assert "is a person's certificate, but its issuer" in (refused.value.message or "")
        assert "run `bugless login` for a new one" in (refused.value.message or "")
        assert await _who_am_i(after[1], stack, new) == username
    finally:
        for service in reversed(started):
            await asyncio.to_thread(stack.stop_service, service)


async def test_the_apis_people_ca_setting_trusts_each_listed_ca_and_no_other(
    bugless_stack: LocalStack, tmp_path: Path
) -> None:
    """The people CAs reach the API's handshake as a setting of their own, no bundle edited.

    ``--client-ca`` holds the stack's CA alone (bots, services); the people
    CAs are ``--people-ca-cert``, as the chart sets ``BUGLESS_API_PEOPLE_CA_CERTS``
    from ``auth.peopleCa``. During the overlap (new CA and the old one listed)
    a certificate of either calls the API; with the old CA no longer listed,
    its certificate is refused by the TLS handshake itself, before any call,
    while the new CA's still works. Before the setting existed, the only way
    was a bundle concatenated by hand.
    """
    stack = bugless_stack
    old_cert, old_key = _ca_files(tmp_path, "people-ca-2025")
    new_cert, new_key = _ca_files(tmp_path, "people-ca-2026")
    username = "person-of-two-cas"
    await asyncio.to_thread(stack.add_user, username, PASSWORD)

    def start_api(name: str, auth: RunningService, *people_cas: Path) -> RunningService:
        flags = [arg for ca in people_cas for arg in ("--people-ca-cert", str(ca))]
        return stack.start_api(
            "--auth",
            f"127.0.0.1:{auth.port}",
            "--client-ca",
            str(stack.pki.ca_file),
            *flags,
            name=name,
        )

    started: list[RunningService] = []
    try:
        before = await asyncio.to_thread(
            stack.start,
            "auth",
            ["auth", "serve", "--port", "0"],
            name="auth-people-2025",
            env=_people_ca_env(old_cert, old_key),
        )
        started.append(before)
        old = await _certificate(before, await _sign_in(before, username), tmp_path, "old")
        overlap = await asyncio.to_thread(
            stack.start,
            "auth",
            ["auth", "serve", "--port", "0"],
            name="auth-people-2026",
            env=_people_ca_env(new_cert, new_key, previous=old_cert),
        )
        started.append(overlap)
        new = await _certificate(overlap, await _sign_in(overlap, username), tmp_path, "new")

        during = await asyncio.to_thread(start_api, "api-people-both", overlap, new_cert, old_cert)
        started.append(during)
        assert [await _who_am_i(during, stack, c) for c in (old, new)] == [username] * 2

        after = await asyncio.to_thread(start_api, "api-people-new", overlap, new_cert)
        started.append(after)
        assert await _who_am_i(after, stack, new) == username
        # TLS 1.3: the server refuses the certificate after the client's last
        # handshake message, so the client sees the connection cut, no status.
        with pytest.raises((ssl.SSLError, ConnectionError, StreamTerminatedError)):
            await _who_am_i(after, stack, old)
    finally:
        for service in reversed(started):
            await asyncio.to_thread(stack.stop_service, service)
