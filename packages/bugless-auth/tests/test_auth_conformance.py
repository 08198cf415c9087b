"""The authenticator contracts (bugless_testing.auth_contracts) for local and tls."""

from __future__ import annotations

import pytest
from auth_support import FAST_HASHING, PASSWORD, AuthServer, unique
from certificates import make_pki

from bugless_auth.local import LocalAuthenticator
from bugless_auth.passwords import PasswordHashes
from bugless_auth.tls import TlsAuthenticator
from bugless_testing.auth_contracts import (
    CertificateBackendCase,
    CertificateBackendContract,
    PasswordBackendCase,
    PasswordBackendContract,
)


@pytest.fixture
async def password_backend_case(auth: AuthServer) -> PasswordBackendCase:
    name = unique("conf")
    await auth.add_user(name, display_name="Con Formance", email="c@x.org", groups=["qa"])
    backend = await LocalAuthenticator.open(
        {"identity_store": auth.store, "password_hashes": PasswordHashes(FAST_HASHING)}
    )
    return PasswordBackendCase(
        backend, name, PASSWORD, display_name="Con Formance", email="c@x.org", groups=("qa",)
    )


@pytest.fixture
async def certificate_backend_case(
    tmp_path_factory: pytest.TempPathFactory,
) -> CertificateBackendCase:
    pki = make_pki(tmp_path_factory.mktemp("conformance-pki"))
    backend = await TlsAuthenticator.open(
        {"mapping_file": str(pki.mapping_file), "ca_file": str(pki.ca_file)}
    )
    return CertificateBackendCase(
        backend,
        mapped=pki.client("deploy-bot"),
        username="deploy-bot",
        groups=("bots",),
        unmapped=pki.client("nobody-mapped"),
        foreign=pki.client("deploy-bot", ca=pki.foreign),
    )


class TestLocalPasswords(PasswordBackendContract): ...


class TestTlsCertificates(CertificateBackendContract): ...
