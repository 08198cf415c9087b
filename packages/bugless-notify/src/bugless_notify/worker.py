"""The delivery worker: claims due deliveries and runs up to N attempts at once.

One :class:`DeliveryWorker` per process (several processes and replicas share
the queue; see :mod:`bugless_notify.queue` for why that needs no
coordination). Its loop claims as many due deliveries as it has free slots,
starts one task per delivery, and records each outcome as the task ends:

* delivered: done;
* rejected by the channel (permanent): a dead letter with the reason;
* a retryable failure: due again after :class:`~bugless_notify.retry.RetryPolicy`'s
  backoff (or the receiver's ``Retry-After``, whichever is later), until the
  last attempt, after which it is a dead letter too.

A slow or broken recipient occupies one slot for at most
``delivery_timeout_seconds`` and then waits out its backoff in the queue, not
in the worker, so it never holds up anyone else's delivery.

The worker sleeps while nothing is due and wakes on the queue's
``LISTEN``/``NOTIFY`` wake-up (sent when an enqueue commits), when the next
retry falls due, or every ``poll_seconds`` at the latest.

With ``before_send`` (the notifier's :class:`~bugless_notify._recheck.RedactionRecheck`),
each claim is checked before its attempts: a message may be rendered again
(text redacted since it was queued) or withdrawn (counted as the outcome
``withdrawn``); if the check fails, each of
its attempts is a retryable failure, so nothing goes out unchecked. The check
counts in the attempt's ``delivery_timeout_seconds``: a Model that never
answers fails it in time, and the slots and leases are not held past it
(:class:`~bugless_notify._before_send.ClaimChecks` runs the checks; the
settings are :mod:`bugless_notify._worker_settings`', exported here).

A claimed row that cannot be read is a dead letter at once, counted in
``bugless_notify_dead_letters_total{reason="unreadable"}``, and the rest of
its claim is delivered in the same round (see :mod:`bugless_notify.queue`).
An error the loop does not expect (not a database error: a bug) is
supervised as ``notify.delivery_worker``
(:class:`~bugless_core.supervision.SupervisedLoop`): logged once with its
traceback, counted, the control connection dropped, and the loop goes on
after a backoff. It used to end :meth:`DeliveryWorker.run`, which took the
whole notifier down (:mod:`bugless_notify._supervise`); attempts in flight
now run on. A database error is expected: counted in
``bugless_notify_queue_errors_total{operation}``, retried at the next poll,
and logged when the outage starts, once a minute while it lasts and when a
round works again (:class:`~bugless_core.supervision.OutageLog`), not on
every failed statement.

:meth:`DeliveryWorker.stop` is graceful: no new claims; attempts in flight
get ``stop_grace_seconds`` to finish, and those still running are cancelled
and their leases given back, so another replica takes them at once instead
of after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.database_errors import is_database_error
from bugless_core.notification_channel import (
    DeliveryResult,
    DeliveryStatus,
    NotificationChannel,
)
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_notify._before_send import BeforeSend, CheckedClaim, ClaimChecks, Unsent
from bugless_notify._metrics import DeliveryMetrics
from bugless_notify._worker_settings import WorkerSettings, default_worker_id
from bugless_notify.queue import ClaimedDelivery, DeliveryQueue

__all__ = ["BeforeSend", "DeliveryWorker", "WorkerSettings", "default_worker_id"]

_log = logging.getLogger("bugless.notify")
#: The longest a delivered row waits to be recorded with others in one statement.
_RECORD_DELAY_SECONDS = 0.02
#: What the driver raises on the queue's statements. Which of them are the
#: database away (the operation is retried later) is ``is_database_error``'s
#: to say (a closed connection is; a wrong argument count is a bug), in
#: :meth:`DeliveryWorker._database_error`.
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _is_open(conn: Any) -> bool:
    """Whether a pooled connection still works.

    When the server ends a pooled connection, asyncpg hands it back to its
    pool at once, and the proxy we hold then raises on every call.
    """
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class DeliveryWorker:
    """Delivers queued notifications through channels until stopped.

    Args:
        pool: asyncpg pool on the notifier's database. The worker holds one
            connection (it claims, records deliveries and ``LISTEN``s on it)
            and borrows others briefly for retries and dead letters, so give
            it at least 2.
        queue: The queue to work on.
        channels: Open channels by name; only deliveries of these channels
            are claimed (a replica without a channel leaves its rows to others).
        settings: See :class:`WorkerSettings`.
        metrics_registry: Where the ``bugless_notify_*`` metrics go.
        before_send: Asked about each claim before its attempts start (see
            :data:`BeforeSend`); none: every delivery goes as it was queued.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: DeliveryQueue,
        channels: Mapping[str, NotificationChannel],
        settings: WorkerSettings | None = None,
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
        before_send: BeforeSend | None = None,
    ) -> None:
        if not channels:
            raise ValueError("channels: a worker needs at least one channel")
        self._pool = pool
        self.queue = queue
        self.channels = dict(channels)
        self.settings = settings or WorkerSettings()
        self.metrics = DeliveryMetrics.for_registry(metrics_registry)
        self.supervised = SupervisedLoop(
            "notify.delivery_worker",
            registry=metrics_registry,
            outage=OutageLog("delivery queue", logger=_log, meanwhile="retrying at each poll"),
        )
        #: Whether a database error was met since the round began (the
        #: round then did not work, though nothing escaped it).
        self._database_failed = False
        self._names = sorted(self.channels)
        self._in_flight: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._control: Any = None
        self._to_record: list[ClaimedDelivery] = []
        self._last_purge = float("-inf")
        self._checks = (
            None
            if before_send is None
            else ClaimChecks(before_send, self.settings.delivery_timeout_seconds)
        )

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._in_flight)

    def stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (see the module docstring); returns at once."""
        self._stopping.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; return once in-flight attempts are finished or released."""
        try:
            while not self._stopping.is_set():
                self._database_failed = False
                try:
                    if not await self._ensure_control():
                        # A wake-up from before the connection was lost must
                        # not make this a busy loop against a database away.
                        self._wake.clear()
                        await self._wait_for(self._wake, at_most=self.settings.poll_seconds)
                        continue
                    await self._purge_if_due()
                    await self._step()
                except Exception as exc:  # a bug: logged and counted once, the loop goes on
                    delay = self.supervised.failed(exc)
                    # It may have failed mid-statement on the control connection.
                    await self._drop_control(broken=True)
                    await self._wait_for(self._stopping, at_most=delay)
                else:
                    if not self._database_failed:
                        self.supervised.succeeded()
        finally:
            await self._drain()
            await self._record_delivered()
            await self._drop_control()

    # ---- the loop ----

    @property
    def _batch(self) -> int:
        """Claim (and record) in batches of this many: each is a database round trip."""
        return max(1, self.settings.concurrency // 4)

    async def _step(self) -> None:
        """Record what was delivered, claim for the free slots, or wait for a reason to."""
        self._wake.clear()
        await self._record_delivered()
        if self._control is None:
            # Recording lost the connection (and kept the batch): claim
            # nothing on it; the next turn of run() opens a new one first.
            return
        free = self.settings.concurrency - len(self._in_flight)
        if free < self._batch:
            await self._wait_for(self._wake, at_most=self.settings.poll_seconds)
            return
        try:
            claim = await self.queue.claim_due(
                self._control,
                worker_id=self.settings.worker_id,
                channels=self._names,
                limit=free,
                lease_seconds=self.settings.lease_seconds,
            )
            claims = claim.deliveries
            took = len(claims) + len(claim.unreadable)
            due_in = None
            if took < free:
                due_in = await self.queue.seconds_until_due(self._control, self._names)
        except _DATABASE_ERRORS as exc:
            self._database_error("claim", exc)
            # The control connection may be broken without looking closed:
            # the next turn opens a new one.
            await self._drop_control(broken=True)
            await self._wait_for(self._wake, at_most=self.settings.poll_seconds)
            return
        for bad in claim.unreadable:
            self.metrics.dead_letters.labels(bad.channel, "unreadable").inc()
        # One check for the whole claim (its calls are per issue, not per
        # delivery); each attempt waits for it, the loop does not.
        checked = None
        if self._checks is not None and claims:
            checked = self._checks.start(claims)
        for delivery in claims:
            self.metrics.claimed.labels(delivery.channel).inc()
            task = asyncio.create_task(
                self._attempt(delivery, checked), name=f"deliver {delivery.delivery_id}"
            )
            self._in_flight[task] = delivery
            task.add_done_callback(self._finished)
        if took < free:
            # Nothing else is due: sleep until a wake-up, the next due row, or the poll.
            timeout = self.settings.poll_seconds
            if due_in is not None:
                timeout = min(timeout, max(due_in, 0.005))
            await self._wait_for(self._wake, at_most=timeout)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        free = self.settings.concurrency - len(self._in_flight)
        if free >= self._batch or len(self._to_record) >= self._batch:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            _log.error("a delivery task failed", exc_info=task.exception())

    async def _record_delivered(self) -> None:
        """Mark every delivery that went out since the last call, in one statement."""
        if not self._to_record or self._control is None:
            return
        # Taken out first: attempts that finish during the round trip join the next batch.
        batch, self._to_record = self._to_record, []
        try:
            await self.queue.mark_delivered_many(self._control, batch)
        except _DATABASE_ERRORS as exc:
            # Kept for the next try; meanwhile a lease may run out and the
            # delivery be made again, under the same idempotency key.
            self._to_record[:0] = batch
            self._database_error("record", exc)
            await self._drop_control(broken=True)
            return
        for claim in batch:
            self.metrics.deliveries.labels(claim.channel, "delivered").inc()

    async def _wait_for(self, event: asyncio.Event, *, at_most: float) -> None:
        """Wait until ``event`` or a stop request, at most ``at_most`` seconds."""
        waiters = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # ---- one attempt ----

    async def _attempt(
        self,
        claim: ClaimedDelivery,
        checked: CheckedClaim | None = None,
    ) -> None:
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        # One bound for the check and the channel together, so an attempt
        # still ends within delivery_timeout_seconds of its claim, inside the lease.
        deadline = asyncio.get_running_loop().time() + self.settings.delivery_timeout_seconds
        try:
            sendable = await self._checked(claim, checked)
            if sendable is None:
                return
            if isinstance(sendable, DeliveryResult):
                result = sendable
            else:
                claim = sendable
                result = await self._run_channel(claim, deadline)
            self.metrics.attempt_seconds.labels(claim.channel).observe(
                time.perf_counter() - started
            )
            await self._record(claim, result)
        except asyncio.CancelledError:
            # Stopping: give the row back now rather than after the lease.
            await asyncio.shield(self._release([claim]))
            raise
        finally:
            self.metrics.in_flight.dec()

    async def _checked(
        self, claim: ClaimedDelivery, checked: CheckedClaim | None
    ) -> ClaimedDelivery | DeliveryResult | None:
        """What to send after the claim's check: the claim, a new message, a failure or nothing."""
        if checked is None or self._checks is None:
            return claim
        outcome = await self._checks.verdict(claim, checked)
        if outcome is Unsent.WITHDRAWN:
            self.metrics.deliveries.labels(claim.channel, "withdrawn").inc()
            _log.info(
                "delivery withdrawn before sending: the text it was about was redacted",
                extra={"channel": claim.channel, "delivery_id": claim.delivery_id},
            )
            return None
        if outcome is Unsent.CHANGED:
            # The consumer stored a newer rendering during the check: give
            # the row back now, so the next claim checks and sends that one.
            _log.info(
                "delivery given back unsent: its message was rendered again meanwhile",
                extra={"channel": claim.channel, "delivery_id": claim.delivery_id},
            )
            await self._release([claim])
            self._wake.set()
            return None
        if isinstance(outcome, Unsent):
            # The lease ran out during the check: the row's next holder reports it.
            return None
        return outcome

    async def _run_channel(self, claim: ClaimedDelivery, deadline: float) -> DeliveryResult:
        """Deliver through the claim's channel; past ``deadline`` (loop time): retryable."""
        attempt = claim.notification.attempt
        budget = self.settings.retry.max_attempts
        if attempt > budget:
            return DeliveryResult.rejected(
                f"gave up: attempt {attempt - 1} of {budget} never finished "
                "(the notifier stopped during it and its lease ran out)"
            )
        timeout = self.settings.delivery_timeout_seconds
        try:
            async with asyncio.timeout_at(deadline):
                return await self.channels[claim.channel].deliver(claim.notification)
        except TimeoutError:
            return DeliveryResult.retry(
                f"the {claim.channel} channel took longer than the attempt's {timeout:g} s"
            )
        except Exception as exc:
            _log.exception(
                "notification channel raised instead of reporting",
                extra={"channel": claim.channel, "delivery_id": claim.delivery_id},
            )
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")

    async def _record(self, claim: ClaimedDelivery, result: DeliveryResult) -> None:
        if result.status is DeliveryStatus.DELIVERED:
            # Recorded in batches by the loop, which this wakes soon (or a full batch sooner).
            if not self._to_record:
                asyncio.get_running_loop().call_later(_RECORD_DELAY_SECONDS, self._wake.set)
            self._to_record.append(claim)
            return
        attempt = claim.notification.attempt
        policy = self.settings.retry
        try:
            async with self._pool.acquire() as conn:
                if result.status is DeliveryStatus.REJECTED or attempt >= policy.max_attempts:
                    outcome = "dead"
                    error = result.reason
                    if result.status is DeliveryStatus.RETRY:
                        error = f"gave up after {attempt} attempts; the last: {result.reason}"
                    await self.queue.move_to_dead_letters(conn, claim, error=error)
                else:
                    outcome = "retry"
                    delay = max(policy.backoff(attempt), result.retry_after_seconds or 0.0)
                    await self.queue.schedule_retry(
                        conn,
                        claim,
                        delay_seconds=min(delay, policy.max_seconds),
                        error=result.reason,
                    )
                    self._wake.set()  # the loop may be sleeping past this retry's due time
        except _DATABASE_ERRORS as exc:
            # The lease runs out and the delivery is made again, under the same key.
            self._database_error("record", exc)
            return
        self.metrics.deliveries.labels(claim.channel, outcome).inc()
        if outcome == "dead":
            # An attempt past the budget (its worker died) is rejected unattempted: gave up too.
            gave_up = result.status is DeliveryStatus.RETRY or attempt > policy.max_attempts
            reason = "gave_up" if gave_up else "rejected"
            self.metrics.dead_letters.labels(claim.channel, reason).inc()
        _log.warning(
            "delivery %s: %s",
            "failed, will retry" if outcome == "retry" else "is a dead letter",
            result.reason,
            extra={"channel": claim.channel, "delivery_id": claim.delivery_id, "attempt": attempt},
        )

    async def _release(self, claims: list[ClaimedDelivery]) -> None:
        try:
            async with self._pool.acquire() as conn:
                released = await self.queue.release(conn, claims)
        except _DATABASE_ERRORS as exc:
            self._database_error("release", exc)
            return
        self.metrics.released.inc(released)

    # ---- housekeeping ----

    async def _drain(self) -> None:
        """Let in-flight attempts finish for the grace period, then cancel and release them."""
        tasks = list(self._in_flight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.stop_grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._checks is not None:
            self._checks.cancel()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _ensure_control(self) -> bool:
        """Hold the connection the loop claims and records on, and LISTENs with."""
        if self._control is not None and _is_open(self._control):
            return True
        await self._drop_control()
        try:
            conn = await self._pool.acquire()
        except _DATABASE_ERRORS as exc:
            self._database_error("connect", exc)
            return False
        try:
            await conn.add_listener(self.queue.wakeup_channel, self._on_notify)
        except _DATABASE_ERRORS as exc:
            await self._pool.release(conn)
            self._database_error("connect", exc)
            return False
        self._control = conn
        return True

    async def _drop_control(self, *, broken: bool = False) -> None:
        """Give the control connection back; ``broken``: close it first (never reused)."""
        conn, self._control = self._control, None
        if conn is None:
            return
        if broken:
            # The pool may have taken a connection the server ended back already.
            with contextlib.suppress(*_DATABASE_ERRORS):
                conn.terminate()
        with contextlib.suppress(*_DATABASE_ERRORS):
            if _is_open(conn):
                await conn.remove_listener(self.queue.wakeup_channel, self._on_notify)
        with contextlib.suppress(*_DATABASE_ERRORS):
            await self._pool.release(conn)

    async def _purge_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < self.settings.purge_interval_seconds:
            return
        self._last_purge = now
        try:
            async with self._pool.acquire() as conn:
                purged = await self.queue.purge_delivered(
                    conn, older_than_seconds=self.settings.delivered_retention_seconds
                )
        except _DATABASE_ERRORS as exc:
            self._database_error("purge", exc)
            return
        if purged:
            _log.info("purged %d delivered rows", purged)

    def _database_error(self, operation: str, exc: BaseException) -> None:
        """Count and log an outage; re-raise a driver error that is a bug."""
        if not is_database_error(exc):
            raise exc
        self.metrics.queue_errors.labels(operation).inc()
        self._database_failed = True
        self.supervised.unavailable(exc, during=operation)
