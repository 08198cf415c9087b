"""The indexes of the sessions and users tables serve the queries run on every poll.

The Model's replicas each ask every few seconds which sessions ended within an
assertion's lifetime (``SessionStore.revoked_within``), and every refused client
certificate ends its sessions (``MappedSessions.end_refused``). On a table of
many sessions, each must read an index, not every row: the plan is checked with
EXPLAIN after ANALYZE, on a table big enough that a scan would cost more.
"""

from __future__ import annotations

import json
import secrets
import time

from auth_support import unique

from bugless_auth import _queries as sql
from bugless_auth import _session_queries as session_sql
from bugless_auth import mapped_sessions
from bugless_auth.mapped_sessions import MappedSessions
from bugless_auth.sessions import SessionStore
from bugless_auth.store import IdentityStore

#: Session rows in the table; 1 in 50 revoked a day ago, a few just now.
ROWS = 20_000


async def test_recently_ended_sessions_are_found_through_their_index(auth_database: str) -> None:
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(auth_database, schema, dialect="postgres")
    store = await IdentityStore.open(auth_database, schema, dialect="postgres")
    try:
        user = await store.create_local_user(
            username=unique("many"), display_name="", email="", groups=(), password_hash="x"
        )
        await store.run(
            lambda conn: conn.execute(
                """
                INSERT INTO sessions (session_id, user_id, authenticator, expires_at, revoked_at)
                SELECT 's' || n, $1, 'local', now() + interval '1 day',
                       CASE WHEN n % 50 = 0 THEN now() - interval '1 day' END
                  FROM generate_series(1, $2::int) AS n
                """,
                user.user_id,
                ROWS,
            )
        )
        sessions = SessionStore(store)
        for n in range(3):
            await sessions.record(
                f"ended-{n}",
                user_id=user.user_id,
                authenticator="local",
                client_address="",
                expires_at=time.time() + 3600,
            )
            assert await sessions.revoke(f"ended-{n}", "test") == 1
        await store.run(lambda conn: conn.execute("ANALYZE sessions"))
        query = session_sql.REVOKED_SINCE  # the statement under test
        plan = await store.run(lambda conn: conn.fetchval("EXPLAIN (FORMAT JSON) " + query, 30.0))
        assert await sessions.revoked_within(30.0) == ["ended-0", "ended-1", "ended-2"]
    finally:
        await store.close()
    text = json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    assert "sessions_recently_ended" in text, f"the poll scans the table: {text}"
    assert "Seq Scan" not in text


async def test_merged_placeholders_of_looked_up_users_are_found_through_their_index(
    auth_database: str,
) -> None:
    """Each look-up by username reads the placeholders merged into the account."""
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(auth_database, schema, dialect="postgres")
    store = await IdentityStore.open(auth_database, schema, dialect="postgres")
    try:
        await store.run(
            lambda conn: conn.execute(
                """
                INSERT INTO users (user_id, username, username_key, placeholder, merged_into)
                SELECT 'u' || n, 'user' || n, 'user' || n, n % 100 = 0,
                       CASE WHEN n % 1000 = 0 THEN 'u1' ELSE '' END
                  FROM generate_series(1, $1::int) AS n
                """,
                ROWS,
            )
        )
        await store.run(lambda conn: conn.execute("ANALYZE users"))
        (found,) = await store.users_by_usernames(["USER1"])
        plan = await store.run(
            lambda conn: conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + sql.USERS_BY_USERNAMES, ["user1", "user2"]
            )
        )
    finally:
        await store.close()
    assert found.merged_ids == tuple(sorted(f"u{n}" for n in range(1000, ROWS + 1, 1000)))
    text = json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    assert "users_merged_into" in text, f"each look-up scans the users: {text}"
    assert "users_by_username_key" in text, f"each look-up scans the users: {text}"
    assert "Seq Scan" not in text


