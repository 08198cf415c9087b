"""A person's own sessions: ListSessions and EndSession, across two Authenticator replicas.

Both replicas are real gRPC servers on one PostgreSQL schema, as two pods of
a deployment are: a session ended through one is refused by the other on
its next validation, whatever it had cached.
"""

from __future__ import annotations

import datetime

import pytest
from auth_support import AuthServer, StartAuth, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.sessions import (
    CERTIFICATE_LAST_USED_GRANULARITY_SECONDS,
    LAST_USED_GRANULARITY_SECONDS,
)
from bugless_proto import v1


@pytest.fixture
async def session_replicas(start_auth_server: StartAuth) -> tuple[AuthServer, AuthServer]:
    """Two Authenticators sharing one schema, each with a long cache."""
    first = await start_auth_server(cache_ttl_seconds=600)
    second = await start_auth_server(schema=first.settings.schema, cache_ttl_seconds=600)
    return first, second


async def sign_in(server: AuthServer, name: str, address: str) -> str:
    result = await server.stub.authenticate_password(
        v1.AuthenticatePasswordRequest(username=name, password="pw", client_address=address)
    )
    return result.token


async def listed(
    server: AuthServer, token: str, *, username: str = "", page_size: int = 0, kind: str = ""
) -> list[v1.Session]:
    """Every page of the listing (of ``kind``), in order."""
    sessions: list[v1.Session] = []
    page_token = ""
    while True:
        reply = await server.stub.list_sessions(
            v1.ListSessionsRequest(
                token=token,
                username=username,
                page=v1.PageRequest(page_size=page_size, page_token=page_token),
                kind=kind,
            )
        )
        sessions.extend(reply.sessions)
        page_token = reply.next_page_token
        if not page_token:
            return sessions


async def validate(server: AuthServer, token: str) -> v1.Identity:
    return await server.stub.validate_token(v1.ValidateTokenRequest(token=token))


async def test_a_person_sees_their_live_sessions_how_and_where_made_and_which_is_this_one(
    session_replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = session_replicas
    name, other = unique("devices"), unique("bystander")
    await first.add_user(name, password="pw")
    await first.add_user(other, password="pw")
    ended = await sign_in(first, name, "192.0.2.1")
    laptop = await sign_in(first, name, "192.0.2.2")
    phone = await sign_in(second, name, "2001:db8::7")
    await sign_in(first, other, "192.0.2.9")
    await first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=ended))

    sessions = await listed(second, phone)

    assert [s.client_address for s in sessions] == ["2001:db8::7", "192.0.2.2"]  # newest first
    assert [s.current for s in sessions] == [True, False]
    for session in sessions:
        assert (session.authenticator, session.kind) == ("local", "password")
        assert session.created_at is not None
        assert session.expires_at is not None
        assert session.last_used_at == session.created_at  # not used since signing in
        lifetime = (session.expires_at - session.created_at).total_seconds()
        assert abs(lifetime - first.settings.token_ttl_seconds) < 2
    assert (await listed(first, laptop))[1].current  # each token marks its own


async def test_pages_list_every_session_once_and_a_token_fits_only_its_listing(
    auth: AuthServer,
) -> None:
    name, other = unique("pages"), unique("another")
    await auth.add_user(name, password="pw")
    await auth.add_user(other, password="pw")
    tokens = [await sign_in(auth, name, f"198.51.100.{i}") for i in range(5)]
    other_token = await sign_in(auth, other, "198.51.100.99")

    paged = await listed(auth, tokens[0], page_size=2)

    assert len(paged) == 5
    assert len({s.session_id for s in paged}) == 5
    assert paged == await listed(auth, tokens[0], page_size=500)
    first_page = await auth.stub.list_sessions(
        v1.ListSessionsRequest(token=tokens[0], page=v1.PageRequest(page_size=2))
    )
    for token, page_token in (
        (other_token, first_page.next_page_token),  # another person's listing
        (tokens[0], "not-a-token"),
        (tokens[0], first_page.next_page_token[:-2]),  # tampered
    ):
        error = await expect_status(
            auth.stub.list_sessions(
                v1.ListSessionsRequest(token=token, page=v1.PageRequest(page_token=page_token))
            ),
            Status.INVALID_ARGUMENT,
        )
        assert "page.page_token" in (error.message or "")
    for size in (-1, 501):
        error = await expect_status(
            auth.stub.list_sessions(
                v1.ListSessionsRequest(token=tokens[0], page=v1.PageRequest(page_size=size))
            ),
            Status.INVALID_ARGUMENT,
        )
        assert "page.page_size" in (error.message or "")


