"""The issues holding a custom field's values: locked before the field.

Lock order. Writes lock an issue, then (creating or moving it) its
component, then, inserting a value's row, the field (FOR KEY SHARE: the
rows' key, migration 0014, and migration 0015's check). A change of the
field that rewrites the values issues hold (DeleteCustomField removes
them) must lock those issues, so it locks them first (:func:`lock_holders`),
then the field's component and the field
(``_custom_fields._field_for_change``). Once it holds the field no new
holder can appear; the issues that became holders while it waited for
the field are locked without waiting (NOWAIT). One some write holds is
left to it by running the whole change again (:class:`HoldersBusy`), never
waited for while the field is held: that write may be about to insert a
value, waiting for the field, a cycle the database would break by
aborting one of the two after its deadlock timeout.
"""

from __future__ import annotations

import asyncpg

from bugless_model_postgres._convert import Conn

__all__ = ["HoldersBusy", "lock_holders"]

#: The issues holding a value of field $1 (through the search rows), locked
#: in id order as writes lock issues, with the lock the rewrite takes (no key
#: columns change).
LOCK_HOLDERS = """
SELECT id FROM issues
 WHERE id IN (SELECT issue_id FROM issue_custom_values WHERE field_id = $1)
 ORDER BY id FOR NO KEY UPDATE{nowait}
"""


class HoldersBusy(Exception):
    """An issue became a holder of the field while the change waited for the field.

    The change holds the field, and a write holds the issue (and may be
    waiting for the field to insert another value). Waiting for it would
    close a cycle; instead the change gives up its locks and runs again,
    locking that issue first this time. It carries 40001, so the retry
    policy does that.
    """

    sqlstate = "40001"


async def lock_holders(conn: Conn, field_id: int, *, wait: bool = True) -> None:
    """Lock the issues holding field ``field_id``, in id order.

    ``wait=False`` (the caller holds the field): raise :class:`HoldersBusy`
    rather than wait for an issue another transaction holds.
    """
    statement = LOCK_HOLDERS.format(nowait="" if wait else " NOWAIT")
    try:
        await conn.execute(statement, field_id)
    except asyncpg.LockNotAvailableError as exc:
        raise HoldersBusy(exc) from exc
