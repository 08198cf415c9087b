"""A client certificate's connections share one session.

The API asks ``AuthenticateCertificate`` on every new connection; each answer
used to record a session of its own, so every ``bugless`` command added a row
to the person's sessions page, and every bot connection one to the table.
Real Authenticator over gRPC, real PostgreSQL, certificates from the real
people CA (and a bot's from a trustme CA through the tls backend).
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
import trustme
from auth_support import AuthServer, StartAuth, unique
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.sessions import CERTIFICATE_LAST_USED_GRANULARITY_SECONDS
from bugless_auth.settings import PeopleCaSettings
from bugless_proto import v1


@pytest.fixture
async def people(start_auth_server: StartAuth, tmp_path: Path) -> AuthServer:
    ca = trustme.CA(organization_name="bugless people CA")
    cert, key = tmp_path / "people-ca.pem", tmp_path / "people-ca.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    return await start_auth_server(
        authenticators=("local",), people_ca=PeopleCaSettings(cert_file=cert, key_file=key)
    )


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


async def _person_with_certificate(server: AuthServer) -> tuple[str, v1.PersonCertificate]:
    """A person's password token and a people certificate of theirs."""
    name = unique("cli")
    await server.add_user(name)
    token = (await server.sign_in(name)).token
    issued = await server.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=token, csr_pem=_csr(), label="laptop")
    )
    return token, issued


async def _connect(server: AuthServer, der: bytes) -> v1.AuthenticationResult:
    """What the API does for each new connection with the certificate."""
    return await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )


async def _certificate_sessions(server: AuthServer, token: str) -> list[v1.Session]:
    listed = await server.stub.list_sessions(v1.ListSessionsRequest(token=token))
    return [s for s in listed.sessions if s.authenticator != "local"]


def _session_of(server: AuthServer, token: str) -> str:
    return server.service.tokens.verify(token).token_id


async def test_many_connections_with_one_certificate_leave_one_session(
    people: AuthServer,
) -> None:
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    results = [await _connect(people, der) for _ in range(5)]
    sessions = await _certificate_sessions(people, password_token)
    assert [(s.authenticator, s.kind) for s in sessions] == [("people-ca", "certificate")]
    assert {_session_of(people, r.token) for r in results} == {sessions[0].session_id}
    # Each token expires no later than the session it names, and each answer's
    # assertion is for that session (what the Model checks against revocations).
    assert sessions[0].expires_at is not None
    for result in results:
        assert result.expires_at is not None
        assert result.expires_at <= sessions[0].expires_at
        assert result.identity is not None
        assert result.identity.assertion
        await people.stub.validate_token(v1.ValidateTokenRequest(token=result.token))
    # Another certificate of the same person is another device: its own session.
    second = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(token=password_token, csr_pem=_csr(), label="desktop")
    )
    for _ in range(3):
        await _connect(people, _der(second.certificate_pem))
    assert len(await _certificate_sessions(people, password_token)) == 2


async def test_simultaneous_first_connections_with_one_certificate_make_one_session(
    people: AuthServer,
) -> None:
    # Every connection of a `bugless` command, or a bot's pool, may open at once:
    # each asks AuthenticateCertificate before any of them has a session to reuse.
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    results = await asyncio.gather(*(_connect(people, der) for _ in range(8)))
    sessions = await _certificate_sessions(people, password_token)
    assert len(sessions) == 1
    assert {_session_of(people, r.token) for r in results} == {sessions[0].session_id}
    for result in results:
        await people.stub.validate_token(v1.ValidateTokenRequest(token=result.token))


async def test_simultaneous_renewals_of_a_session_with_little_life_left_make_one_new_session(
    people: AuthServer,
) -> None:
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    old = _session_of(people, (await _connect(people, der)).token)
    await people.store.run(
        lambda conn: conn.execute(
            "UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE session_id = $1",
            old,
        )
    )
    results = await asyncio.gather(*(_connect(people, der) for _ in range(8)))
    renewed = {_session_of(people, r.token) for r in results}
    assert len(renewed) == 1
    assert old not in renewed
    live = {s.session_id for s in await _certificate_sessions(people, password_token)}
    assert live == {old, *renewed}


