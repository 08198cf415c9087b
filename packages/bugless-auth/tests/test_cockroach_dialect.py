"""The Authenticator on its CockroachDB dialect, in compatibility mode.

No CockroachDB server runs here, so the store's ``cockroach`` dialect runs
against PostgreSQL whose database defaults to SERIALIZABLE (real 40001s, as on
CockroachDB). Every test of this module records each statement any connection
sends (``bugless_testing.cockroach_sql``) and fails if one uses a function or
statement CockroachDB lacks (advisory locks, ``hashtextextended``,
``make_interval``, LISTEN/NOTIFY, ...).

The password contract (``bugless_testing.auth_contracts``), the session
and throttle tests of ``test_sessions``, the session listing of
``test_session_list`` and the sessions-vs-disable races of
``test_sessions_vs_disable`` (an insert that waited on a disable's row fails
with 40001 here, and runs again) and the simultaneous first connections of one
certificate of ``test_certificate_sessions`` (the loser's insert fails with
40001, runs again and finds the winner's session), the end of a refused certificate's
sessions of ``test_mapped_sessions`` and the simultaneous look-alike usernames of
``test_confusable_usernames`` (no lock here: the second create fails with 40001, runs
again and is refused) run here again, unchanged, on this dialect:
their fixtures are overridden below to start the Authenticator on the
SERIALIZABLE database with ``database_dialect="cockroach"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from auth_support import (
    TEST_ENDS,
    KeyFiles,
    StartAuth,
    ldap_identity,
    set_disabled,
    start_auth_servers,
)
from test_auth_conformance import TestLocalPasswords, password_backend_case
from test_certificate_sessions import (
    people,
    test_a_connection_racing_the_certificates_revocation_leaves_no_live_session,
    test_a_first_connection_meeting_an_uncommitted_session_of_its_certificate_reuses_it,
    test_a_session_ends_when_its_certificate_expires,
    test_simultaneous_first_connections_with_one_certificate_make_one_session,
    test_simultaneous_renewals_of_a_session_with_little_life_left_make_one_new_session,
)
from test_confusable_usernames import (
    test_two_look_alike_names_created_at_the_same_moment_are_not_both_made,
)
from test_mapped_sessions import (
    deployment,
    pki,
    test_a_certificate_its_ca_no_longer_signs_for_loses_its_session_at_its_refusal,
)
from test_session_list import (
    session_replicas,
    test_a_kind_lists_only_its_sessions_and_pages_through_all_of_them,
    test_a_person_sees_their_live_sessions_how_and_where_made_and_which_is_this_one,
    test_a_services_assertion_is_listed_as_a_session_of_its_own,
    test_a_session_may_end_itself,
    test_an_administrator_lists_and_ends_another_users_sessions,
    test_another_persons_session_is_not_found_as_if_it_did_not_exist,
    test_bad_requests_are_refused_naming_the_field,
    test_ending_a_session_by_id_is_refused_on_every_replica_at_once,
    test_last_use_is_recorded_when_the_one_recorded_is_minutes_old,
    test_pages_list_every_session_once_and_a_token_fits_only_its_listing,
)
from test_sessions import (
    replicas,
    test_a_correctly_signed_token_without_a_session_is_refused,
    test_a_success_refills_the_address_bucket,
    test_an_administrator_ends_another_users_sessions_and_nobody_else_may,
    test_an_ended_session_cannot_end_the_others,
    test_disabling_a_user_ends_their_sessions_on_every_replica_at_once,
    test_one_address_cannot_lock_a_user_out,
    test_sign_out_everywhere_ends_every_session_of_the_user_only,
    test_signing_out_on_one_replica_ends_the_token_on_the_other,
    test_the_throttle_is_shared_by_the_replicas,
)
from test_sessions_vs_disable import (
    test_a_certificate_recorded_after_the_disable_revoked_the_others_is_refused,
    test_a_disable_waiting_for_a_recorded_sessions_row_lock_then_ends_it,
    test_a_merged_placeholders_assertion_is_its_accounts_session_and_ends_with_it,
    test_a_replica_that_has_not_heard_of_a_disable_issues_no_assertion,
    test_a_sign_in_recorded_after_the_disable_ended_the_sessions_is_refused,
    test_an_assertion_recorded_after_the_disable_ended_the_sessions_is_refused,
    test_an_assertion_waiting_for_the_disables_row_lock_is_refused,
    test_disables_racing_assertions_and_sign_ins_leave_no_live_session,
)

from bugless_auth import disabling
from bugless_auth._dialect import COCKROACH, POSTGRES
from bugless_auth.placeholders import match_people, merge_placeholder
from bugless_auth.sessions import SessionStore
from bugless_auth.settings import AuthSettings, ThrottleSettings
from bugless_auth.store import IdentityStore
from bugless_auth.throttle import LoginThrottle
from bugless_auth.user_feed import prune_user_changes, read_user_changes
from bugless_core.errors import InvalidArgument
from bugless_core.settings import declared_env_vars, settings_from_environ
from bugless_core.transactions import CockroachRetryPolicy
from bugless_proto import v1
from bugless_testing.cockroach_sql import (
    StatementRecorder,
    cockroach_incompatibilities,
    serializable_database,
)

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

#: Re-run here in compatibility mode (collected in this module, with its fixtures).
RERUN = (
    TestLocalPasswords,
    password_backend_case,
    replicas,
    test_a_correctly_signed_token_without_a_session_is_refused,
    test_a_success_refills_the_address_bucket,
    test_an_administrator_ends_another_users_sessions_and_nobody_else_may,
    test_an_ended_session_cannot_end_the_others,
    test_disabling_a_user_ends_their_sessions_on_every_replica_at_once,
    test_one_address_cannot_lock_a_user_out,
    test_sign_out_everywhere_ends_every_session_of_the_user_only,
    test_signing_out_on_one_replica_ends_the_token_on_the_other,
    test_the_throttle_is_shared_by_the_replicas,
    test_a_replica_that_has_not_heard_of_a_disable_issues_no_assertion,
    test_an_assertion_recorded_after_the_disable_ended_the_sessions_is_refused,
    test_a_sign_in_recorded_after_the_disable_ended_the_sessions_is_refused,
    test_a_certificate_recorded_after_the_disable_revoked_the_others_is_refused,
    test_an_assertion_waiting_for_the_disables_row_lock_is_refused,
    test_a_disable_waiting_for_a_recorded_sessions_row_lock_then_ends_it,
    test_a_merged_placeholders_assertion_is_its_accounts_session_and_ends_with_it,
    test_disables_racing_assertions_and_sign_ins_leave_no_live_session,
    session_replicas,
    test_a_person_sees_their_live_sessions_how_and_where_made_and_which_is_this_one,
    test_pages_list_every_session_once_and_a_token_fits_only_its_listing,
    test_ending_a_session_by_id_is_refused_on_every_replica_at_once,
    test_a_session_may_end_itself,
    test_another_persons_session_is_not_found_as_if_it_did_not_exist,
    test_an_administrator_lists_and_ends_another_users_sessions,
    test_bad_requests_are_refused_naming_the_field,
    test_last_use_is_recorded_when_the_one_recorded_is_minutes_old,
    test_a_services_assertion_is_listed_as_a_session_of_its_own,
    test_a_kind_lists_only_its_sessions_and_pages_through_all_of_them,
    people,
    deployment,
    pki,
    test_a_certificate_its_ca_no_longer_signs_for_loses_its_session_at_its_refusal,
    test_simultaneous_first_connections_with_one_certificate_make_one_session,
    test_simultaneous_renewals_of_a_session_with_little_life_left_make_one_new_session,
    test_a_session_ends_when_its_certificate_expires,
    test_a_first_connection_meeting_an_uncommitted_session_of_its_certificate_reuses_it,
    test_a_connection_racing_the_certificates_revocation_leaves_no_live_session,
    test_two_look_alike_names_created_at_the_same_moment_are_not_both_made,
)


@pytest.fixture(scope="session")
async def serializable_auth_database(postgres_server: ThrowawayPostgres) -> str:
    """A database whose transactions default to SERIALIZABLE, as CockroachDB's do."""
    return await serializable_database(postgres_server, "auth_cockroach_compat")


