"""Right before a message is sent: was text it quotes redacted since it was rendered?

The feed consumer renders waiting messages again when it reads a redaction
(:mod:`bugless_notify._redactions`), but not in time for every copy: it
reads the feed some time after the redaction commits (a second or two;
longer while it is behind, restarting or down), a worker may hold a message
while the consumer rewrites it, and a digest mail may be put together from
items the consumer is rewriting. So the delivery worker asks
:class:`RedactionRecheck` about every claimed delivery before its attempt.

A message names the entries whose text it carries
(``NotificationMessage.quoted_versions``; a digest mail lists its items,
each with its own). One ``GetNotificationViews`` per issue of a claim says
which of those entries the Model now holds redacted (``comment_redacted``).
A message quoting one is rendered again from the entries as they are now,
as the consumer would (:meth:`IssueDeliveries.render_again`): the text
blanked, a person only ``@mentioned`` in it left out. The new message
replaces the row's (so a retry sends it too) and is sent instead; one with
nothing left to send (a mention-only mail, a digest of such items) is
withdrawn. A message that quotes nothing costs no call. Both writes are
conditional on the message's revision at the claim: if the consumer stored
a rendering since (a later redaction it read), the check's, made from what
the Model said a moment before, is not stored over it; the delivery is
given back and its next claim checks the stored one.

What it cannot do: a redaction committing after the check, during the
moment the attempt takes, is not seen; and a mail already handed to the SMTP
relay (or a webhook already posted) cannot be taken back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import asyncpg

from bugless_core import limits
from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_core.notification_channel import NotificationMessage
from bugless_notify._before_send import Unsent, Verdict
from bugless_notify._deliveries import NOTIFIER, IssueDeliveries
from bugless_notify._parts import in_parts
from bugless_notify._redactions import Waiting, change_entry
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.digest import digest_again, digest_items
from bugless_notify.queue import ClaimedDelivery, DeliveryQueue, NewDelivery
from bugless_notify.reasons import message_subject
from bugless_proto import v1

#: Issues whose entries are read at once.
ISSUES_AT_ONCE = 16


def _parts(claim: ClaimedDelivery) -> list[tuple[str, NotificationMessage]]:
    """The rendered changes a claimed delivery carries: itself, or a digest's items."""
    message = claim.notification.message
    if claim.delivery_id.startswith("digest-"):
        return digest_items(message)
    return [(claim.delivery_id, message)]


class RedactionRecheck:
    """Checks claimed deliveries against redactions and renders stale ones again (see the module).

    Args:
        pool: The notifier's database (the rows are rewritten under the claim).
        queue: The delivery queue.
        model: The Model, called as the notifier.
        deliveries: Renders a change for its recipients (the consumer's rules).
        webhooks: The component webhook endpoints, for a webhook delivery's new rendering.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: DeliveryQueue,
        model: v1.ModelStub,
        deliveries: IssueDeliveries,
        webhooks: ComponentWebhookStore,
    ) -> None:
        self._pool = pool
        self._queue = queue
        self._model = model
        self._deliveries = deliveries
        self._webhooks = webhooks

    async def __call__(self, claims: Sequence[ClaimedDelivery]) -> dict[str, Verdict]:
        """By delivery id, what to send instead: a new message, or why nothing (:class:`Unsent`).

        A delivery not in the answer goes as it was claimed.

        Raises:
            BuglessError: the Model could not say (the attempts are retried later).
        """
        parts = {c.delivery_id: _parts(c) for c in claims}
        quoted: dict[int, set[int]] = {}
        for items in parts.values():
            for item_id, message in items:
                entry = change_entry(item_id)
                if entry is not None and message.quoted_versions:
                    quoted.setdefault(entry[0], set()).update(message.quoted_versions)
        if not quoted:
            return {}
        redacted = await self._redacted(quoted)
        stale: dict[int, dict[int, list[Waiting]]] = {}
        stale_ids: set[str] = set()
        for items in parts.values():
            for item_id, message in items:
                entry = change_entry(item_id)
                if entry is None or not redacted.get(entry[0], set()) & set(
                    message.quoted_versions
                ):
                    continue
                issue_id, version = entry
                stale.setdefault(issue_id, {}).setdefault(version, []).append(
                    Waiting(item_id, message.reason, *message_subject(message))
                )
                stale_ids.add(item_id)
        if not stale:
            return {}
        rendered = await self._render_again(stale)
        answer: dict[str, Verdict] = {}
        async with self._pool.acquire() as conn:
            for claim in claims:
                items = parts[claim.delivery_id]
                if not any(i in stale_ids for i, _ in items):
                    continue
                replacement = self._replacement(claim, items, stale_ids, rendered)
                if replacement is None:
                    done = await self._queue.withdraw_claimed(conn, claim)
                    verdict: Verdict = Unsent.WITHDRAWN
                else:
                    done = await self._queue.rewrite_claimed(conn, claim, replacement)
                    verdict = replacement
                if not done:  # the consumer rewrote it since the claim, or the lease ran out
                    held = await self._queue.holds(conn, claim)
                    verdict = Unsent.CHANGED if held else Unsent.LEASE_LOST
                answer[claim.delivery_id] = verdict
        return answer

    async def _redacted(self, quoted: Mapping[int, set[int]]) -> dict[int, set[int]]:
        """Of the quoted entries, by issue, those whose text the Model holds redacted.

        An issue's entries are asked about in parts of at most
        :data:`~bugless_core.limits.MAX_NOTIFICATION_VIEWS` (the Model's
        bound): held digest mails of a busy issue may quote more, and a
        refusal would fail their attempts at every try.
        """
        limit = asyncio.Semaphore(ISSUES_AT_ONCE)

        async def one(issue_id: int, versions: set[int]) -> set[int]:
            redacted: set[int] = set()
            for part in in_parts(sorted(versions), limits.MAX_NOTIFICATION_VIEWS):
                async with limit:
                    try:
                        views = await call(
                            self._model.get_notification_views,
                            v1.GetNotificationViewsRequest(
                                caller=NOTIFIER, issue_id=issue_id, versions=list(part)
                            ),
                        )
                    except NotFound:  # no such issue: nothing of it was redacted
                        return set()
                redacted |= {e.version for e in views.entries if e.comment_redacted}
            return redacted

        issues = sorted(quoted)
        found = await asyncio.gather(*(one(i, quoted[i]) for i in issues))
        return dict(zip(issues, found, strict=True))

    async def _render_again(
        self, stale: Mapping[int, Mapping[int, Sequence[Waiting]]]
    ) -> dict[str, NewDelivery]:
        async with self._pool.acquire() as conn:
            webhooks = await self._webhooks.enabled(conn)
        parents: dict[int, int] = {}
        rendered: dict[str, NewDelivery] = {}
        for issue_id, waiting in stale.items():
            rendered |= await self._deliveries.render_again(
                issue_id, waiting, webhooks=webhooks, parents=parents
            )
        return rendered

    @staticmethod
    def _replacement(
        claim: ClaimedDelivery,
        items: Sequence[tuple[str, NotificationMessage]],
        stale_ids: set[str],
        rendered: Mapping[str, NewDelivery],
    ) -> NotificationMessage | None:
        """The claim's message with its stale parts rendered again (None: nothing left)."""
        if not claim.delivery_id.startswith("digest-"):
            again = rendered.get(claim.delivery_id)
            return again.message if again is not None else None
        return digest_again(
            claim.delivery_id, items, stale_ids, {i: d.message for i, d in rendered.items()}
        )
