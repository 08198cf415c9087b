"""The issues holding a custom field's values: locked before the field, respelled.

Lock order. Writes lock an issue, then (creating or moving it) its
component, then, inserting a value's row, the field (FOR KEY SHARE: the
rows' key, migration 0014, and migration 0015's check). A change of the
field that rewrites the values issues hold (DeleteCustomField removes
them, UpdateCustomField respells them) must lock those issues, so it locks
them first (:func:`lock_holders`), then the field's component and the field
(``_custom_fields._field_for_change``). Once it holds the field no new
holder can appear; the issues that became holders while it waited for
the field are locked without waiting (NOWAIT). One some write holds is
left to it by running the whole change again (:class:`HoldersBusy`), never
waited for while the field is held: that write may be about to insert a
value, waiting for the field, a cycle the database would break by
aborting one of the two after its deadlock timeout.

Respelling. Options compare by Unicode case folding
(``bugless_core.custom_fields``): renaming "Bug" to "bug" removes nothing,
and a value is stored in its option's spelling. So that the database never
has to fold letter case, stored values spell an option as the field spells
it now: a write stores the spelling it matched (migration 0017's check
refuses a spelling renamed meanwhile), and an UpdateCustomField renaming
options rewrites the values that hold them (:func:`carry`), in its
transaction. Searches and migration 0015's check then compare exactly,
served by the value index as they are; what folds is Python, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from bugless_core import custom_fields as cf
from bugless_model_postgres._convert import Conn
from bugless_proto import v1

__all__ = [
    "HoldersBusy",
    "carried_spellings",
    "carry",
    "held_spellings",
    "lock_holders",
    "renamed_spellings",
    "respell_backfill",
]

#: The options of field $1 as committed (read before any lock).
OPTIONS = "SELECT options FROM custom_fields WHERE id = $1"
#: Field $1's options, the field locked (as ``_field_for_change`` locks it).
OPTIONS_FOR_UPDATE = "SELECT options FROM custom_fields WHERE id = $1 FOR UPDATE"
#: The spellings field $1's values are stored in: each an option as the
#: field spells it, or, for values stored before migration 0018 was
#: drained, as it was spelled when they were set. The caller folds them
#: (Python's ``str.casefold``, the rule ``bugless_core.custom_fields`` matches
#: options by): SQL's ``lower()`` folds by the database's collation, only
#: ASCII under the C locale (a CloudNativePG default, and the tests'), and
#: never "ß" to "ss". It reads the field's range of the value index, once
#: per UpdateCustomField that changes the options.
HELD_SPELLINGS = "SELECT DISTINCT value FROM issue_custom_values WHERE field_id = $1"
#: Migration 0018's queue: fields holding values in an option's former spelling.
NEXT_PENDING = "SELECT field_id FROM custom_value_spellings_pending ORDER BY field_id LIMIT 1"
PENDING_DONE = "DELETE FROM custom_value_spellings_pending WHERE field_id = $1"
#: The issues holding a value of field $1 (through the search rows; with
#: ``{spelled}``, one spelled as in $2), locked in id order as writes lock
#: issues, with the lock the rewrite takes (no key columns change).
LOCK_HOLDERS = """
SELECT id FROM issues
 WHERE id IN (SELECT issue_id FROM issue_custom_values WHERE field_id = $1{spelled})
 ORDER BY id FOR NO KEY UPDATE{nowait}
"""
_SPELLED = " AND value = ANY ($2::text[])"
#: Field $1's values in spellings $2 respelled $3 (the same place in both
#: arrays), in issues' values: a single value, or each item of a list.
RESPELL_VALUES = """
UPDATE issues i
   SET custom_fields = jsonb_set(
       i.custom_fields, ARRAY[$1::bigint::text],
       CASE WHEN jsonb_typeof(i.custom_fields -> $1::bigint::text) = 'array'
            THEN (SELECT jsonb_agg(to_jsonb(coalesce(m.new, e.item)) ORDER BY e.n)
                    FROM jsonb_array_elements_text(i.custom_fields -> $1::bigint::text)
                         WITH ORDINALITY AS e(item, n)
                    LEFT JOIN unnest($2::text[], $3::text[]) AS m(old, new) ON m.old = e.item)
            ELSE to_jsonb(coalesce(
                (SELECT m.new FROM unnest($2::text[], $3::text[]) AS m(old, new)
                  WHERE m.old = i.custom_fields ->> $1::bigint::text),
                i.custom_fields ->> $1::bigint::text))
       END)
 WHERE i.id IN (SELECT issue_id FROM issue_custom_values
                 WHERE field_id = $1 AND value = ANY ($2::text[]))