#: The one test that runs the postgres dialect on purpose, to prove the check sees it.
SENDS_POSTGRES_ONLY_SQL = "test_the_postgres_dialect_is_what_the_check_would_refuse"


@pytest.fixture(autouse=True)
def statements(request: pytest.FixtureRequest) -> Iterator[StatementRecorder]:
    """Every statement this test's connections send; none may be one CockroachDB lacks."""
    with StatementRecorder() as recorder:
        yield recorder
    # That the recorder sees the store's own pools is proven by SENDS_POSTGRES_ONLY_SQL.
    if request.node.name != SENDS_POSTGRES_ONLY_SQL:
        assert recorder.incompatibilities() == {}


@pytest.fixture
async def start_auth_server(
    serializable_auth_database: str, key_files: KeyFiles
) -> AsyncIterator[StartAuth]:
    """Authenticators on the SERIALIZABLE database, on the cockroach dialect."""
    async with start_auth_servers(
        key_files, database_url=serializable_auth_database, database_dialect="cockroach"
    ) as start:
        yield start


async def open_store(url: str, dialect: str, *, pool_max_size: int = 4) -> IdentityStore:
    schema = f"auth_{secrets.token_hex(4)}"
    await IdentityStore.migrate(url, schema, dialect=dialect)
    return await IdentityStore.open(url, schema, dialect=dialect, pool_max_size=pool_max_size)


