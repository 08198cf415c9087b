"""The pytest plugin of the authenticator contracts: the fixtures a backend must provide.

Each default fixture fails with instructions, so a test file that subclasses a
contract without providing its case says what is missing instead of erroring
on an unknown fixture name.
"""

from __future__ import annotations

import pytest

from bugless_testing.auth_contracts._certificate import CertificateBackendCase
from bugless_testing.auth_contracts._password import PasswordBackendCase


@pytest.fixture
def password_backend_case() -> PasswordBackendCase:
    """The password backend under test and an account it knows: override it."""
    msg = (
        "define a `password_backend_case` fixture returning a PasswordBackendCase "
        "(an open PasswordAuthenticator and one account it knows)"
    )
    raise pytest.UsageError(msg)


@pytest.fixture
def certificate_backend_case() -> CertificateBackendCase:
    """The certificate backend under test and certificates for it: override it."""
    msg = (
        "define a `certificate_backend_case` fixture returning a CertificateBackendCase "
        "(an open CertificateAuthenticator, a mapped and an unmapped certificate)"
    )
    raise pytest.UsageError(msg)