async def test_ending_a_session_by_id_is_refused_on_every_replica_at_once(
    session_replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = session_replicas
    name = unique("lost")
    await first.add_user(name, password="pw")
    lost_laptop = await sign_in(first, name, "203.0.113.1")
    phone = await sign_in(second, name, "203.0.113.2")
    await validate(second, lost_laptop)  # `second` has its signature checked and cached
    laptop_id = next(s.session_id for s in await listed(first, phone) if not s.current)

    reply = await first.stub.end_session(v1.EndSessionRequest(token=phone, session_id=laptop_id))

    assert reply.session is not None
    assert reply.session.session_id == laptop_id
    assert reply.session.client_address == "203.0.113.1"
    assert not reply.session.current
    for server in (first, second):
        error = await expect_status(validate(server, lost_laptop), Status.UNAUTHENTICATED)
        assert "session has ended" in (error.message or "")
        assert (await validate(server, phone)).user is not None
    assert [s.client_address for s in await listed(second, phone)] == ["203.0.113.2"]
    # ...and the Model, which reads the sessions ended within an assertion's
    # lifetime, refuses the laptop's assertions too.
    keys = await second.stub.get_verification_keys(v1.GetVerificationKeysRequest())
    assert laptop_id in keys.revoked_session_ids
    error = await expect_status(
        first.stub.end_session(v1.EndSessionRequest(token=phone, session_id=laptop_id)),
        Status.NOT_FOUND,
    )
    assert "ended or expired already" in (error.message or "")


async def test_a_session_may_end_itself(auth: AuthServer) -> None:
    name = unique("self")
    await auth.add_user(name, password="pw")
    token = await sign_in(auth, name, "203.0.113.3")
    own = (await listed(auth, token))[0]

    reply = await auth.stub.end_session(
        v1.EndSessionRequest(token=token, session_id=own.session_id)
    )

    assert reply.session is not None
    assert reply.session.current
    await expect_status(validate(auth, token), Status.UNAUTHENTICATED)


async def test_another_persons_session_is_not_found_as_if_it_did_not_exist(
    auth: AuthServer,
) -> None:
    ann, bob = unique("ann"), unique("bob")
    await auth.add_user(ann, password="pw")
    await auth.add_user(bob, password="pw")
    ann_token = await sign_in(auth, ann, "192.0.2.10")
    bob_token = await sign_in(auth, bob, "192.0.2.11")
    bob_id = (await listed(auth, bob_token))[0].session_id

    theirs = await expect_status(
        auth.stub.end_session(v1.EndSessionRequest(token=ann_token, session_id=bob_id)),
        Status.NOT_FOUND,
    )
    made_up = await expect_status(
        auth.stub.end_session(v1.EndSessionRequest(token=ann_token, session_id="x" * 24)),
        Status.NOT_FOUND,
    )

    assert (theirs.message or "").replace(bob_id, "ID") == (made_up.message or "").replace(
        "x" * 24, "ID"
    )
    assert (await validate(auth, bob_token)).user is not None
    denied = await expect_status(
        auth.stub.list_sessions(v1.ListSessionsRequest(token=ann_token, username=bob)),
        Status.PERMISSION_DENIED,
    )
    assert "manage_users" in (denied.message or "")
    # Naming oneself (in any case) is listing one's own sessions.
    assert len(await listed(auth, ann_token, username=ann.upper())) == 1


async def test_an_administrator_lists_and_ends_another_users_sessions(
    session_replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = session_replicas
    admin, name = unique("admin"), unique("target")
    admin_record = await first.add_user(admin, password="pw", groups=["admins"])
    await first.add_user(name, password="pw")
    admin_token = await sign_in(first, admin, "192.0.2.20")
    token = await sign_in(first, name, "192.0.2.21")

    theirs = await listed(second, admin_token, username=name)
    assert [(s.client_address, s.current) for s in theirs] == [("192.0.2.21", False)]
    await second.stub.end_session(
        v1.EndSessionRequest(token=admin_token, session_id=theirs[0].session_id)
    )

    await expect_status(validate(first, token), Status.UNAUTHENTICATED)
    assert await listed(first, admin_token, username=name) == []
    missing = await expect_status(
        first.stub.list_sessions(v1.ListSessionsRequest(token=admin_token, username="nobody-x")),
        Status.NOT_FOUND,
    )
    assert "nobody-x" in (missing.message or "")
    ended = await first.store.run(
        lambda conn: conn.fetchval(
            "SELECT revoked_reason FROM sessions WHERE session_id = $1", theirs[0].session_id
        ),
        transaction=False,
    )
    assert ended == f"ended by {admin} ({admin_record.user_id})"


async def test_bad_requests_are_refused_naming_the_field(auth: AuthServer) -> None:
    name = unique("bad")
    await auth.add_user(name, password="pw")
    token = await sign_in(auth, name, "192.0.2.30")
    signed_out = await sign_in(auth, name, "192.0.2.31")
    await auth.stub.revoke_sessions(v1.RevokeSessionsRequest(token=signed_out))
    cases = [
        (auth.stub.list_sessions(v1.ListSessionsRequest()), Status.INVALID_ARGUMENT, "token"),
        (
            auth.stub.end_session(v1.EndSessionRequest(session_id="x")),
            Status.INVALID_ARGUMENT,
            "token",
        ),
        (
            auth.stub.end_session(v1.EndSessionRequest(token=token)),
            Status.INVALID_ARGUMENT,
            "session_id",
        ),
        (
            auth.stub.end_session(v1.EndSessionRequest(token=token, session_id="x" * 65)),
            Status.INVALID_ARGUMENT,
            "session_id",
        ),
        (
            auth.stub.list_sessions(v1.ListSessionsRequest(token=signed_out)),
            Status.UNAUTHENTICATED,
            "session has ended",
        ),
        (
            auth.stub.end_session(v1.EndSessionRequest(token=signed_out, session_id="x")),
            Status.UNAUTHENTICATED,
            "session has ended",
        ),
    ]
    for call, status, said in cases:
        error = await expect_status(call, status)
        assert said in (error.message or "")
    assert len(await listed(auth, token)) == 1  # nothing was ended


async def test_last_use_is_recorded_when_the_one_recorded_is_minutes_old(
    auth: AuthServer,
) -> None:
    name = unique("used")
    await auth.add_user(name, password="pw")
    token = await sign_in(auth, name, "192.0.2.40")
    session_id = (await listed(auth, token))[0].session_id
    ago = LAST_USED_GRANULARITY_SECONDS + 60

    async def last_used() -> datetime.datetime:
        return next(s.last_used_at for s in await listed(auth, token) if s.last_used_at)

    async def move_back(column: str) -> None:
        await auth.store.run(
            lambda conn: conn.execute(
                f"UPDATE sessions SET {column} = {column} - $2::float8 * INTERVAL '1 second' "
                "WHERE session_id = $1",
                session_id,
                ago,
            ),
            transaction=False,
        )

    # Signed in minutes ago and not used since: the listing's own validation
    # of the token is a use, and is recorded.
    await move_back("created_at")
    now = datetime.datetime.now(datetime.UTC)
    assert abs((await last_used() - now).total_seconds()) < 30

    await move_back("last_used_at")  # last used minutes ago: recorded again
    recorded = await last_used()
    assert abs((recorded - now).total_seconds()) < 30
    await validate(auth, token)
    assert await last_used() == recorded  # used again within minutes: nothing written


async def test_a_services_assertion_is_listed_as_a_session_of_its_own(auth: AuthServer) -> None:
    name = unique("recipient")
    record = await auth.add_user(name, password="pw")
    token = await sign_in(auth, name, "192.0.2.50")

    await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=record.user_id))

    sessions = await listed(auth, token)
    assert sorted((s.authenticator, s.kind) for s in sessions) == [
        ("local", "password"),
        ("service", "service"),
    ]


