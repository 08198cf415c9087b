"""The LDAP backend keeps the password-backend contract (against the session's slapd)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bugless_auth.ldap import LdapAuthenticator, LdapSettings
from bugless_testing.auth_contracts import PasswordBackendCase, PasswordBackendContract
from bugless_testing.slapd import PEOPLE_DN, READER_DN, READER_PASSWORD, Slapd

# The fixture of slapd.py (until tests/conftest.py lists it in pytest_plugins).


@pytest.fixture
async def password_backend_case(slapd_server: Slapd) -> AsyncIterator[PasswordBackendCase]:
    backend = LdapAuthenticator(
        LdapSettings(
            urls=(slapd_server.url,),
            base_dn=PEOPLE_DN,
            bind_dn=READER_DN,
            bind_password=READER_PASSWORD,
        )
    )
    yield PasswordBackendCase(
        backend=backend,
        username="bob",
        password="bob-pw",
        display_name="Bob Builder",
        email="bob@bugless.test",
        groups=("engineers",),
    )
    await backend.close()


class TestLdapPasswords(PasswordBackendContract): ...