async def test_a_first_connection_meeting_an_uncommitted_session_of_its_certificate_reuses_it(
    people: AuthServer,
) -> None:
    # The race of two first connections, made certain: the other one's session
    # is inserted, not yet committed, when this one records its own. The unique
    # generation (migration 0014) makes this one wait for it and then reuse
    # it; without it, each insert saw no session and recorded one.
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    fingerprint = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()
    user_id = await people.store.run(
        lambda conn: conn.fetchval(
            "SELECT user_id FROM sessions WHERE session_id = $1",
            _session_of(people, password_token),
        )
    )
    other = unique("other-connection")
    async with people.store.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO sessions (session_id, user_id, authenticator, expires_at, certificate,"
            " certificate_generation) VALUES ($1, $2, 'people-ca',"
            " now() + $3::float8 * INTERVAL '1 second', $4, 1)",
            other,
            user_id,
            float(people.service.tokens.ttl_seconds),
            fingerprint,
        )
        connecting = asyncio.create_task(_connect(people, der))
        for _ in range(200):  # until its insert waits on ours (or it is done: no wait)
            await asyncio.sleep(0.05)
            waiting = await people.store.run(
                lambda c: c.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ),
                transaction=False,
            )
            if waiting or connecting.done():
                break
    result = await connecting
    assert _session_of(people, result.token) == other
    sessions = await _certificate_sessions(people, password_token)
    assert [s.session_id for s in sessions] == [other]


async def test_ending_the_shared_session_refuses_its_tokens_and_the_next_connection_signs_in_again(
    people: AuthServer,
) -> None:
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    first, second = await _connect(people, der), await _connect(people, der)
    (session,) = await _certificate_sessions(people, password_token)
    await people.stub.end_session(
        v1.EndSessionRequest(token=password_token, session_id=session.session_id)
    )
    for result in (first, second):
        await expect_status(
            people.stub.validate_token(v1.ValidateTokenRequest(token=result.token)),
            Status.UNAUTHENTICATED,
        )
    keys = await people.stub.get_verification_keys(v1.GetVerificationKeysRequest())
    assert session.session_id in keys.revoked_session_ids  # the Model refuses its assertions
    # The certificate itself is still good: its next connection makes a new session.
    again = await _connect(people, der)
    (renewed,) = await _certificate_sessions(people, password_token)
    assert renewed.session_id != session.session_id
    assert _session_of(people, again.token) == renewed.session_id


async def test_revoking_the_certificate_ends_its_session_and_refuses_new_connections(
    people: AuthServer,
) -> None:
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    before = await _connect(people, der)
    await people.stub.revoke_person_certificate(
        v1.RevokePersonCertificateRequest(token=password_token, serial=issued.serial)
    )
    await expect_status(
        people.stub.validate_token(v1.ValidateTokenRequest(token=before.token)),
        Status.UNAUTHENTICATED,
    )
    error = await expect_status(_connect(people, der), Status.UNAUTHENTICATED)
    assert "revoked" in (error.message or "")
    assert await _certificate_sessions(people, password_token) == []


async def test_a_connection_racing_the_certificates_revocation_leaves_no_live_session(
    people: AuthServer,
) -> None:
    # The revocation commits after the connection found the certificate live,
    # before its session is recorded: the revocation's end of the
    # certificate's sessions found none, so a session recorded after it would
    # outlive the certificate on the Sessions page (and in the Model).
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    fingerprint = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()
    async with people.store.connection() as conn, conn.transaction():
        # What RevokePersonCertificate writes, held uncommitted.
        await conn.execute(
            "UPDATE people_certificates SET revoked_at = now() WHERE fingerprint = $1",
            fingerprint,
        )
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE certificate = $1 AND revoked_at IS NULL",
            fingerprint,
        )
        connecting = asyncio.create_task(_connect(people, der))
        for _ in range(200):  # until its insert waits on the revocation (or it is done)
            await asyncio.sleep(0.05)
            waiting = await people.store.run(
                lambda c: c.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ),
                transaction=False,
            )
            if waiting or connecting.done():
                break
    error = await expect_status(connecting, Status.UNAUTHENTICATED)
    assert "revoked" in (error.message or "")
    assert await _certificate_sessions(people, password_token) == []