async def test_a_kind_lists_only_its_sessions_and_pages_through_all_of_them(
    auth: AuthServer,
) -> None:
    # A busy notifier's sessions (one a mail) must not push a person's own
    # sign-ins off the pages, nor the other way round.
    name = unique("kinds")
    record = await auth.add_user(name, password="pw")
    own = [await sign_in(auth, name, f"192.0.2.{60 + i}") for i in range(3)]
    for _ in range(7):
        await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=record.user_id))
    everything = await listed(auth, own[0], page_size=500)
    assert len(everything) == 10
    by_kind = {
        kind: await listed(auth, own[0], page_size=2, kind=kind)
        for kind in ("people", "services", "all")
    }
    assert [s.kind for s in by_kind["people"]] == ["password"] * 3
    assert [s.kind for s in by_kind["services"]] == ["service"] * 7
    assert by_kind["all"] == everything
    # Each kind's pages are the full listing's sessions of that kind, in its order.
    assert by_kind["people"] == [s for s in everything if s.kind != "service"]
    assert by_kind["services"] == [s for s in everything if s.kind == "service"]
    # A page of services, then of people: each its own listing.
    first = await auth.stub.list_sessions(
        v1.ListSessionsRequest(token=own[0], page=v1.PageRequest(page_size=2), kind="people")
    )
    assert len(first.sessions) == 2
    assert first.next_page_token
    for kind in ("services", "all", ""):
        error = await expect_status(
            auth.stub.list_sessions(
                v1.ListSessionsRequest(
                    token=own[0], page=v1.PageRequest(page_token=first.next_page_token), kind=kind
                )
            ),
            Status.INVALID_ARGUMENT,
        )
        assert "page.page_token" in (error.message or "")
    error = await expect_status(
        auth.stub.list_sessions(v1.ListSessionsRequest(token=own[0], kind="robots")),
        Status.INVALID_ARGUMENT,
    )
    assert "kind" in (error.message or "")
    assert "people" in (error.message or "")


