"""Daily digests: one mail a day per person who asked for it, listing the changes.

A person whose notification settings say ``DIGEST_MODE_DAILY`` gets no mail
per change: the feed consumer renders the mail exactly as it would have
(recipient rules, mutes, the component ACL checked as that person, only
what they may see) and keeps it in ``digest_items`` in the same transaction
that advances the cursor. The :class:`DigestSender` of every replica wakes
at the digest time (``--digest-hour-utc``, daily; or every
``--digest-interval-seconds`` when that is set, for tests and demos) and,
person by person, in one transaction each, deletes their waiting items and
queues one mail listing them (``digest-<user>-<last item>``, an ordinary
delivery: retries, dead letters, Message-ID). Two replicas waking together
cannot both send one person's digest: the second's ``DELETE`` finds the rows
gone once the first commits.

A database error skips a digest time (the items wait for the next one); any
other error is supervised as ``notify.digests``
(:class:`~bugless_core.supervision.SupervisedLoop`): logged once with its
traceback, counted, and the sending tried again after a backoff rather than
a day later. It used to end :meth:`DigestSender.run` and with it the
notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import html
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.database_errors import is_database_error
from bugless_core.migrations import quote_schema
from bugless_core.notification_channel import NotificationMessage
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_notify.queue import DeliveryQueue, NewDelivery

_log = logging.getLogger("bugless.notify.digest")
#: Changes listed in one digest mail at most; more wait for the next one.
MAX_ITEMS = 200


class DigestStore:
    """The ``digest_items`` table of one schema."""

    def __init__(self, schema: str) -> None:
        """Use the table in ``schema``."""
        table = f"{quote_schema(schema)}.digest_items"
        self._add_sql = (
            f"INSERT INTO {table} (item_id, user_id, recipient, recipient_name, message) "
            "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (item_id) DO NOTHING"
        )
        self._users_sql = f"SELECT DISTINCT user_id FROM {table} WHERE created_at <= $1"
        self._take_sql = (
            f"DELETE FROM {table} WHERE item_id IN (SELECT item_id FROM {table} "
            "WHERE user_id = $1 AND created_at <= $2 ORDER BY seq LIMIT $3 "
            "FOR UPDATE SKIP LOCKED) RETURNING seq, item_id, recipient, recipient_name, message"
        )

    async def add(self, conn: Any, items: Sequence[tuple[str, NewDelivery]]) -> None:
        """Keep ``(user_id, mail)`` pairs for the next digest (inside the caller's transaction)."""
        if not items:
            return
        await conn.executemany(
            self._add_sql,
            [
                (
                    d.delivery_id,
                    user_id,
                    d.recipient,
                    d.recipient_name,
                    json.dumps(d.message.to_json(), ensure_ascii=False),
                )
                for user_id, d in items
            ],
        )

    async def send(self, pool: asyncpg.Pool, queue: DeliveryQueue, cut: datetime.datetime) -> int:
        """Queue one digest mail per person with items kept up to ``cut``; return how many."""
        async with pool.acquire() as conn:
            users = [r["user_id"] for r in await conn.fetch(self._users_sql, cut)]
        sent = 0
        for user_id in users:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(self._take_sql, user_id, cut, MAX_ITEMS)
                if not rows:
                    continue  # another replica sent it
                await queue.enqueue(conn, [digest_delivery(user_id, rows)])
                sent += 1
        return sent


def digest_delivery(user_id: str, rows: Sequence[Any]) -> NewDelivery:
    """One mail listing the kept mails ``rows`` (oldest first) of one person."""
    items = [(r["item_id"], NotificationMessage.from_json(json.loads(r["message"]))) for r in rows]
    last = rows[-1]
    return NewDelivery(
        delivery_id=f"digest-{user_id}-{last['seq']}/email/{user_id}",
        channel="email",
        recipient=last["recipient"],
        recipient_name=last["recipient_name"],
        message=digest_message(user_id, items),
    )


def digest_message(
    user_id: str, items: Sequence[tuple[str, NotificationMessage]]
) -> NotificationMessage:
    """The digest mail of ``user_id`` listing ``items`` (item id, the kept mail), oldest first.

    The items travel in ``data["items"]`` with their ids, so that the mail
    can be put together again without one of them (a redaction after the
    digest was assembled: :mod:`bugless_notify._recheck`).
    """
    messages = [m for _, m in items]
    count = len(messages)
    subject = f"bugless daily digest: {count} change{'s' if count != 1 else ''}"
    text = "\n\n".join(
        f"{n}. {m.subject}\n\n{m.text.strip()}\n\n----" for n, m in enumerate(messages, 1)
    )
    body = "\n<hr>\n".join(
        f"<section><h2>{html.escape(m.subject)}</h2>\n{m.html}</section>" for m in messages
    )
    return NotificationMessage(
        thread_id=f"digest-{''.join(c for c in user_id if c.isalnum() or c in '._-')}",
        subject=subject,
        text=f"{subject}\n\n{text}\n",
        html=f"<h1>{html.escape(subject)}</h1>\n{body}",
        data={"items": [{"id": i, "message": m.to_json()} for i, m in items]},
        reason="digest",
        # The kept mails were rendered for this person with its page.
        settings_url=messages[-1].settings_url,
    )


def digest_again(
    delivery_id: str,
    items: Sequence[tuple[str, NotificationMessage]],
    stale: Collection[str],
    rendered: Mapping[str, NotificationMessage],
) -> NotificationMessage | None:
    """The digest mail ``delivery_id`` put together again, its ``stale`` items as ``rendered``.

    A stale item ``rendered`` lacks is left out (its change no longer gives
    it); None when no item is left.
    """
    kept = [
        (i, rendered[i] if i in stale else m) for i, m in items if i not in stale or i in rendered
    ]
    if not kept:
        return None
    return digest_message(delivery_id.rsplit("/", 1)[-1], kept)


def digest_items(message: NotificationMessage) -> list[tuple[str, NotificationMessage]]:
    """The (item id, kept mail) pairs a digest mail of :func:`digest_message` lists.

    Empty for a digest queued before the items travelled with it.
    """
    items = message.data.get("items")
    if not isinstance(items, list):
        return []
    return [(str(i["id"]), NotificationMessage.from_json(i["message"])) for i in items]


def next_digest_at(now: datetime.datetime, hour_utc: int) -> datetime.datetime:
    """The next ``hour_utc``:00 UTC strictly after ``now``."""
    at = now.astimezone(datetime.UTC).replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    return at if at > now else at + datetime.timedelta(days=1)


class DigestSender:
    """Sends the digests at the digest time, on every replica (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: DeliveryQueue,
        store: DigestStore,
        *,
        hour_utc: int,
        interval_seconds: float = 0.0,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """Daily at ``hour_utc``, or every ``interval_seconds`` when that is positive.

        ``metrics_registry`` is where the loop's ``bugless_background_*``
        metrics go (the process registry unless a test has its own).
        """
        self._pool = pool
        self._queue = queue
        self._store = store
        self._hour = hour_utc
        self._interval = interval_seconds
        self._stopping = asyncio.Event()
        self.supervised = SupervisedLoop(
            "notify.digests",
            registry=metrics_registry,
            outage=OutageLog("sending digests", logger=_log, meanwhile="trying again next time"),
        )

    def stop(self) -> None:
        """End :meth:`run` at its next wake-up."""
        self._stopping.set()

    async def send_now(self) -> int:
        """Send every waiting digest at once; how many mails were queued."""
        return await self._store.send(self._pool, self._queue, datetime.datetime.now(datetime.UTC))

    async def run(self) -> None:
        """Until stopped: sleep to the next digest time, send, repeat."""
        retry_in: float | None = None
        while not self._stopping.is_set():
            now = datetime.datetime.now(datetime.UTC)
            if retry_in is not None:
                wait = retry_in
            elif self._interval > 0:
                wait = self._interval
            else:
                wait = (next_digest_at(now, self._hour) - now).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            retry_in = None
            try:
                sent = await self.send_now()
            except Exception as exc:
                if is_database_error(exc):
                    self.supervised.unavailable(exc)  # the database away: logged when it starts
                else:  # a bug: logged and counted once, retried soon
                    retry_in = self.supervised.failed(exc)
                continue
            self.supervised.succeeded()
            if sent:
                _log.info("queued %d digest mails", sent)
