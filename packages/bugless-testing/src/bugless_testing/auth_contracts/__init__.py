"""The conformance suite for Authenticator backends: one contract class per kind.

A backend's tests enable the plugin, provide one fixture and subclass::

    # conftest.py
    pytest_plugins = ["bugless_testing.auth_contracts.plugin"]

    # test_conformance.py
    @pytest.fixture
    async def password_backend_case() -> PasswordBackendCase:
        ...  # an open backend and one account it knows

    class TestLdapPasswords(PasswordBackendContract): ...

The contracts talk to the backend through its ABC (the service around it is
tested over gRPC by bugless-auth); they pin what the service relies on: who a
subject is, that a wrong, empty or unknown credential is ``None`` and never an
exception, and that an unknown user costs as long as a wrong password.
"""

from __future__ import annotations

from bugless_testing.auth_contracts._certificate import (
    CertificateBackendCase,
    CertificateBackendContract,
)
from bugless_testing.auth_contracts._password import (
    PasswordBackendCase,
    PasswordBackendContract,
)

__all__ = [
    "CertificateBackendCase",
    "CertificateBackendContract",
    "PasswordBackendCase",
    "PasswordBackendContract",
]
