"""An operator locks a compromised account out without disabling it, with two commands.

``bugless auth user sessions USER --end-all`` ends the sessions, but a
`bugless login` certificate still valid opened a new one at its next API
connection; ``bugless auth user certificates USER --revoke-all`` revokes it.
Real processes on the session's stack: an Authenticator with a people CA, an
API in front of it trusting that CA, the person's certificate (key made here,
CSR signed by the Authenticator) on a real mutual-TLS connection, and the
real ``bugless`` CLI as the operator runs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_core.errors import Unauthenticated
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1

PASSWORD = "lockout-password-1"
NEW_PASSWORD = "lockout-password-2-changed"
#: How late an open connection may notice: the Model's --assertion-refresh-seconds
#: (5 s by default, the stack's) is the documented bound; the rest is a loaded machine.
OPEN_CONNECTION_BOUND = 5.0 + 10.0


async def _issue(auth: v1.AuthenticatorStub, token: str, directory: Path) -> tuple[Path, Path]:
    """A people certificate for the token's person: its certificate and key files."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    issued = await auth.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=pem, label="stolen laptop"),
        timeout=30,
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
    return cert_file, key_file


async def test_ending_sessions_and_revoking_certificates_locks_a_person_out_not_disabled(
    bugless_stack: LocalStack, tmp_path: Path
) -> None:
    stack = bugless_stack
    ca = trustme.CA(organization_name="bugless people CA")
    ca_cert, ca_key = tmp_path / "people-ca.pem", tmp_path / "people-ca.key"
    ca.cert_pem.write_to_path(str(ca_cert))
    ca.private_key_pem.write_to_path(str(ca_key))
    bundle = tmp_path / "api-client-ca.pem"
    bundle.write_bytes(stack.pki.ca_file.read_bytes() + ca_cert.read_bytes())
    username = "lockout-person"
    await asyncio.to_thread(stack.add_user, username, PASSWORD)
    started: list[RunningService] = []
    try:
        auth_service = await asyncio.to_thread(
            stack.start,
            "auth",
            ["auth", "serve", "--port", "0"],
            name="auth-lockout",
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
            name="api-lockout",
        )
        started.append(api)
        assert auth_service.address is not None
        channel = auth_service.address.channel()
        try:
            auth = v1.AuthenticatorStub(channel)
            signed_in = await auth.authenticate_password(
                v1.AuthenticatePasswordRequest(username=username, password=PASSWORD), timeout=30
            )
            cert_file, key_file = await _issue(auth, signed_in.token, tmp_path)

            def client() -> BuglessClient:
                return BuglessClient(
                    f"127.0.0.1:{api.port}",
                    cert=cert_file,
                    key=key_file,
                    ca=stack.pki.ca_file,
                    timeout=30,
                    retry=RetryPolicy(attempts=1),
                )

            held = client()  # the intruder's open connection
            try:
                who = (await held.whoami()).user
                assert who is not None
                assert who.username == username
                await held.list_hotlists()  # a Model call goes through

                # The operator: a new password, then the two commands.
                await asyncio.to_thread(
                    stack.run_bugless,
                    *("auth", "user", "set-password", username, "--password-stdin"),
                    input_text=NEW_PASSWORD + "\n",
                )
                ended = json.loads(
                    (
                        await asyncio.to_thread(
                            stack.run_bugless,
                            *("auth", "user", "sessions", username, "--end-all", "--json"),
                        )
                    ).stdout
                )
                assert ended["sessions_ended"] >= 2  # the web's and the certificate's
                assert ended["sessions"] == []
                revoked_at = time.monotonic()
                revoked = json.loads(
                    (
                        await asyncio.to_thread(
                            stack.run_bugless,
                            *("auth", "user", "certificates", username, "--revoke-all", "--json"),
                        )
                    ).stdout
                )
                assert revoked["certificates_revoked"] == 1
                [listed] = revoked["certificates"]
                assert listed["state"] == "revoked"
                assert listed["revoked_reason"] == "revoked with bugless auth user certificates"
                assert listed["last_used_at"] is not None  # the connection above used it

                # The open connection's next Model call, within the bound.
                refused: Unauthenticated | None = None
                while refused is None:
                    try:
                        await held.list_hotlists()
                    except Unauthenticated as exc:
                        refused = exc
                    else:
                        assert time.monotonic() - revoked_at < OPEN_CONNECTION_BOUND
                        await asyncio.sleep(0.25)
                assert "revoked" in refused.message, refused.message
            finally:
                held.close()

            # A new connection with it is refused at once.
            fresh = client()
            try:
                with pytest.raises(Unauthenticated, match="revoked"):
                    await fresh.whoami()
            finally:
                fresh.close()

            # The web session is gone; the account is not disabled: the person
            # signs in with the new password (the old one is refused).
            with pytest.raises(GRPCError) as ended_token:
                await auth.validate_token(
                    v1.ValidateTokenRequest(token=signed_in.token), timeout=30
                )
            assert ended_token.value.status is Status.UNAUTHENTICATED
            with pytest.raises(GRPCError) as old_password:
                await auth.authenticate_password(
                    v1.AuthenticatePasswordRequest(username=username, password=PASSWORD),
                    timeout=30,
                )
            assert old_password.value.status is Status.UNAUTHENTICATED
            again = await auth.authenticate_password(
                v1.AuthenticatePasswordRequest(username=username, password=NEW_PASSWORD),
                timeout=30,
            )
            assert again.token
            shown = await asyncio.to_thread(
                stack.run_bugless, "auth", "user", "certificates", username
            )
            assert shown.stdout.split()[1] == "revoked"
        finally:
            channel.close()
    finally:
        for service in reversed(started):
            await asyncio.to_thread(stack.stop_service, service)
