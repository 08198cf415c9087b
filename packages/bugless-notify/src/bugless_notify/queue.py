"""The durable delivery queue: one row per (notification, recipient, channel) in PostgreSQL.

The notifier's own schema (``bugless_notify`` by default, migrated with the
core migration engine like every bugless service's) holds a ``deliveries``
table. Its rules, which the worker and any producer rely on:

* **Idempotent enqueue, in the caller's transaction.** :meth:`DeliveryQueue.enqueue`
  takes the caller's connection, so a feed consumer inserts deliveries and
  advances its cursor in one transaction: both happen or neither. A
  ``delivery_id`` already queued (in any state) is skipped, so replaying a
  change enqueues nothing twice.
* **Claims with leases.** :meth:`~DeliveryQueue.claim` takes due rows with
  ``FOR UPDATE SKIP LOCKED`` (replicas never wait for each other nor get the
  same row) and stamps them with a lease: until it ends, no one else claims
  the row; if the claimer dies, the lease simply runs out and another replica
  takes the row. Delivery is therefore at-least-once, with the same
  ``delivery_id`` on every attempt (the channels' idempotency key).
* **Attempts are counted when claimed**, so a delivery that crashes its
  worker every time still reaches its last attempt and the dead letters.
* **Dead letters** keep the row with its last error until an admin requeues
  (``attempts`` restart at 0) or discards it.
* **A row that cannot be read is a dead letter at once, on its own.**
  :meth:`~DeliveryQueue.claim_due` turns each claimed row into a delivery
  separately: one it cannot read (a message another notifier version wrote,
  an edited row) becomes a dead letter with :data:`UNREADABLE` and the
  exception in ``last_error``, logged once at ERROR, and the rest of the
  claim goes out now. Failing the whole claim instead left every row claimed
  beside it waiting out its lease, again each time the bad row's lease ran out.

All methods take an asyncpg connection; none commits anything the caller
did not ask for.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.errors import InvalidArgument
from bugless_core.migrations import (
    AdvisoryLock,
    MigrationLock,
    load_migrations,
    migrate,
    quote_schema,
)
from bugless_core.notification_channel import Notification, NotificationMessage
from bugless_core.schema_skew import SchemaSkewCheck
from bugless_notify import _queries

_log = logging.getLogger("bugless.notify")

DEFAULT_SCHEMA = "bugless_notify"
#: How ``last_error`` of a row that could not be read starts (then the exception).
UNREADABLE = "cannot read the queued row: "
_COMPONENT = "bugless-notify"
#: Longest idempotency key (the column's CHECK).
MAX_DELIVERY_ID_LENGTH = 255


class DeliveryState(enum.StrEnum):
    """Where a delivery is in its life."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclasses.dataclass(frozen=True)
class NewDelivery:
    """A delivery to enqueue.

    Attributes:
        delivery_id: The idempotency key: derive it from what makes the
            delivery unique (the change, the recipient, the channel), so that
            processing the same change again produces the same key.
        channel: The channel's name (``email``, ``webhook``).
        recipient: Where to, as the channel understands it.
        message: What to say, rendered for this recipient.
        recipient_name: Who, for display.
    """

    delivery_id: str
    channel: str
    recipient: str
    message: NotificationMessage
    recipient_name: str = ""