async def exercise(store: IdentityStore) -> None:
    """Every statement of the store, the sessions and the throttle, once."""
    name = f"all-{secrets.token_hex(3)}"
    record, _ = await store.resolve(ldap_identity(name, groups=("eng",)), "ldap")
    await store.resolve(ldap_identity(name, groups=("eng",)), "ldap")  # the existing-subject path
    local = await store.create_local_user(
        username=f"{name}-local", display_name="", email="", groups=(), password_hash="x"
    )
    await store.set_local_password(local.username, "y")
    await store.local_credentials(local.username)
    await store.users_by_ids([record.user_id])
    await store.users_by_usernames([name])
    await store.suggest(name[:4], 5)
    await store.subjects_of("ldap")
    await disabling.directory_disable(store, record.user_id, TEST_ENDS)
    await store.directory_enable(record.user_id)
    await store.resolve(ldap_identity(name, groups=("eng",)), "ldap", sign_in=False)
    sessions = SessionStore(store)
    recorded = await sessions.record(
        "s1" + name, user_id=record.user_id, authenticator="ldap", client_address="", expires_at=1
    )
    assert recorded is None
    await set_disabled(store, name, True)
    refused = await sessions.record(
        "s2" + name, user_id=record.user_id, authenticator="ldap", client_address="", expires_at=1
    )
    assert refused is not None
    assert refused.reason == "USER_DISABLED"
    await sessions.is_live("s1" + name)
    await sessions.list_live(record.user_id, after=None, limit=10)
    await sessions.end("s1" + name, owner=record.user_id, reason="test")
    await sessions.revoke("s1" + name, "test")
    await sessions.revoke_user(record.user_id, "test")
    throttle = LoginThrottle(ThrottleSettings(), store)
    await throttle.failed(name, "10.0.0.1")
    await throttle.check(name, "10.0.0.1")
    await throttle.succeeded(name, "10.0.0.1")
    people = [v1.SourcePerson(key=f"{name}-{n}", username=f"{name}-{n}") for n in (1, 2)]
    placeholders = await match_people(store, "trac", people, create_placeholders=True)
    assert placeholders[0].user is not None
    await merge_placeholder(store, placeholders[0].user.username, name)
    head = await read_user_changes(store, 0)
    await read_user_changes(store, 1)
    await read_user_changes(store, head.version, page_rows=1)
    await prune_user_changes(store, 3600)


async def test_the_store_sends_nothing_cockroachdb_lacks_and_migrates_under_a_lease(
    serializable_auth_database: str, statements: StatementRecorder
) -> None:
    store = await open_store(serializable_auth_database, "cockroach")
    try:
        assert store.dialect is COCKROACH
        await exercise(store)
        leases = await store.run(
            lambda conn: conn.fetchval("SELECT count(*) FROM bugless_leases WHERE name = 'migrate'")
        )
    finally:
        await store.close()
    assert leases == 1  # the migration held the lease row, not an advisory lock
    sent = "\n".join(statements.statements)
    assert "INSERT INTO external_subjects" in sent
    assert "login_throttle" in sent
    assert "INSERT INTO user_changes" in sent
    assert "DELETE FROM user_changes" in sent


