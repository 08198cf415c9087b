"""AuthenticateCertificate with the tls backend, over gRPC, with trustme certificates."""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path

import pytest
from auth_support import AuthServer, StartAuth
from certificates import Pki, make_pki
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.tls import TlsAuthenticator
from bugless_proto import v1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_server(start_auth_server: StartAuth, pki: Pki) -> AuthServer:
    return await start_auth_server(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {"mapping_file": str(pki.mapping_file), "ca_file": str(pki.ca_file)}
        },
    )


async def present(server: AuthServer, der: bytes) -> v1.AuthenticationResult:
    return await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )


async def test_mapped_cn_signs_in_as_a_bot(tls_server: AuthServer, pki: Pki) -> None:
    result = await present(tls_server, pki.client("deploy-bot"))

    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == "deploy-bot"
    assert result.identity.user.bot
    assert result.identity.groups == ["bots", "deployers"]
    assert result.identity.authenticator == "tls"
    validated = await tls_server.stub.validate_token(v1.ValidateTokenRequest(token=result.token))
    assert validated.user is not None
    assert validated.user.user_id == result.identity.user.user_id


async def test_renewed_certificate_keeps_the_user_id(tls_server: AuthServer, pki: Pki) -> None:
    first = await present(tls_server, pki.client("deploy-bot"))
    renewed = await present(tls_server, pki.client("deploy-bot"))
    assert first.identity
    assert first.identity.user
    assert renewed.identity
    assert renewed.identity.user
    assert first.identity.user.user_id == renewed.identity.user.user_id


async def test_san_email_maps_a_person(tls_server: AuthServer, pki: Pki) -> None:
    result = await present(tls_server, pki.client("Alice Example", "alice@example.com"))
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == "alice-cert"
    assert not result.identity.user.bot


async def test_unmapped_cn_is_refused_naming_the_subject(tls_server: AuthServer, pki: Pki) -> None:
    error = await expect_status(present(tls_server, pki.client("stranger")), Status.UNAUTHENTICATED)
    assert "CN=stranger" in (error.message or "")
    assert "is not mapped to a bugless user" in (error.message or "")


async def test_mapped_cn_from_another_ca_is_refused(tls_server: AuthServer, pki: Pki) -> None:
    forged = pki.client("deploy-bot", ca=pki.foreign)
    await expect_status(present(tls_server, forged), Status.UNAUTHENTICATED)


_NOW = datetime.datetime.now(datetime.UTC)
#: (not_before, not_after) of a certificate outside its window, and how it is refused.
_OUT_OF_WINDOW = {
    "expired": (
        _NOW - datetime.timedelta(days=30),
        _NOW - datetime.timedelta(days=1),
        "expired at",
    ),
    "not yet valid": (
        _NOW + datetime.timedelta(days=1),
        _NOW + datetime.timedelta(days=30),
        "is not valid until",
    ),
}


@pytest.mark.parametrize("with_ca", [True, False], ids=["ca_file", "no ca_file"])
@pytest.mark.parametrize("window", sorted(_OUT_OF_WINDOW))
async def test_a_mapped_certificate_outside_its_validity_window_maps_to_nobody(
    start_auth_server: StartAuth, pki: Pki, window: str, with_ca: bool
) -> None:
    """The window is checked with or without ``ca_file``.

    Before, a tls backend without ``ca_file`` returned "trusted" before it
    looked at the dates: an expired certificate with a mapped CN, passed
    on by a frontend, signed in as that bot.
    """
    options = {"mapping_file": str(pki.mapping_file)}
    if with_ca:
        options["ca_file"] = str(pki.ca_file)
    server = await start_auth_server(
        authenticators=("local", "tls"), authenticator_options={"tls": options}
    )
    not_before, not_after, said = _OUT_OF_WINDOW[window]
    outside = pki.client("deploy-bot", not_before=not_before, not_after=not_after)

    error = await expect_status(present(server, outside), Status.UNAUTHENTICATED)
    bound = not_after if window == "expired" else not_before
    message = error.message or ""
    assert message.startswith("certificate subject ")
    assert "CN=deploy-bot" in message
    assert message.endswith(f" {said} {bound:%Y-%m-%d %H:%M} UTC"), message
    assert (await present(server, pki.client("deploy-bot"))).identity is not None