"""
#: The same in the search rows (updated in place: migration 0015's check is
#: on inserts, and the key to the field does not change).
RESPELL_ROWS = """
UPDATE issue_custom_values v SET value = m.new
  FROM unnest($2::text[], $3::text[]) AS m(old, new)
 WHERE v.field_id = $1 AND v.value = m.old
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


def renamed_spellings(current: Sequence[str], updated: Sequence[str]) -> list[str]:
    """The options of ``current`` that ``updated`` spells otherwise (same case folding)."""
    probe = v1.CustomField(type=v1.CustomFieldType.ENUM, options=list(updated))
    return [o for o in current if cf.match_option(probe, o) not in (None, o)]


def carried_spellings(field: v1.CustomField, held: Iterable[str]) -> dict[str, str]:
    """Each spelling in ``held`` that names an option of ``field`` spelled otherwise, to it.

    The one rule is ``cf.match_option`` (case folding); spellings that name
    no option are left out (the caller refuses to remove a held option).
    """
    carried: dict[str, str] = {}
    for spelling in held:
        option = cf.match_option(field, spelling)
        if option is not None and option != spelling:
            carried[spelling] = option
    return carried


async def held_spellings(conn: Conn, field_id: int) -> list[str]:
    """The spellings field ``field_id``'s values are stored in (:data:`HELD_SPELLINGS`)."""
    return [value for (value,) in await conn.fetch(HELD_SPELLINGS, field_id)]


async def options_committed(conn: Conn, field_id: int) -> list[str] | None:
    """Field ``field_id``'s options as committed, read without a lock (None: no field)."""
    options = await conn.fetchval(OPTIONS, field_id)
    return None if options is None else list(options)


async def lock_holders(
    conn: Conn, field_id: int, spellings: Sequence[str] | None = None, *, wait: bool = True
) -> None:
    """Lock the issues holding field ``field_id`` (in one of ``spellings``), in id order.

    ``wait=False`` (the caller holds the field): raise :class:`HoldersBusy`
    rather than wait for an issue another transaction holds.
    """
    nowait = "" if wait else " NOWAIT"
    try:
        if spellings is None:
            await conn.execute(LOCK_HOLDERS.format(spelled="", nowait=nowait), field_id)
        elif spellings:
            statement = LOCK_HOLDERS.format(spelled=_SPELLED, nowait=nowait)
            await conn.execute(statement, field_id, list(spellings))
    except asyncpg.LockNotAvailableError as exc:
        raise HoldersBusy(exc) from exc


async def carry(conn: Conn, field_id: int, carried: dict[str, str]) -> None:
    """Respell field ``field_id``'s values as ``carried`` says, in issues and search rows.

    The caller holds the field (FOR UPDATE), so the holders are all the
    issues that will ever hold these spellings; those not locked yet are
    locked here without waiting (:class:`HoldersBusy`). Issues keep their
    version: only the spelling of an option they hold changes, and their
    history keeps the spelling each entry set (as a deletion of a field
    leaves its values in the entries).
    """
    if not carried:
        return
    old, new = list(carried), list(carried.values())
    await lock_holders(conn, field_id, old, wait=False)
    await conn.execute(RESPELL_VALUES, field_id, old, new)
    await conn.execute(RESPELL_ROWS, field_id, old, new)


async def respell_backfill(pool: asyncpg.Pool) -> int:
    """Respell the values of the fields migration 0018 queued; how many fields were done.

    One field per transaction, in the order an UpdateCustomField takes its
    locks: the issues holding a former spelling, then the field, then the
    holders that appeared meanwhile without waiting (a busy one: the field
    is tried again). Several replicas may run it at once: a field done
    twice finds nothing left to respell.
    """
    done = 0
    while True:
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    field_id = await conn.fetchval(NEXT_PENDING)
                    if field_id is None:
                        return done
                    await _respell_field(conn, field_id)
                    await conn.execute(PENDING_DONE, field_id)
            except HoldersBusy:
                continue
        done += 1


async def _respell_field(conn: Conn, field_id: int) -> None:
    options = await options_committed(conn, field_id)
    held = await held_spellings(conn, field_id)
    await lock_holders(conn, field_id, list(carried_spellings(_with(options), held)))
    options = await conn.fetchval(OPTIONS_FOR_UPDATE, field_id)
    held = await held_spellings(conn, field_id)
    await carry(conn, field_id, carried_spellings(_with(options), held))


def _with(options: Sequence[str] | None) -> v1.CustomField:
    return v1.CustomField(type=v1.CustomFieldType.ENUM, options=list(options or []))
