"""A certificate's session ends when the tls mapping stops naming its user.

It used to stay live until it expired (12 hours): listed on the sessions
page and by ``bugless auth user sessions``, its token still valid. Real
Authenticators over gRPC on one PostgreSQL schema, trustme certificates, a
mapping file edited while they serve, as a ConfigMap update edits it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import asyncpg
import pytest
import trustme
from auth_support import AuthServer, StartAuth, unique
from certificates import Pki, make_pki
from grpc_errors import expect_status
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_auth import mapped_sessions
from bugless_auth.mapped_sessions import unmapped_reason
from bugless_core.errors import from_grpc_error
from bugless_proto import v1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Deployment:
    """An Authenticator with the tls backend reading ``mapping_file``, and an admin's token."""

    def __init__(self, start: StartAuth, pki: Pki, mapping_file: Path) -> None:
        self.start = start
        self.pki = pki
        self.mapping_file = mapping_file
        self.bots = {unique("gone-bot"): unique("gone"), unique("kept-bot"): unique("kept")}

    def write(self, *common_names: str) -> None:
        mapping = {cn: {"username": self.bots[cn]} for cn in common_names}
        self.mapping_file.write_text(json.dumps(mapping, indent=1))

    async def replica(self, schema: str | None = None) -> AuthServer:
        return await self.start(
            schema=schema,
            authenticators=("local", "tls"),
            authenticator_options={
                "tls": {
                    "mapping_file": str(self.mapping_file),
                    "ca_file": str(self.pki.ca_file),
                    "reload_check_seconds": "0",
                }
            },
        )


@pytest.fixture
def deployment(start_auth_server: StartAuth, pki: Pki, tmp_path: Path) -> Deployment:
    made = Deployment(start_auth_server, pki, tmp_path / "certificates.json")
    made.write(*made.bots)
    return made


async def _connect(server: AuthServer, der: bytes) -> v1.AuthenticationResult:
    """What the API does for each new connection with the certificate."""
    return await server.stub.authenticate_certificate(
        v1.AuthenticateCertificateRequest(certificate_der=der)
    )


async def _admin(server: AuthServer) -> str:
    name = unique("admin")
    await server.add_user(name, groups=["admins"])
    return (await server.sign_in(name)).token


async def _listed(server: AuthServer, admin: str, username: str) -> list[str]:
    reply = await server.stub.list_sessions(v1.ListSessionsRequest(token=admin, username=username))
    return [s.session_id for s in reply.sessions]


async def _valid(server: AuthServer, token: str) -> bool:
    try:
        await server.stub.validate_token(v1.ValidateTokenRequest(token=token))
    except GRPCError as exc:
        if exc.status is not Status.UNAUTHENTICATED:
            raise
        return False
    return True


@pytest.mark.parametrize("noticed_by", ["the sessions page", "the certificate's next connection"])
async def test_a_removed_mapping_entry_ends_its_certificates_session(
    deployment: Deployment, noticed_by: str
) -> None:
    """The entry of one of two bots is removed: whichever comes first, a listing
    of sessions or the certificate's next connection (refused), the removed
    bot's session is ended (not listed, its token refused with SESSION_ENDED)
    and the other bot's is untouched. Before, both stayed live and listed."""
    server = await deployment.replica()
    admin = await _admin(server)
    gone_cn, kept_cn = deployment.bots
    gone_der, kept_der = deployment.pki.client(gone_cn), deployment.pki.client(kept_cn)
    gone, kept = await _connect(server, gone_der), await _connect(server, kept_der)
    gone_session = server.service.tokens.verify(gone.token).token_id
    assert await _listed(server, admin, deployment.bots[gone_cn]) == [gone_session]

    deployment.write(kept_cn)
    if noticed_by == "the certificate's next connection":
        await expect_status(_connect(server, gone_der), Status.UNAUTHENTICATED)
    assert await _listed(server, admin, deployment.bots[gone_cn]) == []
    ended = await expect_status(
        server.stub.validate_token(v1.ValidateTokenRequest(token=gone.token)),
        Status.UNAUTHENTICATED,
    )
    assert "ended" in (ended.message or "")
    assert await _valid(server, kept.token)
    assert len(await _listed(server, admin, deployment.bots[kept_cn])) == 1
    reason = await server.store.run(
        lambda conn: conn.fetchval(
            "SELECT revoked_reason FROM sessions WHERE session_id = $1", gone_session
        ),
        transaction=False,
    )
    assert reason == unmapped_reason("tls")
    # The entry back: a new connection makes a new session.
    deployment.write(gone_cn, kept_cn)
    again = await _connect(server, gone_der)
    assert await _valid(server, again.token)


