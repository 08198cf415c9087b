"""Messages still waiting in the notifier when the text they quote is redacted.

A mail is rendered when the feed consumer reads its change, but it may go out
much later: a person on the daily digest gets it at the digest time, a
delivery that failed waits for its retry, and a dead letter for an operator's
retry. A redaction (a leaked password in a comment) blanks the text in the
Model for good; the copies in the notifier's tables must not carry it to
anyone afterwards. So when the consumer reads a redaction entry, every
message still waiting about that issue's changes, from the redacted entry up
to the redaction, is rendered again from the entries as they are now (the
comment and each edit of it blanked), and replaces the old one in the
transaction that advances the cursor. A waiting message that its change no
longer gives (the recipient was only ``@mentioned`` in the redacted text) is
withdrawn; one whose recipient the rules no longer name for another reason
(taken off CC since, a star or a subscription dropped, a saved search's
match, which is not kept) is rendered again for them with the reason it
was rendered with, since it was due when the change was read, and the
redaction removes only the text: unless they may no longer view the issue,
or muted it, or no longer want such mail, which the rendering checks as
for any change. A digest mail already put together and still waiting (for
its retry, or a dead letter) is put together again from its items, those in
the range rendered again. What the consumer does not reach in time (it reads
the redaction after it commits; a worker may hold a message while it is
rewritten), the delivery worker renders again right before the attempt
(:mod:`bugless_notify._recheck`). A mail already sent, or being sent at that
moment, cannot be taken back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bugless_core.migrations import quote_schema
from bugless_core.notification_channel import NotificationMessage
from bugless_notify.digest import digest_again, digest_items
from bugless_notify.queue import NewDelivery
from bugless_notify.reasons import Reason, message_subject, reason_subject
from bugless_notify.recipients import Candidate
from bugless_proto import v1

_log = logging.getLogger("bugless.notify")

#: The redactions that remove text a notification quotes (an attachment's is
#: only named in one, and its name stays).
TEXT_TARGETS = frozenset({v1.RedactionTarget.COMMENT, v1.RedactionTarget.DESCRIPTION})


@dataclass(frozen=True)
class Redaction:
    """A redaction entry the consumer read.

    Attributes:
        issue_id: The issue.
        redacted_version: The entry whose text was removed (1: the description).
        version: The redaction's own entry; every entry between the two may be
            an edit of the removed text.
    """

    issue_id: int
    redacted_version: int
    version: int


def text_redactions(entries: Iterable[v1.HistoryEntry]) -> list[Redaction]:
    """The entries of ``entries`` that redact a comment or the description."""
    return [
        Redaction(e.issue_id, e.redacted_version, e.version)
        for e in entries
        if e.redaction_target in TEXT_TARGETS and e.redacted_version
    ]


@dataclass(frozen=True)
class Waiting:
    """A message still waiting: its id and the reason it was rendered with.

    ``saved_search`` and ``component_id`` are what the reason referred to
    (the saved search's name, the subscribed component), told again in the
    new rendering: the rules computed again name no saved search.
    """

    id: str
    reason: str
    saved_search: str = ""
    component_id: int = 0


def kept_candidates(waiting: Mapping[int, Sequence[Waiting]]) -> dict[int, list[Candidate]]:
    """The mail recipients of ``waiting`` to render again by version, whatever the rules say now.

    Every recipient but one who was only ``@mentioned`` (the mention may
    have been in the removed text, and the rendering finds those still
    mentioned) and a webhook (whose endpoints are read again).
    """
    kept: dict[int, list[Candidate]] = {}
    for version, messages in waiting.items():
        for message in messages:
            parts = message.id.split("/", 2)
            if len(parts) != 3 or parts[1] != "email" or not parts[2]:
                continue
            try:
                reason = Reason(message.reason)
            except ValueError:
                continue
            if reason in (Reason.MENTIONED, Reason.WEBHOOK):
                continue
            kept.setdefault(version, []).append(
                Candidate(parts[2], reason, message.saved_search, message.component_id)
            )
    return kept


def _row_subject(row: Any) -> tuple[str, int]:
    """What a waiting row's reason referred to (:func:`~bugless_notify.reasons.message_subject`).

    A row an earlier notifier queued has only ``reason_detail``.
    """
    search = str(row["search"] or "")
    component = int(row["component"]) if str(row["component"] or "").isdigit() else 0
    if search or component:
        return search, component
    return reason_subject(row["reason"] or "", row["detail"] or "")


def change_entry(message_id: str) -> tuple[int, int] | None:
    """The issue and entry version of a ``change-<issue>-<version>/<channel>/<who>`` id.

    None for another kind of id (a digest mail's).
    """
    head = message_id.split("/", 1)[0]
    if not head.startswith("change-"):
        return None
    issue, _, version = head.removeprefix("change-").partition("-")
    if not issue.isdigit() or not version.isdigit():
        return None
    return int(issue), int(version)


def change_version(message_id: str) -> int | None:
    """The entry version of a ``change-<issue>-<version>/<channel>/<who>`` id.

    None for another kind of id (a digest mail's).
    """
    entry = change_entry(message_id)
    return entry[1] if entry is not None else None


@dataclass(frozen=True)
class WaitingDigest:
    """A digest mail put together and still waiting (for a retry, or a dead letter).

    Attributes:
        delivery_id: Its delivery.
        items: The mails it lists (item id, message), oldest first.
    """

    delivery_id: str
    items: list[tuple[str, NotificationMessage]]


class WaitingMessages:
    """The notifier's waiting copies of rendered messages: deliveries, digest items and mails."""

    def __init__(self, schema: str) -> None:
        """Use the tables of ``schema``."""
        s = quote_schema(schema)
        # Pending and dead deliveries (an operator may retry a dead letter),
        # and the items kept for a digest. Read through the queue's partial
        # indexes on state; a redaction is rare.
        said = (
            "message ->> 'reason' AS reason, message ->> 'reason_detail' AS detail, "
            "message ->> 'saved_search' AS search, "
            "message ->> 'subscribed_component_id' AS component"
        )
        self._list_sql = (
            f"SELECT delivery_id AS id, {said} FROM {s}.deliveries "
            "WHERE state IN ('pending', 'dead') AND delivery_id LIKE $1 "
            f"UNION ALL SELECT item_id, {said} FROM {s}.digest_items "
            "WHERE item_id LIKE $1"
        )
        # Digest mails listing an item of the issue (digest.digest_message
        # keeps the items in data.items).
        items = "message #> '{data,items}'"
        self._digests_sql = (
            f"SELECT delivery_id, message::text AS message FROM {s}.deliveries "
            "WHERE state IN ('pending', 'dead') AND delivery_id LIKE 'digest-%' AND EXISTS ("
            f"SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof({items}) WHEN 'array' "
            f"THEN {items} ELSE '[]'::jsonb END) AS i WHERE i ->> 'id' LIKE $1)"
        )
        self._rewrite_delivery_sql = (
            f"UPDATE {s}.deliveries SET message = $2::jsonb, revision = revision + 1 "
            "WHERE delivery_id = $1 AND state IN ('pending', 'dead')"
        )
        self._rewrite_item_sql = (
            f"UPDATE {s}.digest_items SET message = $2::jsonb WHERE item_id = $1"
        )
        self._withdraw_deliveries_sql = (
            f"DELETE FROM {s}.deliveries "
            "WHERE delivery_id = ANY($1::text[]) AND state IN ('pending', 'dead')"
        )
        self._withdraw_items_sql = f"DELETE FROM {s}.digest_items WHERE item_id = ANY($1::text[])"

    async def about(
        self, conn: Any, redaction: Redaction
    ) -> tuple[dict[int, list[Waiting]], list[WaitingDigest]]:
        """The waiting messages about the entries ``redaction`` may have blanked, by version.

        Also the digest mails listing one of them (their items are among the
        messages by version).
        """
        pattern = f"change-{redaction.issue_id}-%"
        found: dict[int, list[Waiting]] = {}

        def add(message_id: str, reason: str, subject: tuple[str, int]) -> bool:
            entry = change_entry(message_id)
            if entry is None or entry[0] != redaction.issue_id:
                return False
            version = entry[1]
            if not redaction.redacted_version <= version < redaction.version:
                return False
            found.setdefault(version, []).append(Waiting(message_id, reason, *subject))
            return True

        for row in await conn.fetch(self._list_sql, pattern):
            add(row["id"], row["reason"] or "", _row_subject(row))
        digests: list[WaitingDigest] = []
        for row in await conn.fetch(self._digests_sql, pattern):
            try:
                items = digest_items(NotificationMessage.from_json(json.loads(row["message"])))
            except (ValueError, KeyError, TypeError) as exc:
                # Not one this release put together: the worker's check before
                # sending (bugless_notify._recheck) finds it unreadable too.
                _log.warning("digest %s cannot be read: %s", row["delivery_id"], exc)
                continue
            touched = [add(i, m.reason, message_subject(m)) for i, m in items]
            if any(touched):
                digests.append(WaitingDigest(row["delivery_id"], items))
        return found, digests

    async def replace(
        self,
        conn: Any,
        waiting: Sequence[str],
        digests: Sequence[WaitingDigest],
        rendered: Mapping[str, NewDelivery],
    ) -> None:
        """Give each of ``waiting`` its message from ``rendered``; withdraw those it lacks.

        Each of ``digests`` is put together again from its items, those of
        ``waiting`` as ``rendered`` (left out where it lacks them), or withdrawn
        when none is left. Runs in the caller's transaction (the consumer's,
        with its cursor).
        """
        kept = [
            (i, json.dumps(rendered[i].message.to_json(), ensure_ascii=False))
            for i in waiting
            if i in rendered
        ]
        gone = [i for i in waiting if i not in rendered]
        messages = {i: d.message for i, d in rendered.items()}
        for digest in digests:
            again = digest_again(digest.delivery_id, digest.items, set(waiting), messages)
            if again is None:
                gone.append(digest.delivery_id)
            else:
                kept.append((digest.delivery_id, json.dumps(again.to_json(), ensure_ascii=False)))
        if kept:
            await conn.executemany(self._rewrite_delivery_sql, kept)
            await conn.executemany(self._rewrite_item_sql, kept)
        if gone:
            await conn.execute(self._withdraw_deliveries_sql, gone)
            await conn.execute(self._withdraw_items_sql, gone)
