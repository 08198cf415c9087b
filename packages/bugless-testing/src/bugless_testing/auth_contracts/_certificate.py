"""Contracts every certificate backend keeps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bugless_core.auth_backend import AuthenticatorKind, CertificateAuthenticator
from bugless_core.errors import InvalidArgument


@dataclass(frozen=True)
class CertificateBackendCase:
    """A certificate backend under test and certificates (DER) for it.

    Attributes:
        backend: The open backend.
        mapped: A certificate the backend maps.
        username: Who ``mapped`` must be.
        groups: Groups the identity must include.
        unmapped: A valid certificate whose subject is not mapped.
        foreign: A certificate with a mapped subject from a CA the backend
            does not trust (``None`` when the backend does not check issuers).
    """

    backend: CertificateAuthenticator
    mapped: bytes
    username: str
    unmapped: bytes
    groups: tuple[str, ...] = ()
    foreign: bytes | None = None


class CertificateBackendContract:
    """Mapped, unmapped, foreign and malformed certificates."""

    def test_declares_the_certificate_kind(
        self, certificate_backend_case: CertificateBackendCase
    ) -> None:
        assert certificate_backend_case.backend.kind is AuthenticatorKind.CERTIFICATE

    async def test_mapped_certificate_returns_the_identity(
        self, certificate_backend_case: CertificateBackendCase
    ) -> None:
        case = certificate_backend_case
        identity = await case.backend.authenticate(case.mapped)
        assert identity is not None
        assert identity.username == case.username
        assert identity.subject
        assert set(case.groups) <= set(identity.groups)
        again = await case.backend.authenticate(case.mapped)
        assert again is not None
        assert again.subject == identity.subject

    async def test_unmapped_certificate_returns_none(
        self, certificate_backend_case: CertificateBackendCase
    ) -> None:
        case = certificate_backend_case
        assert await case.backend.authenticate(case.unmapped) is None

    async def test_certificate_from_an_untrusted_ca_returns_none(
        self, certificate_backend_case: CertificateBackendCase
    ) -> None:
        case = certificate_backend_case
        if case.foreign is None:
            pytest.fail("provide `foreign` (a mapped subject signed by another CA)")
        assert await case.backend.authenticate(case.foreign) is None

    async def test_malformed_certificate_is_invalid_argument(
        self, certificate_backend_case: CertificateBackendCase
    ) -> None:
        with pytest.raises(InvalidArgument):
            await certificate_backend_case.backend.authenticate(b"not a certificate")
