"""Transaction retries: one home for "this transaction lost a conflict, run it again".

Every service that keeps state in PostgreSQL or CockroachDB (the Model's
backends, the Authenticator's store) re-runs a transaction the database
aborted to keep it serializable. What counts as such an abort and how long to
wait between tries is a :class:`RetryPolicy`; :func:`retrying` runs one. The
policies read only the SQLSTATE (and, for CockroachDB, its message), so this
module imports no driver and bugless-core depends on none.

* :data:`POSTGRES_RETRIES`: PostgreSQL under READ COMMITTED, where conflicts
  are rare (writers lock rows in a fixed order): a few quick tries.
* :data:`COCKROACH_RETRIES`: CockroachDB (or PostgreSQL at SERIALIZABLE),
  where contention surfaces as SQLSTATE 40001 and the client must re-run the
  whole transaction: more tries, capped exponential backoff, full jitter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bugless_core.backoff import Backoff
from bugless_core.errors import Unavailable

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: Serialization failure and deadlock: the database aborted the transaction
#: so that a concurrent one could commit; re-running it is safe.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction that lost a conflict is run again.

    The whole transaction is re-run from the start (a fresh context, nothing
    of the failed attempt kept), after a capped exponential backoff
    (:attr:`backoff`); after ``attempts`` tries the caller gets Unavailable.
    With ``jitter`` each delay is drawn uniformly from ``[0, capped delay]``
    ("full jitter"), so transactions that collided once do not collide again
    in lockstep.

    Attributes:
        attempts: Tries in all, the first included.
        base_delay: Seconds before the second try; doubles per try.
        max_delay: Upper bound of one delay, in seconds.
        jitter: Randomise each delay.

    Raises:
        ValueError: Delays that would not back off (see :class:`Backoff`).
    """

    attempts: int = 4
    base_delay: float = 0.01
    max_delay: float = 0.08
    jitter: bool = False

    def __post_init__(self) -> None:
        _ = self.backoff  # refuses delays that would not back off now, not at a conflict

    @property
    def backoff(self) -> Backoff:
        """The delays between tries, as the one :class:`~bugless_core.backoff.Backoff` rule."""
        return Backoff(
            first_seconds=self.base_delay,
            max_seconds=self.max_delay,
            jitter=1.0 if self.jitter else 0.0,
        )

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "this transaction lost a conflict: run it again"."""
        return getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        return self.backoff.delay(attempt + 1)


class CockroachRetryPolicy(RetryPolicy):
    """Retries what CockroachDB asks clients to retry.

    Under SERIALIZABLE, contention surfaces as SQLSTATE 40001 ("restart
    transaction: TransactionRetryWithProtoRefreshError ...", and
    ReadWithinUncertaintyIntervalError even for read-only transactions); the
    client must re-run the whole transaction. 40003 (statement completion
    unknown) is *not* retried: the commit may have happened.
    """

    def is_retryable(self, exc: BaseException) -> bool:
        """40001 in any form, the "restart transaction" errors, and deadlocks."""
        if super().is_retryable(exc):
            return True
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate is not None and sqlstate != "40003" and "restart transaction" in str(exc)


#: PostgreSQL's policy: conflicts are rare (writers lock rows in id order),
#: and unjittered: a deadlock aborts one of its transactions, not both, so
#: there is no herd to spread.
POSTGRES_RETRIES = RetryPolicy()

#: Contention is normal on CockroachDB: more tries, longer capped backoff,
#: full jitter so colliding transactions spread out.
COCKROACH_RETRIES = CockroachRetryPolicy(attempts=8, base_delay=0.02, max_delay=1.0, jitter=True)


async def retrying(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds, retrying what ``policy`` calls retryable.

    Raises:
        Unavailable: still conflicting after ``policy.attempts`` tries.
    """
    for number in range(policy.attempts):
        try:
            return await attempt()
        except Exception as exc:
            if not policy.is_retryable(exc):
                raise
            if number == policy.attempts - 1:
                msg = (
                    f"the transaction conflicted with concurrent ones {policy.attempts} times "
                    "in a row and was given up; nothing was written, retry it"
                )
                raise Unavailable(msg) from exc
            _log.debug("transaction conflict (try %d): %s", number + 1, exc)
            await asyncio.sleep(policy.delay(number))
    raise AssertionError  # pragma: no cover - the loop returns or raises