async def test_the_postgres_dialect_is_what_the_check_would_refuse(
    auth_database: str, statements: StatementRecorder
) -> None:
    """The recorder sees the store's own pools: the postgres dialect's locks are flagged."""
    store = await open_store(auth_database, "postgres")
    try:
        await store.resolve(ldap_identity(f"pg-{secrets.token_hex(3)}", groups=("eng",)), "ldap")
    finally:
        await store.close()
    flagged = {name for found in statements.incompatibilities().values() for name in found}
    assert {"pg_advisory_lock()", "pg_advisory_xact_lock()", "hashtextextended()"} <= flagged


def test_the_check_reads_code_not_comments_or_strings() -> None:
    assert cockroach_incompatibilities("SELECT 1 -- pg_advisory_lock(1)") == []
    assert cockroach_incompatibilities("SELECT 'make_interval(secs => 1)'") == []
    assert cockroach_incompatibilities("DELETE FROM t WHERE x < now() - MAKE_INTERVAL (secs => $1)")
    assert cockroach_incompatibilities("LISTEN bugless_changes") == ["LISTEN"]
    assert cockroach_incompatibilities("SELECT 1; NOTIFY c") == ["NOTIFY"]
    header = "-- a migration's header\n/* and more */\n"
    aggregate = "CREATE  AGGREGATE\n  concat_agg (tsvector) (SFUNC = tsvector_concat)"
    assert cockroach_incompatibilities(header + aggregate) == ["CREATE AGGREGATE"]
    assert cockroach_incompatibilities("SELECT 'x';\n" + aggregate) == ["CREATE AGGREGATE"]
    assert cockroach_incompatibilities("SELECT 'CREATE AGGREGATE a'") == []


class CountingRetries(CockroachRetryPolicy):
    """The CockroachDB policy, counting the conflicts it retried."""

    seen: list[BaseException]

    def is_retryable(self, exc: BaseException) -> bool:
        retryable = super().is_retryable(exc)
        if retryable:
            self.seen.append(exc)
        return retryable


async def test_first_sign_ins_racing_without_a_lock_make_one_user_through_real_40001s(
    serializable_auth_database: str,
) -> None:
    store = await open_store(serializable_auth_database, "cockroach", pool_max_size=8)
    retries = CountingRetries(attempts=12, base_delay=0.01, max_delay=0.2, jitter=True)
    object.__setattr__(retries, "seen", [])
    store.dialect = dataclasses.replace(COCKROACH, retries=retries)
    name = f"race-{secrets.token_hex(3)}"
    try:
        records = await asyncio.gather(
            *(store.resolve(ldap_identity(name, groups=("eng",)), "ldap") for _ in range(8))
        )
        users = await store.users_by_usernames([name])
    finally:
        await store.close()
    assert {r.user_id for r, _ in records} == {users[0].user_id}
    assert len(users) == 1
    assert retries.seen, "no transaction conflicted: the race was not exercised"
    assert all(getattr(e, "sqlstate", "") == "40001" for e in retries.seen)


async def test_the_cockroach_dialect_refuses_postgresql_that_is_not_serializable(
    auth_database: str,
) -> None:
    with pytest.raises(InvalidArgument, match="needs default_transaction_isolation"):
        await IdentityStore.migrate(auth_database, "never_made", dialect="cockroach")
    conn = await asyncpg.connect(auth_database)
    try:
        made = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'never_made'")
    finally:
        await conn.close()
    assert made == 0


def test_the_dialect_is_a_declared_setting_that_refuses_unknown_names() -> None:
    assert "BUGLESS_AUTH_DATABASE_DIALECT" in declared_env_vars(
        AuthSettings, env_prefix="BUGLESS_AUTH_"
    )
    base: dict[str, Any] = {"BUGLESS_AUTH_DATABASE_URL": "postgresql://x/y"}
    chosen = settings_from_environ(
        AuthSettings,
        {**base, "BUGLESS_AUTH_DATABASE_DIALECT": "cockroach"},
        env_prefix="BUGLESS_AUTH_",
    )
    assert chosen.database_dialect == "cockroach"
    default = settings_from_environ(AuthSettings, base, env_prefix="BUGLESS_AUTH_")
    assert default.database_dialect == "postgres"
    with pytest.raises(InvalidArgument, match="BUGLESS_AUTH_DATABASE_DIALECT"):
        settings_from_environ(
            AuthSettings,
            {**base, "BUGLESS_AUTH_DATABASE_DIALECT": "mysql"},
            env_prefix="BUGLESS_AUTH_",
        )
    assert POSTGRES.subject_lock is not None
    assert COCKROACH.subject_lock is None
