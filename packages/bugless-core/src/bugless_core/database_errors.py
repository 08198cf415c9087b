"""What a database driver's error means: the database away, or a bug.

Every service that keeps state in PostgreSQL or CockroachDB (the Model's
backends, the Authenticator's store, the notifier's queue) must tell the two
apart: the database away is an outage (answer UNAVAILABLE, try the loop's
round again later, log it once: :class:`~bugless_core.supervision.OutageLog`);
anything else is a bug (a traceback, a failure counted). This module is the
one home of that rule, and it imports no driver, so bugless-core depends on
none (as :mod:`bugless_core.transactions` reads only the SQLSTATE):

* an error the database reported carries a ``sqlstate`` (asyncpg's and
  psycopg's alike; the server ending a connection is one too, 57P01 or
  08003), and its class (the first two characters) says which it is: a
  connection exception (08), credentials refused (28), a transaction the
  database gave up on (40: serialization failure, deadlock), insufficient
  resources (53), operator intervention (57: shutdown, a cancelled
  statement) and system errors (58: I/O; CockroachDB's range unavailable)
  are the database away, and so are a few codes of other classes (below);
  the rest (42 syntax or undefined table or column, 22 data exception, 23
  integrity constraint, XX internal error, ...) are the statement's own
  fault, a bug;
* an unreachable server is an ``OSError`` (refused, reset, timed out);
* the driver's own *client-side* errors carry neither, and only some of them
  mean the connection is gone: :func:`is_connection_lost` names asyncpg's.

asyncpg's client-side classes mix the two, so the class alone does not say
which it is, and :func:`is_connection_lost` reads the message too:

* ``InterfaceError`` is "connection is closed" and "connection has been
  released back to the pool" (the pool took back a connection the server
  ended); but also a wrong number of query arguments, a second operation
  started on a busy connection, or "pool is closed" (the process closed its
  own pool and went on using it): bugs, which no retry mends. Its subclasses
  (``ClientConfigurationError``, ``Unsupported...``) are bugs, always.
* ``InternalClientError`` is asyncpg's "cannot happen" class: a codec or
  protocol invariant broken, which is a bug; but the server ending an idle
  connection also lands there. The server's FATAL message arrives before the
  socket's end, finds the protocol idle, and leaves it discarding messages
  until the end is read; a statement started in between is refused with
  "cannot switch to state 11; another operation (2) is in progress" (11 is
  PREPARE, 2 the discarding state; older asyncpg: "another operation is in
  progress"), and one after the end with "... protocol is in the "failed"
  state" or "not connected". Those, and only those, are an outage.

The codes outside those classes that are the database away, and why (each
is raised from a real PostgreSQL in ``tests/test_database_errors.py``, but
25P03, which asyncpg reports as the connection closed):

* 3D000 invalid_catalog_name, "database ... does not exist": bugless names
  no other database in a statement, so it comes from connecting, when the
  database was dropped to be restored, renamed, or not yet created on the
  server a failover moved to. A restore ends; retrying is right, and the
  caller says UNAVAILABLE (:func:`is_unreachable`) with the server's words.
  A wrong ``--database-url`` says the same at start-up, where the service
  stops on it, so nothing hides a typo.
* 25P03 idle_in_transaction_session_timeout: the server ended a connection
  whose transaction sat idle too long, as 57P05 ends an idle session. The
  connection is gone and the next round gets another (:func:`is_unreachable`);
  a stall of this process and a network that dropped the client's next
  statement look the same from here. asyncpg itself reports it as the
  connection closed (08003, or ``InterfaceError``); psycopg reports 25P03.
* 25006 read_only_sql_transaction: a write on a standby answering for the
  primary mid-failover.
* 55P03 lock_not_available: ``lock_timeout`` (an operator's ``ALTER ROLE
  ... SET lock_timeout``) or ``NOWAIT`` gave up waiting for a lock another
  transaction holds: contention, like class 40, which a later round gets
  past. It is no *unreachable* database (the connection is fine), so, like
  57014 (a statement cancelled by ``statement_timeout``), callers that
  answer a request word it themselves (:func:`is_statement_given_up`
  names both: the Model and the Authenticator's store answer UNAVAILABLE,
  "retry").

57P01 admin_shutdown, 57P02 crash_shutdown and 57P03 cannot_connect_now are
class 57, and :data:`_UNREACHABLE_SQLSTATES` names them too. Other codes
that look transient are left bugs on purpose: 55000 (also a database closed
to connections by ``ALLOW_CONNECTIONS false``, but mostly statements used
out of order), 55006 object_in_use, 42501 insufficient_privilege (a role
without a grant stays without it until someone acts: an ERROR is what gets
them to).

If a later asyncpg words them differently, they are taken for bugs: logged
with a traceback and counted, which is loud, never silent.
``tests/test_database_errors.py`` provokes each on a real connection to a
real PostgreSQL, so an upgrade that changes one fails there first.
"""