async def test_a_refused_certificates_sessions_are_found_through_their_index(
    auth_database: str,
) -> None:
    """Any certificate the API's CA bundle lets through may be refused, as often as
    it connects: ending its sessions reads the index of live certificate
    sessions, never the table, and ends only that certificate's."""
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(auth_database, schema, dialect="postgres")
    store = await IdentityStore.open(auth_database, schema, dialect="postgres")
    try:
        user = await store.create_local_user(
            username=unique("bot"), display_name="", email="", groups=(), password_hash="x"
        )
        await store.run(
            lambda conn: conn.execute(
                """
                INSERT INTO sessions (session_id, user_id, authenticator, expires_at, revoked_at,
                                      certificate)
                SELECT 's' || n, $1, 'tls', now() + interval '1 day',
                       CASE WHEN n % 3 = 0 THEN now() - interval '1 day' END,
                       CASE WHEN n % 2 = 0 THEN 'fingerprint-' || (n % 5000) END
                  FROM generate_series(1, $2::int) AS n
                """,
                user.user_id,
                ROWS,
            )
        )
        await store.run(lambda conn: conn.execute("ANALYZE sessions"))
        live = await store.run(
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM sessions WHERE certificate = 'fingerprint-2' "
                "AND revoked_at IS NULL"
            )
        )
        ended = await MappedSessions(store, []).end_refused("fingerprint-2")
        plan = await store.run(
            lambda conn: conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + mapped_sessions.END_REFUSED,
                "fingerprint-4",
                mapped_sessions.REFUSED_REASON,
                mapped_sessions.REFUSED_SESSIONS_LIMIT,
            )
        )
        left = await store.run(
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM sessions WHERE revoked_reason = $1",
                mapped_sessions.REFUSED_REASON,
            )
        )
    finally:
        await store.close()
    assert live > 0
    assert ended == live == left
    text = json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    assert "sessions_live_by_certificate" in text, f"a refusal scans the sessions: {text}"
    assert "Seq Scan" not in text


async def test_group_members_are_counted_through_the_index_of_groups(auth_database: str) -> None:
    """CountGroupMembers reads the index of enabled users' groups (migration 0017),
    not every user: on a directory of many users, counting a few groups reads
    their members' entries, and still leaves the disabled and placeholders out."""
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(auth_database, schema, dialect="postgres")
    store = await IdentityStore.open(auth_database, schema, dialect="postgres")
    try:
        await store.run(
            lambda conn: conn.execute(
                """
                INSERT INTO users (user_id, username, username_key, groups, disabled, placeholder)
                SELECT 'u' || n, 'user' || n, 'user' || n,
                       ARRAY['team-' || (n % 200), 'everyone']
                         || CASE WHEN n % 1000 = 0 THEN ARRAY['admins'] ELSE '{}' END,
                       n % 4000 = 0, n % 5000 = 0
                  FROM generate_series(1, $1::int) AS n
                """,
                ROWS,
            )
        )
        # Every third user is a directory's (the people a directory's own count holds).
        await store.run(
            lambda conn: conn.execute(
                """
                INSERT INTO external_subjects (subject, user_id, authenticator)
                SELECT 'ldap:' || n, 'u' || n, 'ldap' FROM generate_series(3, $1::int, 3) AS n
                """,
                ROWS,
            )
        )
        await store.run(lambda conn: conn.execute("ANALYZE users; ANALYZE external_subjects"))
        counts = await store.count_group_members(["admins", "team-7", "nobody's"], outside=["ldap"])
        plan = await store.run(
            lambda conn: conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + sql.COUNT_GROUP_MEMBERS, ["admins", "team-7"], ["ldap"]
            )
        )
    finally:
        await store.close()
    # 20 admins (n = 1000 .. 20000), less n = 4000, 8000, 12000, 16000, 20000 (disabled)
    # and 5000, 10000, 15000 (placeholders; 20000 is both).
    # Of those, the directory's: admins 3000, 6000, 9000 and 18000; team-7's
    # 7 + 200k for k = 1, 4, .., 97 (33).
    assert counts == {"admins": (12, 8), "team-7": (100, 67), "nobody's": (0, 0)}
    text = json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    assert "users_by_group" in text, f"counting members scans the users: {text}"
    assert "Seq Scan" not in text
