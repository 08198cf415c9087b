"""What the identity store does differently on CockroachDB: its two dialects.

Chosen by configuration (``--database-dialect``, ``BUGLESS_AUTH_DATABASE_DIALECT``),
and checked against the server when the store opens:

* :data:`POSTGRES`: PostgreSQL at its default READ COMMITTED. Two first
  sign-ins of one new subject are kept apart by a transaction-scoped advisory
  lock on the subject, and two new local usernames' look-alike checks by one
  on the check (:data:`USERNAME_CHECK_LOCK`); migrations hold a session
  advisory lock (:class:`~bugless_core.migrations.AdvisoryLock`).
* :data:`COCKROACH`: CockroachDB, or PostgreSQL running SERIALIZABLE by
  default (*compatibility mode*, how this is tested where no CockroachDB
  server exists). CockroachDB has no advisory locks (they are undefined or
  no-op stubs: cockroachdb/cockroach#13546), so nothing here takes one:
  SERIALIZABLE turns the race of two first sign-ins into a 40001 for one of
  them, which re-runs the whole transaction
  (:data:`~bugless_core.transactions.COCKROACH_RETRIES`) and finds the
  subject the other created, and so the race of two look-alike names (each
  check reads every user, which the other's insert writes among); migrations
  hold a lease row
  (:class:`~bugless_core.migrations.LeaseLock`).

Every statement of the store is shared by both dialects except the subject
lock; the tests record each statement the store sends on the CockroachDB
dialect and check none uses a function CockroachDB lacks
(``bugless_testing.cockroach_sql``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bugless_core.errors import InvalidArgument
from bugless_core.migrations import AdvisoryLock, LeaseLock, MigrationLock
from bugless_core.transactions import COCKROACH_RETRIES, POSTGRES_RETRIES, RetryPolicy

#: Serialises the first sign-ins of one subject on PostgreSQL.
SUBJECT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('bugless-auth-subject:' || $1, 0))"
#: Serialises the look-alike checks of new local usernames on PostgreSQL
#: (:func:`bugless_auth.confusable_names.refuse_confusable`): at READ
#: COMMITTED two checks that overlap each read the users before the other's
#: insert commits, and both names pass. Held to the end of the transaction
#: that writes the name; a check that waited for it reads the users after the
#: other's commit. One key for every name, since a skeleton's look-alikes
#: cannot be told from the name without the check: creates and renames are an
#: administrator's rare commands, and only they wait.
USERNAME_CHECK_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('bugless-auth-username-check', 0))"
)
#: Tells CockroachDB from PostgreSQL ("CockroachDB CCL v23.2.4 (...)").
SERVER_VERSION = "SELECT version()"
#: Compatibility mode needs SERIALIZABLE, CockroachDB's default.
DEFAULT_ISOLATION = "SELECT current_setting('default_transaction_isolation')"


@dataclass(frozen=True)
class StoreDialect:
    """The few things the store does differently per database.

    Attributes:
        name: The configuration value that selects it.
        subject_lock: Run first in :meth:`IdentityStore.resolve`'s transaction;
            ``None`` where SERIALIZABLE already forbids the race.
        username_check_lock: Run before a new local username's look-alike
            check, in the transaction that writes it (:data:`USERNAME_CHECK_LOCK`);
            ``None`` where SERIALIZABLE already forbids the race.
        migration_lock: Keeps concurrent ``migrate`` runs apart.
        retries: What re-runs a transaction, and how often.
        serializable: Whether it needs the server's transactions SERIALIZABLE
            (checked on open; CockroachDB always is).
    """

    name: str
    subject_lock: str | None
    username_check_lock: str | None
    migration_lock: MigrationLock
    retries: RetryPolicy
    serializable: bool


POSTGRES = StoreDialect(
    name="postgres",
    subject_lock=SUBJECT_LOCK,
    username_check_lock=USERNAME_CHECK_LOCK,
    migration_lock=AdvisoryLock(),
    retries=POSTGRES_RETRIES,
    serializable=False,
)

COCKROACH = StoreDialect(
    name="cockroach",
    subject_lock=None,
    username_check_lock=None,
    migration_lock=LeaseLock(),
    retries=COCKROACH_RETRIES,
    serializable=True,
)

DIALECTS = {d.name: d for d in (POSTGRES, COCKROACH)}


def dialect_named(name: str) -> StoreDialect:
    """The dialect a setting names.

    Raises:
        ValueError: no such dialect (the message lists them).
    """
    try:
        return DIALECTS[name]
    except KeyError:
        choices = ", ".join(sorted(DIALECTS))
        raise ValueError(f"database_dialect: {name!r} is not one of {choices}") from None


async def keep_session_as_is(conn: Any) -> None:
    """The pool's reset on release: nothing beyond asyncpg's ROLLBACK of a stray transaction.

    asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on PostgreSQL, and the first is a function CockroachDB lacks.
    Nothing of the store leaves session state behind: its only advisory lock
    is transaction-scoped, it never LISTENs or opens cursors, and its one
    setting (``search_path``) is a startup parameter.
    """
    del conn


async def check_server(conn: Any, dialect: StoreDialect) -> None:
    """Refuse a server the configured dialect cannot run on, saying what to change.

    Each refusal is of the configuration (the ``database_dialect`` setting,
    or the database's default isolation it needs), not of a state that
    changes by itself, so it is an :class:`InvalidArgument`: ``bugless auth
    migrate`` and ``auth user`` exit 2 with it, bad configuration in the
    documented exit statuses (a FailedPrecondition was 1, a failed service's
    status); ``auth serve`` exits 1 for any failed start.

    Raises:
        InvalidArgument: the postgres dialect on CockroachDB (it would call
            advisory-lock functions CockroachDB lacks), or the cockroach
            dialect on PostgreSQL whose transactions are not SERIALIZABLE
            (nothing would stop two first sign-ins of one subject).
    """
    on_cockroach = "CockroachDB" in (await conn.fetchval(SERVER_VERSION) or "")
    if on_cockroach and not dialect.serializable:
        raise InvalidArgument(
            "database_dialect: the server is CockroachDB, which has no advisory locks; "
            "set --database-dialect cockroach (BUGLESS_AUTH_DATABASE_DIALECT=cockroach)"
        )
    if dialect.serializable and not on_cockroach:
        isolation = await conn.fetchval(DEFAULT_ISOLATION)
        if isolation != "serializable":
            raise InvalidArgument(
                f"database_dialect {dialect.name} on PostgreSQL (compatibility mode) needs "
                f"default_transaction_isolation = serializable, the server has {isolation!r}: "
                "ALTER DATABASE ... SET default_transaction_isolation = 'serializable'"
            )