async def test_every_page_says_how_many_of_its_kind_there_are_and_how_late_last_use_is(
    auth: AuthServer,
) -> None:
    """A page of 2 of 7 services' sessions says 7 (the web's folded line showed "2+"),
    a page of people's 3, and both say how far behind last use may be, from the
    granularities the Authenticator writes it with, not a figure of its own."""
    name = unique("counted")
    record = await auth.add_user(name, password="pw")
    own = [await sign_in(auth, name, f"192.0.2.{70 + i}") for i in range(3)]
    for _ in range(7):
        await auth.stub.issue_assertion(v1.IssueAssertionRequest(user_id=record.user_id))

    async def page(kind: str, token: str = "") -> v1.ListSessionsResponse:
        return await auth.stub.list_sessions(
            v1.ListSessionsRequest(
                token=own[0], page=v1.PageRequest(page_size=2, page_token=token), kind=kind
            )
        )

    services = await page("services")
    assert (len(services.sessions), services.total_count) == (2, 7)
    later = await page("services", services.next_page_token)
    assert later.total_count == 7
    assert (await page("people")).total_count == 3
    assert (await page("")).total_count == 10
    await auth.stub.end_session(
        v1.EndSessionRequest(token=own[0], session_id=services.sessions[0].session_id)
    )
    assert (await page("services")).total_count == 6
    assert services.last_used_granularity_seconds == LAST_USED_GRANULARITY_SECONDS
    assert (
        services.certificate_last_used_granularity_seconds
        == CERTIFICATE_LAST_USED_GRANULARITY_SECONDS
    )
