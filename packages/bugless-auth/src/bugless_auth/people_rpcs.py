"""The Authenticator's people CA calls (issue 19), mixed into its servicer.

Each call checks its input's shape here and leaves the decisions to
:class:`~bugless_auth.people.PeopleCertificates` and the service: who the
token's person is, and whether they may act on another person's
certificates (``manage_users``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_auth.people import certificate_message, check_owner
from bugless_auth.people_ca import MAX_CSR_BYTES, person_of
from bugless_auth.policy import MANAGE_USERS
from bugless_auth.tls import parse_certificate
from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied
from bugless_core.grpc import current_identity, grpc_errors
from bugless_core.usernames import username_key
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_auth.service import AuthService

#: The longest token (session, flow state, page) any Authenticator call takes.
MAX_TOKEN = 8192
#: The longest DER certificate any Authenticator call takes (a certificate is
#: 1-2 KiB; AuthenticateCertificate and the people calls answer the same).
MAX_CERTIFICATE = 64 * 1024


def check_length(value: str | bytes, field: str, limit: int) -> None:
    """Refuse a field longer than ``limit`` before any work is done with it.

    Raises:
        InvalidArgument: Naming the field, its limit and its length.
    """
    if len(value) > limit:
        unit = "bytes" if isinstance(value, bytes) else "characters"
        raise InvalidArgument(f"{field}: at most {limit} {unit}, got {len(value)}")


class PeopleRpcs:
    """``IssuePersonCertificate`` … ``PollDeviceLogin`` of ``bugless.v1.Authenticator``."""

    service: AuthService

    @grpc_errors
    async def issue_person_certificate(
        self, message: v1.IssuePersonCertificateRequest
    ) -> v1.PersonCertificate:
        """Sign the signed-in person's CSR (the private key stayed on their machine)."""
        check_length(message.token, "token", MAX_TOKEN)
        check_length(message.csr_pem, "csr_pem", MAX_CSR_BYTES)
        _, person = await self.service.caller_record(message.token)
        return await self.service.people.issue(
            person,
            message.csr_pem,
            seconds=message.validity_seconds,
            label=message.label,
            source="web",
        )

    @grpc_errors
    async def list_person_certificates(
        self, message: v1.ListPersonCertificatesRequest
    ) -> v1.ListPersonCertificatesResponse:
        """The caller's certificates, or another person's with manage_users."""
        identity, person = await self.service.caller_record(message.token)
        if message.username and username_key(message.username) != username_key(person.username):
            if not self.service.may(identity, MANAGE_USERS):
                raise NotFound(f"username: no certificates of {message.username!r} you may see")
            found = await self.service.store.users_by_usernames([message.username])
            if not found:
                raise NotFound(f"username: no bugless user is called {message.username!r}")
            person = found[0]
        rows = await self.service.people.list(
            person.user_id, include_inactive=message.include_inactive
        )
        return v1.ListPersonCertificatesResponse(
            certificates=[certificate_message(row, person.username) for row in rows]
        )

    @grpc_errors
    async def revoke_person_certificate(
        self, message: v1.RevokePersonCertificateRequest
    ) -> v1.PersonCertificate:
        """Revoke by serial (owner or manage_users), or the certificate the API was shown."""
        if message.presented_certificate_der:
            # Possession was proven in the API's TLS handshake: only the API
            # may send this field (plaintext --insecure-local trusts everyone).
            if current_identity() not in (None, "api"):
                raise PermissionDenied(
                    "presented_certificate_der: only the API, which verified possession of the "
                    "certificate in its TLS handshake, may revoke by certificate"
                )
            presented = message.presented_certificate_der
            check_length(presented, "presented_certificate_der", MAX_CERTIFICATE)
            cert = parse_certificate(message.presented_certificate_der)
            found = await self.service.people.person(cert)
            if found is None or person_of(cert) is None:
                raise InvalidArgument(
                    "presented_certificate_der: not a people CA certificate (a bot's certificate "
                    "is revoked by its operator)"
                )
            person = await self.service.record_of(found.user_id)
            row = await self.service.people.revoke(
                found.serial, by=f"{person.username} ({person.user_id})", reason="logged out"
            )
            return certificate_message(row, person.username)
        if not message.serial:
            raise InvalidArgument("serial: required (see ListPersonCertificates)")
        check_length(message.serial, "serial", 64)
        identity, person = await self.service.caller_record(message.token)
        row = await self.service.people.get(message.serial)
        check_owner(person.user_id, row, may_manage=self.service.may(identity, MANAGE_USERS))
        mine = row["user_id"] == person.user_id
        row = await self.service.people.revoke(
            row["serial"],
            by=f"{person.username} ({person.user_id})",
            reason="revoked by its owner" if mine else "revoked by an administrator",
        )
        owner = person if mine else await self.service.record_of(row["user_id"])
        return certificate_message(row, owner.username)

    @grpc_errors
    async def start_device_login(
        self, message: v1.StartDeviceLoginRequest
    ) -> v1.StartDeviceLoginResponse:
        """A device code for the CLI and a user code for the person to approve."""
        check_length(message.csr_pem, "csr_pem", MAX_CSR_BYTES)
        check_length(message.client_address, "client_address", 200)
        throttle = self.service.throttle
        await throttle.check_device_start(message.client_address)
        started = await self.service.people.start_device_login(
            message.csr_pem,
            label=message.label,
            client_address=message.client_address,
            seconds=message.validity_seconds,
        )
        await throttle.device_started(message.client_address)
        return started

    @grpc_errors
    async def get_device_login(self, message: v1.GetDeviceLoginRequest) -> v1.DeviceLogin:
        """What the signed-in person is asked to approve."""
        await self.service.caller_record(message.token)
        return await self.service.people.get_device_login(message.user_code)

    @grpc_errors
    async def approve_device_login(self, message: v1.ApproveDeviceLoginRequest) -> v1.DeviceLogin:
        """Approve (sign the device's CSR for the caller) or deny a device login."""
        _, person = await self.service.caller_record(message.token)
        return await self.service.people.decide_device_login(
            person, message.user_code, deny=message.deny
        )

    @grpc_errors
    async def poll_device_login(
        self, message: v1.PollDeviceLoginRequest
    ) -> v1.PollDeviceLoginResponse:
        """The device login's state; the certificate once, when approved."""
        check_length(message.device_code, "device_code", 200)

        async def username_of(user_id: str) -> str:
            return (await self.service.record_of(user_id)).username

        return await self.service.people.poll_device_login(message.device_code, username_of)