async def test_garbage_is_invalid_argument(tls_server: AuthServer) -> None:
    error = await expect_status(present(tls_server, b"\x30\x03junk"), Status.INVALID_ARGUMENT)
    assert "DER" in (error.message or "")


async def test_an_oversized_certificate_is_refused_in_bytes_before_it_is_parsed(
    tls_server: AuthServer,
) -> None:
    """The one certificate limit (64 KiB, ``people_rpcs.MAX_CERTIFICATE``) is given in bytes.

    It was 64 KiB here and 16 KiB for RevokePersonCertificate's presented
    certificate, each with its own copy of the check, both saying "characters"
    of a DER byte string.
    """
    error = await expect_status(
        present(tls_server, b"\x30" * (64 * 1024 + 1)), Status.INVALID_ARGUMENT
    )
    assert error.message == "certificate_der: at most 65536 bytes, got 65537"


async def test_list_authenticators_shows_both_kinds(tls_server: AuthServer) -> None:
    answer = await tls_server.stub.list_authenticators(v1.ListAuthenticatorsRequest())
    assert [(a.name, a.kind) for a in answer.authenticators] == [
        ("local", "password"),
        ("tls", "certificate"),
    ]


async def test_without_a_certificate_backend_the_call_fails_precondition(auth: AuthServer) -> None:
    await expect_status(present(auth, b"\x30"), Status.FAILED_PRECONDITION)


async def test_a_changed_mapping_file_is_used_without_a_restart(
    start_auth_server: StartAuth, tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    mapping_file = tmp_path / "certificates.json"
    mapping_file.write_text(pki.mapping_file.read_text())
    server = await start_auth_server(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {
                "mapping_file": str(mapping_file),
                "ca_file": str(pki.ca_file),
                "reload_check_seconds": "0",
            }
        },
    )
    newcomer = pki.client("new-bot")
    await expect_status(present(server, newcomer), Status.UNAUTHENTICATED)

    mapping = json.loads(mapping_file.read_text())
    mapping["new-bot"] = {"username": "new-bot", "groups": ["bots"]}
    mapping_file.write_text(json.dumps(mapping, indent=2))
    result = await present(server, newcomer)
    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.username == "new-bot"
    assert result.identity.groups == ["bots"]

    # A broken edit is refused loudly and changes nothing: the last good mapping stays.
    mapping_file.write_text("{ not json nor toml")
    still = await present(server, newcomer)
    assert still.identity is not None
    assert still.identity.user is not None
    assert still.identity.user.username == "new-bot"
    assert "cannot be used" in caplog.text

    del mapping["new-bot"]
    mapping_file.write_text(json.dumps(mapping))
    await expect_status(present(server, newcomer), Status.UNAUTHENTICATED)
    assert (await present(server, pki.client("deploy-bot"))).identity is not None


async def test_a_caller_during_a_reload_gets_the_mapping_it_reads(tmp_path: Path) -> None:
    """The sessions page and the sweep ask for the mapped subjects at once after an edit.

    A reload records the file's new state before it reads the file in a
    thread; the second caller found that state unchanged and went on with
    the mapping being replaced, so the sessions page listed a certificate
    session the edit had just dropped (test_mapped_sessions failed so under
    CI load). Both callers now get the edited mapping.
    """
    mapping_file = tmp_path / "certificates.json"
    both = {"old-bot": {"username": "bot"}, "new-bot": {"username": "bot"}}
    mapping_file.write_text(json.dumps(both))
    backend = await TlsAuthenticator.open(
        {"mapping_file": str(mapping_file), "reload_check_seconds": "0"}
    )
    assert set(await backend.mapped_subjects()) == {"tls:old-bot", "tls:new-bot"}

    mapping_file.write_text(json.dumps({"new-bot": {"username": "bot"}}))
    first, second = await asyncio.gather(backend.mapped_subjects(), backend.mapped_subjects())
    assert set(first) == set(second) == {"tls:new-bot"}