async def test_a_replica_started_after_the_removal_ends_the_session_too(
    deployment: Deployment,
) -> None:
    """No replica saw the entry go (it was removed while none served, or the one
    that had it stopped): the first look of a replica that starts with the
    new mapping ends the sessions no entry names, and lists none of them."""
    first = await deployment.replica()
    gone_cn, kept_cn = deployment.bots
    gone = await _connect(first, deployment.pki.client(gone_cn))
    kept = await _connect(first, deployment.pki.client(kept_cn))
    deployment.write(kept_cn)
    later = await deployment.replica(schema=first.settings.schema)
    admin = await _admin(later)
    assert await _listed(later, admin, deployment.bots[gone_cn]) == []
    assert not await _valid(later, gone.token)
    assert not await _valid(first, gone.token)
    assert await _valid(later, kept.token)


async def test_a_bot_that_never_comes_back_loses_its_session_at_the_next_sweep(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No listing through the replica and no connection of the certificate: the
    replica's own sweep ends the session, so ``bugless auth user sessions``,
    which reads the table, does not list it for hours either."""
    monkeypatch.setattr(mapped_sessions, "SWEEP_SECONDS", 0.2)
    server = await deployment.replica()
    gone_cn, kept_cn = deployment.bots
    gone = await _connect(server, deployment.pki.client(gone_cn))
    session = server.service.tokens.verify(gone.token).token_id
    deployment.write(kept_cn)
    deadline = asyncio.get_running_loop().time() + 10
    while await server.service.sessions.count_live(_user_id(server, gone)) == 1:
        assert asyncio.get_running_loop().time() < deadline, f"{session} still live"
        await asyncio.sleep(0.1)
    assert not await _valid(server, gone.token)


def _user_id(server: AuthServer, result: v1.AuthenticationResult) -> str:
    return server.service.tokens.verify(result.token).user_id


async def _sessions_table(server: AuthServer) -> list[tuple[str, str, object, object]]:
    """Every row of the sessions table with its row version (``xmin``): any write changes it."""
    rows = await server.store.run(
        lambda conn: conn.fetch(
            "SELECT session_id, xmin::text AS version, revoked_at, last_used_at FROM sessions "
            "ORDER BY session_id"
        ),
        transaction=False,
    )
    return [(r["session_id"], r["version"], r["revoked_at"], r["last_used_at"]) for r in rows]


class OneBot:
    """A bot two entries map: its CN, and a ``sha256:`` entry for another certificate of it."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.username = unique("rotating-bot")
        self.leaked_der = deployment.pki.client(unique("leaked-cert"))
        self.kept_cn = unique("bot-cn")
        self.kept_der = deployment.pki.client(self.kept_cn)
        self.leaked_key = "sha256:" + hashlib.sha256(self.leaked_der).hexdigest()

    def write(self, *keys: str) -> None:
        mapping = {key: {"username": self.username} for key in keys}
        self.deployment.mapping_file.write_text(json.dumps(mapping, indent=1))


async def _subject_of(server: AuthServer, session_id: str) -> str | None:
    subject: str | None = await server.store.run(
        lambda conn: conn.fetchval(
            "SELECT subject FROM sessions WHERE session_id = $1", session_id
        ),
        transaction=False,
    )
    return subject


@pytest.mark.parametrize(
    "noticed_by", ["the sessions page", "the other certificate's next connection", "the sweep"]
)
async def test_a_removed_entry_ends_its_certificates_session_while_another_maps_the_user(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, noticed_by: str
) -> None:
    """A leaked certificate's ``sha256:`` entry is removed while the bot's CN entry
    still maps its username (one user): at the mapping change, before the leaked
    certificate connects again, its session ends (not listed, its token refused),
    and its next connection is refused; the other certificate's session goes on
    and is reused. Before, the other entry still naming the user kept the leaked
    certificate's session live until it expired or the certificate came back."""
    monkeypatch.setattr(mapped_sessions, "SWEEP_SECONDS", 0.2)
    bot = OneBot(deployment)
    bot.write(bot.leaked_key, bot.kept_cn)
    server = await deployment.replica()
    admin = await _admin(server)
    leaked, kept = await _connect(server, bot.leaked_der), await _connect(server, bot.kept_der)
    assert _user_id(server, leaked) == _user_id(server, kept)
    leaked_session = server.service.tokens.verify(leaked.token).token_id
    kept_session = server.service.tokens.verify(kept.token).token_id
    assert await _subject_of(server, leaked_session) == f"tls:{bot.leaked_key}"
    assert await _subject_of(server, kept_session) == f"tls:{bot.kept_cn}"

    bot.write(bot.kept_cn)
    if noticed_by == "the sessions page":
        assert await _listed(server, admin, bot.username) == [kept_session]
    elif noticed_by == "the other certificate's next connection":
        again = await _connect(server, bot.kept_der)
        assert server.service.tokens.verify(again.token).token_id == kept_session
    else:
        deadline = asyncio.get_running_loop().time() + 10
        while await _valid(server, leaked.token):
            assert asyncio.get_running_loop().time() < deadline, "the sweep ended nothing"
            await asyncio.sleep(0.1)
    assert not await _valid(server, leaked.token)
    assert await _valid(server, kept.token)
    assert await _listed(server, admin, bot.username) == [kept_session]
    reason = await server.store.run(
        lambda conn: conn.fetchval(
            "SELECT revoked_reason FROM sessions WHERE session_id = $1", leaked_session
        ),
        transaction=False,
    )
    assert reason == unmapped_reason("tls")
    refused = await expect_status(_connect(server, bot.leaked_der), Status.UNAUTHENTICATED)
    assert "is not mapped to a bugless user" in (refused.message or "")
    again = await _connect(server, bot.kept_der)
    assert server.service.tokens.verify(again.token).token_id == kept_session


async def test_an_entry_moved_to_another_user_ends_only_the_sessions_it_admitted(
    deployment: Deployment,
) -> None:
    """One of a bot's two entries is changed to another mapped bot's username: at its
    next sign-in it moves to that bot, and the session it had admitted for the bot it
    left ends, while that bot's other entry's session goes on. Before, the other entry
    still naming the bot kept the moved entry's session live."""
    first_name, second_name = unique("first-bot"), unique("second-bot")
    stays_cn, moves_cn, other_cn = unique("stays"), unique("moves"), unique("other")

    def write(moved_to: str) -> None:
        mapping = {
            stays_cn: {"username": first_name},
            moves_cn: {"username": moved_to},
            other_cn: {"username": second_name},
        }
        deployment.mapping_file.write_text(json.dumps(mapping, indent=1))

    write(first_name)
    server = await deployment.replica()
    stays_der, moves_der = deployment.pki.client(stays_cn), deployment.pki.client(moves_cn)
    second = await _connect(server, deployment.pki.client(other_cn))
    stays, moves = await _connect(server, stays_der), await _connect(server, moves_der)
    assert _user_id(server, stays) == _user_id(server, moves) != _user_id(server, second)

    write(second_name)
    moved = await _connect(server, moves_der)
    assert _user_id(server, moved) == _user_id(server, second)
    assert not await _valid(server, moves.token)
    assert await _valid(server, stays.token)
    assert await _valid(server, moved.token)
    assert await _valid(server, second.token)


@pytest.mark.parametrize("noticed_by", ["the sessions page", "the sweep"])
async def test_an_entry_renamed_to_another_users_name_ends_its_sessions_at_the_mapping_change(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, noticed_by: str
) -> None:
    """One of a bot's two entries is given another mapped bot's username, and its
    certificate does not connect again: at the mapping change the session it admitted
    ends (not listed as the first bot's, its token refused), the first bot's other
    entry's and the second bot's sessions go on, and the certificate's next connection
    is answered as for a new entry: the second bot, with a new session. Before, the
    session stayed the first bot's until its certificate next signed in."""
    monkeypatch.setattr(mapped_sessions, "SWEEP_SECONDS", 0.2)
    first_name, second_name = unique("first-bot"), unique("second-bot")
    stays_cn, moves_cn, other_cn = unique("stays"), unique("moves"), unique("other")

    def write(moved_to: str) -> None:
        mapping = {
            stays_cn: {"username": first_name},
            moves_cn: {"username": moved_to},
            other_cn: {"username": second_name},
        }
        deployment.mapping_file.write_text(json.dumps(mapping, indent=1))

    write(first_name)
    server = await deployment.replica()
    admin = await _admin(server)
    stays_der, moves_der = deployment.pki.client(stays_cn), deployment.pki.client(moves_cn)
    second = await _connect(server, deployment.pki.client(other_cn))
    stays, moves = await _connect(server, stays_der), await _connect(server, moves_der)
    stays_session = server.service.tokens.verify(stays.token).token_id
    assert len(await _listed(server, admin, first_name)) == 2

    write(second_name)
    if noticed_by == "the sessions page":
        assert await _listed(server, admin, first_name) == [stays_session]
    else:
        deadline = asyncio.get_running_loop().time() + 10
        while await _valid(server, moves.token):
            assert asyncio.get_running_loop().time() < deadline, "the sweep ended nothing"
            await asyncio.sleep(0.1)
    assert not await _valid(server, moves.token)
    assert await _valid(server, stays.token)
    assert await _valid(server, second.token)
    assert await _listed(server, admin, first_name) == [stays_session]
    moved = await _connect(server, moves_der)
    assert _user_id(server, moved) == _user_id(server, second) != _user_id(server, stays)
    assert moved.identity
    assert moved.identity.user
    assert moved.identity.user.username == second_name
    assert await _valid(server, moved.token)
    assert len(await _listed(server, admin, second_name)) == 2


async def test_an_entry_given_a_new_username_ends_its_session_and_renames_its_user(
    deployment: Deployment,
) -> None:
    """A bot's only entry is given a username nobody holds: its session, made for the
    old name, ends at the mapping change; the certificate's next connection signs in
    as the same user (its id, and with it its history, kept) under the new name."""
    gone_cn, kept_cn = deployment.bots
    server = await deployment.replica()
    admin = await _admin(server)
    der = deployment.pki.client(gone_cn)
    before = await _connect(server, der)
    renamed = unique("renamed-bot")
    mapping = {gone_cn: {"username": renamed}, kept_cn: {"username": deployment.bots[kept_cn]}}
    deployment.mapping_file.write_text(json.dumps(mapping))
    assert await _listed(server, admin, deployment.bots[gone_cn]) == []
    assert not await _valid(server, before.token)
    after = await _connect(server, der)
    assert _user_id(server, after) == _user_id(server, before)
    assert after.identity
    assert after.identity.user
    assert after.identity.user.username == renamed
    assert await _valid(server, after.token)


async def test_a_session_recorded_without_its_entry_keeps_the_per_user_rule_until_reused(
    deployment: Deployment,
) -> None:
    """A session row of the previous release (no ``subject``, migration 0016): its
    certificate's next connection reuses it and records the entry that admitted it;
    one never used again is kept while an entry names its user (the rule of before),
    and ends at its certificate's next refusal."""
    bot = OneBot(deployment)
    bot.write(bot.leaked_key, bot.kept_cn)
    server = await deployment.replica()
    leaked, kept = await _connect(server, bot.leaked_der), await _connect(server, bot.kept_der)
    leaked_session = server.service.tokens.verify(leaked.token).token_id
    kept_session = server.service.tokens.verify(kept.token).token_id
    await server.store.run(
        lambda conn: conn.execute("UPDATE sessions SET subject = NULL"), transaction=False
    )

    again = await _connect(server, bot.kept_der)
    assert server.service.tokens.verify(again.token).token_id == kept_session
    assert await _subject_of(server, kept_session) == f"tls:{bot.kept_cn}"
    assert await _subject_of(server, leaked_session) is None

    bot.write(bot.kept_cn)
    assert await server.service.mapped_sessions.end_unmapped() == 0
    assert await _valid(server, leaked.token)
    await expect_status(_connect(server, bot.leaked_der), Status.UNAUTHENTICATED)
    assert not await _valid(server, leaked.token)
    assert await _valid(server, kept.token)


async def test_a_certificate_its_ca_no_longer_signs_for_loses_its_session_at_its_refusal(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The bot CA is replaced (the tls backend's ``ca_file``) and the bot has a
    certificate of each: its entry (a CN) still names it, so nothing ends per
    user, but the old CA's certificate is refused at its next connection
    (CERTIFICATE_UNTRUSTED), and that refusal ends the sessions of that one
    certificate: not listed, its token refused, while the new certificate's
    session goes on. Before, the old certificate's session stayed live and
    listed until it expired (12 h)."""
    gone_cn, _ = deployment.bots
    bot = deployment.bots[gone_cn]
    first = await deployment.replica()
    admin = await _admin(first)
    old_der = deployment.pki.client(gone_cn)
    old = await _connect(first, old_der)
    old_session = first.service.tokens.verify(old.token).token_id

    new_ca = trustme.CA()
    new_ca_file = tmp_path / "new-client-ca.pem"
    new_ca.cert_pem.write_to_path(str(new_ca_file))
    later = await deployment.start(
        schema=first.settings.schema,
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {
                "mapping_file": str(deployment.mapping_file),
                "ca_file": str(new_ca_file),
                "reload_check_seconds": "0",
            }
        },
    )
    new_der = deployment.pki.client(gone_cn, ca=new_ca)
    new = await _connect(later, new_der)
    new_session = later.service.tokens.verify(new.token).token_id
    assert sorted(await _listed(later, admin, bot)) == sorted([old_session, new_session])

    refused = await expect_status(_connect(later, old_der), Status.UNAUTHENTICATED)
    assert "is not signed by a CA in the tls authenticator's ca_file" in (refused.message or "")
    assert from_grpc_error(refused).reason == "CERTIFICATE_UNTRUSTED"
    assert await _listed(later, admin, bot) == [new_session]
    assert not await _valid(later, old.token)
    assert not await _valid(first, old.token)
    assert await _valid(later, new.token)
    reason = await later.store.run(
        lambda conn: conn.fetchval(
            "SELECT revoked_reason FROM sessions WHERE session_id = $1", old_session
        ),
        transaction=False,
    )
    assert reason == mapped_sessions.REFUSED_REASON


async def test_a_refused_unknown_certificate_writes_nothing(deployment: Deployment) -> None:
    """A certificate of the trusted CA that nothing maps, and that never had a
    session, is refused with no row of the sessions table written (each row's
    version is as it was), however many sessions other certificates hold."""
    server = await deployment.replica()
    for cn in deployment.bots:
        await _connect(server, deployment.pki.client(cn))
    before = await _sessions_table(server)
    assert len(before) == 2
    stranger = deployment.pki.client(unique("stranger"))
    for _ in range(3):
        refused = await expect_status(_connect(server, stranger), Status.UNAUTHENTICATED)
        assert "is not mapped to a bugless user" in (refused.message or "")
    assert await _sessions_table(server) == before


#: Backends waiting for a lock the connection running this holds (as test_store_outage's).
WAITING = """
SELECT DISTINCT pid FROM pg_locks
 WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))
"""


async def test_a_refusal_the_database_cannot_record_is_still_a_refusal(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The end of a refused certificate's sessions meets a database that drops its
    connection (``pg_terminate_backend`` while the UPDATE waits on a row lock):
    the certificate is refused as unmapped all the same, not told to try again,
    its session is left as it was, and the next refusal ends it."""
    gone_cn, _ = deployment.bots
    first = await deployment.replica()
    old_der = deployment.pki.client(gone_cn)
    old = await _connect(first, old_der)
    old_session = first.service.tokens.verify(old.token).token_id
    new_ca = trustme.CA()
    new_ca_file = tmp_path / "new-client-ca.pem"
    new_ca.cert_pem.write_to_path(str(new_ca_file))
    later = await deployment.start(
        schema=first.settings.schema,
        authenticators=("local", "tls"),
        authenticator_options={
            "tls": {
                "mapping_file": str(deployment.mapping_file),
                "ca_file": str(new_ca_file),
                "reload_check_seconds": "0",
            }
        },
    )
    blocker = await asyncpg.connect(later.settings.database_url)
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute(
            f'SELECT 1 FROM "{later.settings.schema}".sessions WHERE session_id = $1 FOR UPDATE',
            old_session,
        )
        call = asyncio.create_task(expect_status(_connect(later, old_der), Status.UNAUTHENTICATED))
        for _ in range(200):
            waiting = await blocker.fetch(WAITING)
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 1, waiting
        assert await blocker.fetchval("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
        refused = await asyncio.wait_for(call, timeout=10)
        await holding.rollback()
    finally:
        await blocker.close()
    assert from_grpc_error(refused).reason == "CERTIFICATE_UNTRUSTED"
    assert await _valid(later, old.token)
    await expect_status(_connect(later, old_der), Status.UNAUTHENTICATED)
    assert not await _valid(later, old.token)