async def test_a_session_with_little_life_left_is_replaced_not_reused(people: AuthServer) -> None:
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    old = _session_of(people, (await _connect(people, der)).token)
    # An hour left of the default 12: under the quarter a reused session must have.
    await people.store.run(
        lambda conn: conn.execute(
            "UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE session_id = $1",
            old,
        )
    )
    new = _session_of(people, (await _connect(people, der)).token)
    assert new != old
    assert _session_of(people, (await _connect(people, der)).token) == new
    live = {s.session_id for s in await _certificate_sessions(people, password_token)}
    assert live == {old, new}  # the old one runs out on its own


async def test_a_session_ends_when_its_certificate_expires(people: AuthServer) -> None:
    name = unique("short")
    await people.add_user(name)
    password_token = (await people.sign_in(name)).token
    issued = await people.stub.issue_person_certificate(
        v1.IssuePersonCertificateRequest(
            token=password_token, csr_pem=_csr(), label="short", validity_seconds=4
        )
    )
    der = _der(issued.certificate_pem)
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    # A certificate with less left than a reused session must have still shares one.
    results = [await _connect(people, der) for _ in range(3)]
    (session,) = await _certificate_sessions(people, password_token)
    assert {_session_of(people, r.token) for r in results} == {session.session_id}
    assert session.expires_at is not None
    assert session.expires_at <= not_after
    for result in results:
        assert result.expires_at is not None
        assert result.expires_at <= not_after
    await asyncio.sleep((not_after - datetime.datetime.now(datetime.UTC)).total_seconds() + 1)
    assert await _certificate_sessions(people, password_token) == []
    listed = await people.stub.list_sessions(v1.ListSessionsRequest(token=password_token))
    assert [s.authenticator for s in listed.sessions] == ["local"]


async def test_a_connections_use_is_recorded_at_most_once_a_minute(people: AuthServer) -> None:
    # Certificate sessions never pass ValidateToken: each API connection (and
    # identity re-check) asking AuthenticateCertificate is their use.
    password_token, issued = await _person_with_certificate(people)
    der = _der(issued.certificate_pem)
    session = _session_of(people, (await _connect(people, der)).token)

    async def recorded_ago(seconds: float) -> datetime.datetime:
        """Move the recorded last use ``seconds`` back; what it became."""
        return await people.store.run(
            lambda conn: conn.fetchval(
                "UPDATE sessions SET last_used_at = now() - $2::float8 * interval '1 second' "
                "WHERE session_id = $1 RETURNING last_used_at",
                session,
                seconds,
            )
        )

    async def last_used() -> datetime.datetime | None:
        (listed,) = await _certificate_sessions(people, password_token)
        return listed.last_used_at

    written = await recorded_ago(CERTIFICATE_LAST_USED_GRANULARITY_SECONDS / 2)
    await _connect(people, der)
    assert await last_used() == written  # used within the minute: nothing written
    await recorded_ago(CERTIFICATE_LAST_USED_GRANULARITY_SECONDS + 30)
    before = datetime.datetime.now(datetime.UTC)
    await _connect(people, der)
    used = await last_used()
    assert used is not None
    assert used >= before - datetime.timedelta(seconds=5)  # recorded again, now


async def test_a_bots_connections_share_one_session_too(
    start_auth_server: StartAuth, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "bots-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    bot = unique("deploy-bot")
    server = await start_auth_server(
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {"mapping": f'{{"{bot}": {{"username": "{bot}"}}}}', "ca_file": str(ca_file)}
        },
    )
    leaf = ca.issue_cert("bot.invalid", common_name=bot)
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )
    results = [await _connect(server, der) for _ in range(4)]
    assert len({_session_of(server, r.token) for r in results}) == 1
    assert results[0].identity is not None
    assert results[0].identity.user is not None
    user_id = results[0].identity.user.user_id
    rows = await server.store.run(
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user_id
        )
    )
    assert rows == 1
