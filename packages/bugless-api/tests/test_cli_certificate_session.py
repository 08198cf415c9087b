"""A person's `bugless` commands share one session on their Sessions page.

Before, the API's ``AuthenticateCertificate`` of each new connection recorded
a session of its own, so every command added a 12-hour row. Real processes
on the session's stack: an Authenticator with a people CA, an API in front
of it trusting that CA, and the real ``bugless`` CLI run as a subprocess
with the person's certificate (its key made here, its CSR signed by the
Authenticator).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1

PASSWORD = "one-session-password-1"


async def _issue(auth: v1.AuthenticatorStub, token: str, directory: Path) -> tuple[str, Path, Path]:
    """A people certificate for the token's person: serial, certificate and key files."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    issued = await auth.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=pem, label="laptop"), timeout=30
    )
    cert_file, key_file = directory / "person.crt", directory / "person.key"
    cert_file.write_text(issued.certificate_pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return issued.serial, cert_file, key_file


async def test_commands_with_one_certificate_leave_one_session_and_revoking_it_refuses_them(
    bugless_stack: LocalStack, tmp_path: Path
) -> None:
    stack = bugless_stack
    ca = trustme.CA(organization_name="bugless people CA")
    ca_cert, ca_key = tmp_path / "people-ca.pem", tmp_path / "people-ca.key"
    ca.cert_pem.write_to_path(str(ca_cert))
    ca.private_key_pem.write_to_path(str(ca_key))
    bundle = tmp_path / "api-client-ca.pem"
    bundle.write_bytes(stack.pki.ca_file.read_bytes() + ca_cert.read_bytes())
    username = "one-session-person"
    await asyncio.to_thread(stack.add_user, username, PASSWORD)
    started: list[RunningService] = []
    try:
        auth_service = await asyncio.to_thread(
            stack.start,
            "auth",
            ["auth", "serve", "--port", "0"],
            name="auth-one-session",
            env={
                "BUGLESS_AUTH_PEOPLE_CA_CERT": str(ca_cert),
                "BUGLESS_AUTH_PEOPLE_CA_KEY": str(ca_key),
            },
        )
        started.append(auth_service)
        api = await asyncio.to_thread(
            stack.start_api,
            "--auth",
            f"127.0.0.1:{auth_service.port}",
            "--client-ca",
            str(bundle),
            name="api-one-session",
        )
        started.append(api)
        assert auth_service.address is not None
        channel = auth_service.address.channel()
        try:
            auth = v1.AuthenticatorStub(channel)
            signed_in = await auth.authenticate_password(
                v1.AuthenticatePasswordRequest(username=username, password=PASSWORD), timeout=30
            )
            serial, cert_file, key_file = await _issue(auth, signed_in.token, tmp_path)

            def whoami() -> tuple[int, str]:
                done = stack.run_bugless(
                    "whoami",
                    "--api",
                    f"127.0.0.1:{api.port}",
                    "--cert",
                    str(cert_file),
                    "--key",
                    str(key_file),
                    "--ca",
                    str(stack.pki.ca_file),
                    "--json",
                    check=False,
                )
                return done.returncode, done.stdout + done.stderr

            async def certificate_sessions() -> list[v1.Session]:
                listed = await auth.list_sessions(
                    v1.ListSessionsRequest(token=signed_in.token), timeout=30
                )
                return [s for s in listed.sessions if s.authenticator == "people-ca"]

            for _ in range(3):
                code, output = await asyncio.to_thread(whoami)
                assert code == 0, output
                assert username in output
            assert len(await certificate_sessions()) == 1

            await auth.revoke_person_certificate(
                v1.RevokePersonCertificateRequest(token=signed_in.token, serial=serial),
                timeout=30,
            )
            assert await certificate_sessions() == []  # revoking ended it
            code, output = await asyncio.to_thread(whoami)
            assert code != 0
            assert "revoked" in output, output
            assert await certificate_sessions() == []
        finally:
            channel.close()
    finally:
        for service in reversed(started):
            await asyncio.to_thread(stack.stop_service, service)