from __future__ import annotations

from bugless_core.errors import BuglessError

#: asyncpg's client-side error classes (by name: the driver is not imported)
#: and what their message says when the connection is gone.
_ASYNCPG_CONNECTION_LOST: dict[str, tuple[str, ...]] = {
    "InterfaceError": (
        "connection is closed",
        "released back to the pool",
    ),
    "InternalClientError": ("cannot switch to", "not connected"),
}


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncpg saying, on the client side, that the connection is gone.

    Exactly the classes named above (never their subclasses, which are
    argument and configuration errors), and only with a message saying so;
    see the module's docstring for why each one counts. Errors the server
    reported (ending a connection included) carry a ``sqlstate`` instead and
    are :func:`is_database_error`'s other half.
    """
    cls = type(exc)
    words = _ASYNCPG_CONNECTION_LOST.get(cls.__name__)
    if words is None or cls.__module__.partition(".")[0] != "asyncpg":
        return False
    message = str(exc)
    return any(word in message for word in words)


#: SQLSTATEs (beyond class 08, connection exception) of a server that ended
#: the connection or will not take one: 57P01 admin_shutdown (a restart, or
#: ``pg_terminate_backend``), 57P02 crash_shutdown, 57P03 cannot_connect_now
#: (starting up, in crash recovery, shutting down, or a standby not yet
#: consistent), 57P05 idle_session_timeout, 25P03
#: idle_in_transaction_session_timeout, 53300 too_many_connections, and 3D000
#: invalid_catalog_name (the database not there: dropped for a restore,
#: renamed, not yet on the new primary). Not 57014, a statement cancelled,
#: nor 55P03, a lock not taken in time: the connection is fine, and callers
#: word those themselves.
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03", "53300", "3D000"})


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (answer UNAVAILABLE).

    An unreachable server or a timeout (``OSError``, ``TimeoutError``
    included), a connection exception (SQLSTATE class 08), the server ending
    or refusing connections (:data:`_UNREACHABLE_SQLSTATES`), or a connection
    asyncpg found gone (:func:`is_connection_lost`). The one list for every
    service that translates a call's error (the Model's backends, the
    Authenticator's store), so that a connection terminated mid-query is
    UNAVAILABLE in each, not INTERNAL in one.
    """
    if isinstance(exc, OSError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    ):
        return True
    return is_connection_lost(exc)


#: A statement the server gave up on, its connection fine: 57014 query_canceled
#: (``statement_timeout``, or an operator's ``pg_cancel_backend``) and 55P03
#: lock_not_available (``lock_timeout``, ``NOWAIT``).
_GIVEN_UP_SQLSTATES = frozenset({"57014", "55P03"})


def is_statement_given_up(exc: BaseException) -> bool:
    """Whether the server gave up on the statement (a timeout or a cancel); the connection is fine.

    Neither the database unreachable (:func:`is_unreachable` is false) nor a
    bug (:func:`is_database_error` is true): a request path answers
    UNAVAILABLE with a hint of its own ("retry shortly", "narrow the
    query"), rather than INTERNAL with a traceback.
    """
    return getattr(exc, "sqlstate", None) in _GIVEN_UP_SQLSTATES


#: SQLSTATE classes of the database away or refusing (the module's docstring).
_OUTAGE_CLASSES = frozenset({"08", "28", "40", "53", "57", "58"})
#: Codes outside those classes that are the database away or busy, not the
#: statement's fault: a write on a standby (25006: the primary moved) and a
#: lock not taken within ``lock_timeout`` or ``NOWAIT`` (55P03: contention).
_TRANSIENT_SQLSTATES = frozenset({"25006", "55P03"})


def is_database_error(exc: BaseException, expected: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``exc`` is the database away or refusing, rather than a bug.

    An error the database reported in an outage's SQLSTATE class or with a
    transient code (the module's docstring: 25006, 55P03), an unreachable
    server (:func:`is_unreachable`) or a
    :class:`~bugless_core.errors.BuglessError` a backend translated one into.
    A SQL mistake (an undefined table, a syntax or data error) is not: a loop
    that meets one logs it with its traceback, rather than as an outage.

    Args:
        exc: What a statement raised.
        expected: Another driver's client-side errors that mean the same
            (asyncpg's are known already).
    """
    if isinstance(exc, (BuglessError, *expected)) or is_unreachable(exc):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate[:2] in _OUTAGE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
    )


__all__ = ["is_connection_lost", "is_database_error", "is_statement_given_up", "is_unreachable"]
