"""A waiting message's saved search and subscribed component, read back to render it again.

A redaction makes the consumer render the messages still waiting with the
reason they had (``WaitingMessages.about``, then ``kept_candidates``). The
saved search's name and the subscribed component are two fields of the
queued message; a message an earlier notifier queued has only
``reason_detail``, read by its reason. On a real PostgreSQL queue.
"""

from __future__ import annotations

import dataclasses

import asyncpg
from notify_support import notice

from bugless_notify._redactions import Redaction, WaitingMessages, kept_candidates
from bugless_notify.queue import DeliveryQueue, NewDelivery
from bugless_notify.recipients import Candidate
from bugless_notify.render import Reason, render_notification

ISSUE = 4242


def _mail(user: str, **why: object) -> NewDelivery:
    return NewDelivery(
        delivery_id=f"change-{ISSUE}-4/email/{user}",
        channel="email",
        recipient=f"{user}@example.com",
        message=render_notification(notice(ISSUE, **why)),  # type: ignore[arg-type]
    )


async def test_waiting_messages_say_their_search_and_component_from_either_release(
    notify_database: str, queue: DeliveryQueue
) -> None:
    """A search named "7" stays a search, and component 7 a component, whoever queued them.

    sam's and carl's messages are queued as this release writes them; sue's
    and cy's as the earlier release did (``reason_detail`` only, the same
    string "7" for both). Each comes back with what its reason referred
    to, in the field of its kind.
    """
    mails = [
        _mail("sam", reason=Reason.SAVED_SEARCH, saved_search="7"),
        _mail("carl", reason=Reason.COMPONENT, subscribed_component_id=7),
        _mail("sue", reason=Reason.SAVED_SEARCH, saved_search="7"),
        _mail("cy", reason=Reason.COMPONENT, subscribed_component_id=7),
    ]
    assert {m.message.reason_detail for m in mails} == {"7"}
    conn = await asyncpg.connect(notify_database)
    try:
        await queue.enqueue(conn, mails)
        await conn.execute(
            f"UPDATE {queue.schema}.deliveries"
            " SET message = message - 'saved_search' - 'subscribed_component_id'"
            " WHERE delivery_id = ANY($1::text[])",
            [mails[2].delivery_id, mails[3].delivery_id],
        )
        waiting, _ = await WaitingMessages(queue.schema).about(conn, Redaction(ISSUE, 4, 5))
    finally:
        await conn.close()
    got = {w.id.rsplit("/", 1)[1]: (w.reason, w.saved_search, w.component_id) for w in waiting[4]}
    assert got == {
        "sam": ("saved_search", "7", 0),
        "carl": ("component", "", 7),
        "sue": ("saved_search", "7", 0),
        "cy": ("component", "", 7),
    }
    kept = {c.user_id: c for c in kept_candidates(waiting)[4]}
    assert kept["sue"] == Candidate("sue", Reason.SAVED_SEARCH, saved_search="7")
    assert kept["cy"] == Candidate("cy", Reason.COMPONENT, component_id=7)
    assert dataclasses.asdict(kept["sam"]) == dataclasses.asdict(kept["sue"]) | {"user_id": "sam"}