@dataclasses.dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker holds a lease on.

    Attributes:
        channel: The channel to deliver with.
        notification: What the channel gets (``attempt`` counts this one).
        claim_token: Proves the lease is still ours when recording the outcome.
        revision: The stored message's revision when claimed: the check
            before sending stores its rendering only over that one.
    """

    channel: str
    notification: Notification
    claim_token: str
    revision: int = 0

    @property
    def delivery_id(self) -> str:
        """The idempotency key."""
        return self.notification.delivery_id


@dataclasses.dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as stored, for the admin page and the tests.

    ``subject`` is the rendered subject; the page that lists records is for
    notification admins, and shows nothing of the secrets of an endpoint.
    """

    delivery_id: str
    channel: str
    recipient: str
    recipient_name: str
    subject: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime.datetime
    claimed_by: str | None
    lease_until: datetime.datetime | None
    last_error: str
    created_at: datetime.datetime
    finished_at: datetime.datetime | None
    seq: int

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeliveryRecord:
        """Build from a row of the queue's column list."""
        return cls(
            delivery_id=row["delivery_id"],
            channel=row["channel"],
            recipient=row["recipient"],
            recipient_name=row["recipient_name"],
            subject=_subject(row["message"]),
            state=DeliveryState(row["state"]),
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            claimed_by=row["claimed_by"],
            lease_until=row["lease_until"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            seq=row["seq"],
        )


def _subject(message: str) -> str:
    """The subject of a stored message; "" when it has none (an unreadable row is listed too)."""
    value = json.loads(message)
    subject = value.get("subject") if isinstance(value, dict) else None
    return subject if isinstance(subject, str) else ""


def _read_message(message: str) -> NotificationMessage:
    """The stored message, checked as far as a channel relies on it.

    Raises:
        Exception: any, when the row is not a message this release can deliver.
    """
    value = json.loads(message)
    if not isinstance(value, dict):
        raise TypeError(f"the message is a JSON {type(value).__name__}, not an object")
    for name in (
        "thread_id",
        "subject",
        "text",
        "html",
        "chat_text",
        "reason",
        "reason_detail",
        "saved_search",
        "settings_url",
        "unsubscribe_url",
    ):
        if name in value and not isinstance(value[name], str):
            raise TypeError(f"message.{name} is not a string")
    component = value.get("subscribed_component_id", 0)
    if not isinstance(component, int) or isinstance(component, bool):
        raise TypeError("message.subscribed_component_id is not an integer")
    if not isinstance(value.get("data", {}), dict):
        raise TypeError("message.data is not an object")
    quoted = value.get("quoted_versions", [])
    if not isinstance(quoted, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in quoted
    ):
        raise TypeError("message.quoted_versions is not a list of integers")
    return NotificationMessage.from_json(value)


def _claimed(row: asyncpg.Record, token: str) -> ClaimedDelivery:
    return ClaimedDelivery(
        channel=row["channel"],
        notification=Notification(
            delivery_id=row["delivery_id"],
            recipient=row["recipient"],
            recipient_name=row["recipient_name"],
            message=_read_message(row["message"]),
            attempt=row["attempts"],
        ),
        claim_token=token,
        revision=row["revision"],
    )


@dataclasses.dataclass(frozen=True)
class UnreadableDelivery:
    """A claimed row that could not be turned into a delivery: now a dead letter.

    Attributes:
        delivery_id: The row's key.
        channel: The row's channel (a plain column, always readable).
        error: What ``last_error`` now says (:data:`UNREADABLE`, the exception).
    """

    delivery_id: str
    channel: str
    error: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """What one :meth:`DeliveryQueue.claim_due` took.

    Attributes:
        deliveries: The rows to deliver, in the order they became due.
        unreadable: Rows it could not read, moved to the dead letters.
    """

    deliveries: list[ClaimedDelivery]
    unreadable: list[UnreadableDelivery]


@dataclasses.dataclass(frozen=True)
class DeadLetterPage:
    """One page of dead letters, newest first, and where the next one starts."""

    records: list[DeliveryRecord]
    #: Pass as ``before`` for the next page; None on the last page.
    next_before: tuple[datetime.datetime, int] | None


def _known_version() -> int:
    """The newest schema version this release ships."""
    return load_migrations("bugless_notify")[-1].version


def _check_new(deliveries: Sequence[NewDelivery]) -> None:
    for index, delivery in enumerate(deliveries):
        if not 0 < len(delivery.delivery_id) <= MAX_DELIVERY_ID_LENGTH:
            raise InvalidArgument(
                f"deliveries[{index}].delivery_id: must be 1-{MAX_DELIVERY_ID_LENGTH} characters"
            )
        if not delivery.channel:
            raise InvalidArgument(f"deliveries[{index}].channel: must name a channel")
        if not delivery.recipient:
            raise InvalidArgument(f"deliveries[{index}].recipient: must not be empty")


class DeliveryQueue:
    """The queue in one schema; every method works on a connection the caller holds."""

    def __init__(self, schema: str = DEFAULT_SCHEMA) -> None:
        """Use the tables in ``schema``.

        Raises:
            InvalidArgument: ``schema`` is not a plain lower-case identifier.
        """
        quote_schema(schema)
        self.schema = schema
        self.sql = _queries.for_schema(schema)
        #: The LISTEN channel that :meth:`enqueue` and :meth:`requeue` wake workers on.
        self.wakeup_channel = f"{schema}_deliveries"

    # ---- schema ----

    async def migrate(self, pool: Any, *, lock: MigrationLock | None = None) -> int:
        """Create or upgrade the schema (safe from many replicas at once); return its version.

        ``pool`` is an asyncpg pool (two connections suffice); ``lock`` keeps
        concurrent replicas apart (an advisory lock by default, a lease on
        CockroachDB).
        """
        version: int = await migrate(
            pool,
            self.schema,
            load_migrations("bugless_notify"),
            component=_COMPONENT,
            lock=lock or AdvisoryLock(),
        )
        return version

    def schema_skew(self, registry: CollectorRegistry = REGISTRY) -> SchemaSkewCheck:
        """What a running notifier checks readiness with: this schema's version against its code's.

        The rule is the Model's (:mod:`bugless_core.schema_skew`): a schema a
        newer notifier migrated is served on, one older than this code is
        not ready until migrated; ``registry`` gets the skew gauge.
        """
        return SchemaSkewCheck(_COMPONENT, _known_version(), schema=self.schema, registry=registry)

    # ---- producers ----

    async def enqueue(self, conn: Any, deliveries: Iterable[NewDelivery]) -> int:
        """Queue ``deliveries`` on ``conn`` (inside the caller's transaction, if any).

        Deliveries whose ``delivery_id`` is already queued, in any state, are
        skipped. Workers are woken when the transaction commits.

        Returns:
            How many were new.

        Raises:
            InvalidArgument: a delivery is malformed (nothing is queued).
        """
        batch = list(deliveries)
        if not batch:
            return 0
        _check_new(batch)
        status: str = await conn.execute(
            self.sql.enqueue,
            [d.delivery_id for d in batch],
            [d.channel for d in batch],
            [d.recipient for d in batch],
            [d.recipient_name for d in batch],
            [json.dumps(d.message.to_json(), ensure_ascii=False) for d in batch],
        )
        inserted = int(status.rsplit(" ", 1)[-1])
        if inserted:
            await conn.execute(self.sql.notify, self.wakeup_channel)
        return inserted

    # ---- workers ----

    async def claim(
        self,
        conn: Any,
        *,
        worker_id: str,
        channels: Sequence[str],
        limit: int,
        lease_seconds: float,
    ) -> list[ClaimedDelivery]:
        """:meth:`claim_due`'s deliveries (rows it cannot read are dead letters all the same)."""
        claim = await self.claim_due(
            conn, worker_id=worker_id, channels=channels, limit=limit, lease_seconds=lease_seconds
        )
        return claim.deliveries

    async def claim_due(
        self,
        conn: Any,
        *,
        worker_id: str,
        channels: Sequence[str],
        limit: int,
        lease_seconds: float,
    ) -> Claim:
        """Claim up to ``limit`` due deliveries of ``channels`` for ``lease_seconds``.

        Rows other workers hold are skipped, not waited for. Each row is read
        on its own: one that cannot be (see the module) is moved to the dead
        letters, kept with the reason, and logged once at ERROR with its
        traceback; the others are returned all the same.

        Raises:
            asyncpg.PostgresError: the database failed (nothing is dead-lettered).
        """
        token = secrets.token_hex(12)
        rows = await conn.fetch(
            self.sql.claim, worker_id, list(channels), limit, token, float(lease_seconds)
        )
        deliveries: list[ClaimedDelivery] = []
        unreadable: list[tuple[UnreadableDelivery, Exception]] = []
        for row in sorted(rows, key=lambda r: r["seq"]):
            try:
                deliveries.append(_claimed(row, token))
            except Exception as exc:  # any: a row must never hold up the others
                error = f"{UNREADABLE}{type(exc).__name__}: {exc}"
                unreadable.append(
                    (UnreadableDelivery(row["delivery_id"], row["channel"], error), exc)
                )
        if not unreadable:
            return Claim(deliveries, [])
        moved = {
            row["delivery_id"]
            for row in await conn.fetch(
                self.sql.dead_many,
                [bad.delivery_id for bad, _ in unreadable],
                token,
                [bad.error for bad, _ in unreadable],
            )
        }
        # Only what moved: a row whose lease another claimer took meanwhile is theirs to report.
        dead = [(bad, cause) for bad, cause in unreadable if bad.delivery_id in moved]
        for bad, cause in dead:
            _log.error(
                "delivery %s cannot be read and is a dead letter: %s",
                bad.delivery_id,
                bad.error,
                exc_info=cause,
                extra={"channel": bad.channel, "delivery_id": bad.delivery_id},
            )
        return Claim(deliveries, [bad for bad, _ in dead])

    async def mark_delivered(self, conn: Any, claim: ClaimedDelivery) -> bool:
        """Record success; False when the row was already finished (a duplicate attempt)."""
        status: str = await conn.execute(self.sql.delivered, claim.delivery_id)
        return status.endswith(" 1")

    async def mark_delivered_many(self, conn: Any, claims: Sequence[ClaimedDelivery]) -> int:
        """:meth:`mark_delivered` for many rows in one statement; returns how many changed."""
        status: str = await conn.execute(
            self.sql.delivered_many, [claim.delivery_id for claim in claims]
        )
        return int(status.rsplit(" ", 1)[-1])

    async def schedule_retry(
        self, conn: Any, claim: ClaimedDelivery, *, delay_seconds: float, error: str
    ) -> bool:
        """Give the row back, due again in ``delay_seconds``; False if the lease was lost."""
        status: str = await conn.execute(
            self.sql.retry, claim.delivery_id, claim.claim_token, float(delay_seconds), error
        )
        return status.endswith(" 1")

    async def move_to_dead_letters(self, conn: Any, claim: ClaimedDelivery, *, error: str) -> bool:
        """Give up on the row, keeping ``error``; False if the lease was lost."""
        status: str = await conn.execute(self.sql.dead, claim.delivery_id, claim.claim_token, error)
        return status.endswith(" 1")

    async def release(self, conn: Any, claims: Sequence[ClaimedDelivery]) -> int:
        """Give claimed rows back at once, uncounted (a worker stopping before it finished)."""
        released = 0
        by_token: dict[str, list[str]] = {}
        for claim in claims:
            by_token.setdefault(claim.claim_token, []).append(claim.delivery_id)
        for token, ids in by_token.items():
            status: str = await conn.execute(self.sql.release, ids, token)
            released += int(status.rsplit(" ", 1)[-1])
        return released

    async def rewrite_claimed(
        self, conn: Any, claim: ClaimedDelivery, message: NotificationMessage
    ) -> bool:
        """Store ``message`` in place of the claimed row's, if that is still the one claimed.

        For a message rendered again just before it is sent (a redaction of
        text it quoted): a retry then sends the new one too. False if the
        lease was lost or the row's message was rewritten since the claim
        (the consumer's rendering, newer: :meth:`holds` tells which).
        """
        status: str = await conn.execute(
            self.sql.rewrite_claimed,
            claim.delivery_id,
            claim.claim_token,
            json.dumps(message.to_json(), ensure_ascii=False),
            claim.revision,
        )
        return status.endswith(" 1")

    async def withdraw_claimed(self, conn: Any, claim: ClaimedDelivery) -> bool:
        """Delete the claimed row unsent (nothing left to say); False as :meth:`rewrite_claimed`."""
        status: str = await conn.execute(
            self.sql.withdraw_claimed, claim.delivery_id, claim.claim_token, claim.revision
        )
        return status.endswith(" 1")

    async def holds(self, conn: Any, claim: ClaimedDelivery) -> bool:
        """Whether the claim's lease still holds its row."""
        held: bool = await conn.fetchval(self.sql.holds, claim.delivery_id, claim.claim_token)
        return held

    async def seconds_until_due(self, conn: Any, channels: Sequence[str]) -> float | None:
        """How long until the next pending delivery of ``channels`` is due (None: none pending)."""
        value: float | None = await conn.fetchval(self.sql.next_due, list(channels))
        return value

    async def purge_delivered(
        self, conn: Any, *, older_than_seconds: float, batch: int = 5000
    ) -> int:
        """Delete delivered rows finished more than ``older_than_seconds`` ago, in batches.

        Keep them at least as long as a producer may replay the changes they
        came from (the change feed's retention): until then, their keys are
        what makes a replayed enqueue a no-op.
        """
        total = 0
        while True:
            status: str = await conn.execute(
                self.sql.purge_delivered, float(older_than_seconds), batch
            )
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < batch:
                return total

    # ---- admins ----

    async def get(self, conn: Any, delivery_id: str) -> DeliveryRecord | None:
        """One delivery by its key."""
        row = await conn.fetchrow(self.sql.get, delivery_id)
        return DeliveryRecord.from_row(row) if row is not None else None

    async def counts(self, conn: Any) -> dict[DeliveryState, int]:
        """How many deliveries are in each state."""
        found = {DeliveryState(state): n for state, n in await conn.fetch(self.sql.counts)}
        return {state: found.get(state, 0) for state in DeliveryState}

    async def list_dead(
        self,
        conn: Any,
        *,
        limit: int = 50,
        channel: str | None = None,
        before: tuple[datetime.datetime, int] | None = None,
    ) -> DeadLetterPage:
        """Dead letters, newest first, optionally of one channel; page with ``before``."""
        if not 1 <= limit <= 1000:
            raise InvalidArgument(f"limit: {limit} is not between 1 and 1000")
        at, seq = before if before is not None else (None, None)
        rows = await conn.fetch(self.sql.list_dead, limit, channel, at, seq)
        records = [DeliveryRecord.from_row(row) for row in rows]
        last = records[-1] if len(records) == limit else None
        next_before = (last.finished_at, last.seq) if last and last.finished_at else None
        return DeadLetterPage(records, next_before)

    async def requeue(self, conn: Any, delivery_ids: Sequence[str]) -> int:
        """Put dead letters back in the queue, due now, with a fresh attempt budget.

        Rows that are not dead letters are left alone. Returns how many moved.
        """
        status: str = await conn.execute(self.sql.requeue, list(delivery_ids))
        moved = int(status.rsplit(" ", 1)[-1])
        if moved:
            await conn.execute(self.sql.notify, self.wakeup_channel)
        return moved

    async def discard(self, conn: Any, delivery_ids: Sequence[str]) -> int:
        """Delete dead letters for good (rows in other states are left alone)."""
        status: str = await conn.execute(self.sql.discard, list(delivery_ids))
        return int(status.rsplit(" ", 1)[-1])
