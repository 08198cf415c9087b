"""The SQL of the delivery queue and the endpoint store, apart from control flow.

Every statement names its tables with the notifier's schema, because
:meth:`bugless_notify.queue.DeliveryQueue.enqueue` runs on a caller's
connection whose ``search_path`` is not ours.
"""

from __future__ import annotations

import dataclasses
import functools

from bugless_core.migrations import quote_schema

_COLUMNS = """delivery_id, channel, recipient, recipient_name, message::text AS message, state,
    attempts, next_attempt_at, claimed_by, lease_until, last_error, created_at, finished_at, seq"""
#: A delivered row's message: a digest mail's without its items (see ``delivered``).
_WITHOUT_DIGEST_ITEMS = (
    "message = CASE WHEN delivery_id LIKE 'digest-%' "
    "THEN message #- '{data,items}' ELSE message END"
)


@dataclasses.dataclass(frozen=True)
class Statements:
    """The statements for one schema (see :func:`for_schema`)."""

    enqueue: str
    claim: str
    delivered: str
    delivered_many: str
    retry: str
    dead: str
    dead_many: str
    release: str
    rewrite_claimed: str
    withdraw_claimed: str
    holds: str
    next_due: str
    counts: str
    get: str
    list_dead: str
    requeue: str
    discard: str
    purge_delivered: str
    notify: str
    endpoint_get: str
    endpoint_put: str
    endpoint_delete: str
    endpoint_list: str
    endpoint_reseal: str


@functools.cache
def for_schema(schema: str) -> Statements:
    """The statements with ``schema``'s tables (checked to be a plain name)."""
    s = quote_schema(schema)
    return Statements(
        # unnest keeps a batch one round trip; ON CONFLICT makes enqueueing idempotent.
        enqueue=f"""
            INSERT INTO {s}.deliveries (delivery_id, channel, recipient, recipient_name, message)
            SELECT d, c, r, n, m::jsonb
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 AS t(d, c, r, n, m)
            ON CONFLICT (delivery_id) DO NOTHING""",
        claim=f"""
            WITH due AS (
                SELECT delivery_id FROM {s}.deliveries
                WHERE state = 'pending' AND next_attempt_at <= now()
                  AND channel = ANY($2::text[])
                ORDER BY next_attempt_at, seq
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {s}.deliveries AS d
            SET attempts = d.attempts + 1,
                claimed_by = $1,
                claim_token = $4,
                lease_until = now() + make_interval(secs => $5),
                next_attempt_at = now() + make_interval(secs => $5)
            FROM due
            WHERE d.delivery_id = due.delivery_id
            RETURNING d.delivery_id, d.channel, d.recipient, d.recipient_name,
                      d.message::text AS message, d.attempts, d.seq, d.revision""",
        # Delivered whoever holds the claim now: the mail is out either way.
        # A digest mail's items (data.items: each listed mail whole, kept to
        # put it together again after a redaction) are of no use once it is
        # out, and would double what its row keeps for the retention.
        delivered=f"""
            UPDATE {s}.deliveries
            SET state = 'delivered', finished_at = now(), last_error = '',
                claimed_by = NULL, claim_token = NULL, lease_until = NULL,
                {_WITHOUT_DIGEST_ITEMS}
            WHERE delivery_id = $1 AND state = 'pending'""",
        delivered_many=f"""
            UPDATE {s}.deliveries
            SET state = 'delivered', finished_at = now(), last_error = '',
                claimed_by = NULL, claim_token = NULL, lease_until = NULL,
                {_WITHOUT_DIGEST_ITEMS}
            WHERE delivery_id = ANY($1::text[]) AND state = 'pending'""",
        retry=f"""
            UPDATE {s}.deliveries
            SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4,
                claimed_by = NULL, claim_token = NULL, lease_until = NULL
            WHERE delivery_id = $1 AND claim_token = $2 AND state = 'pending'""",
        dead=f"""
            UPDATE {s}.deliveries
            SET state = 'dead', finished_at = now(), last_error = $3,
                claimed_by = NULL, claim_token = NULL, lease_until = NULL
            WHERE delivery_id = $1 AND claim_token = $2 AND state = 'pending'""",
        # Rows a claim could not read, each with its own reason, in one round trip.
        dead_many=f"""
            UPDATE {s}.deliveries AS d
            SET state = 'dead', finished_at = now(), last_error = t.error,
                claimed_by = NULL, claim_token = NULL, lease_until = NULL
            FROM unnest($1::text[], $3::text[]) AS t(delivery_id, error)
            WHERE d.delivery_id = t.delivery_id AND d.claim_token = $2 AND d.state = 'pending'
            RETURNING d.delivery_id""",
        release=f"""
            UPDATE {s}.deliveries
            SET next_attempt_at = now(), attempts = greatest(attempts - 1, 0),
                claimed_by = NULL, claim_token = NULL, lease_until = NULL
            WHERE delivery_id = ANY($1::text[]) AND claim_token = $2 AND state = 'pending'""",
        # A claimed message the worker rendered again (or withdrew) before
        # sending it: only while the claim is still the worker's and the
        # message is the one it claimed (the revision: the consumer may have
        # stored a newer rendering meanwhile, which must not be overwritten).
        rewrite_claimed=f"""
            UPDATE {s}.deliveries SET message = $3::jsonb, revision = revision + 1
            WHERE delivery_id = $1 AND claim_token = $2 AND state = 'pending'
              AND revision = $4""",
        withdraw_claimed=f"""
            DELETE FROM {s}.deliveries
            WHERE delivery_id = $1 AND claim_token = $2 AND state = 'pending'
              AND revision = $3""",
        holds=f"""
            SELECT EXISTS (SELECT 1 FROM {s}.deliveries
                           WHERE delivery_id = $1 AND claim_token = $2 AND state = 'pending')""",
        next_due=f"""
            SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
            FROM {s}.deliveries
            WHERE state = 'pending' AND channel = ANY($1::text[])""",
        counts=f"SELECT state, count(*) FROM {s}.deliveries GROUP BY state",
        get=f"SELECT {_COLUMNS} FROM {s}.deliveries WHERE delivery_id = $1",
        list_dead=f"""
            SELECT {_COLUMNS} FROM {s}.deliveries
            WHERE state = 'dead' AND ($2::text IS NULL OR channel = $2)
              AND ($3::timestamptz IS NULL OR (finished_at, seq) < ($3, $4))
            ORDER BY finished_at DESC, seq DESC
            LIMIT $1""",
        requeue=f"""
            UPDATE {s}.deliveries
            SET state = 'pending', attempts = 0, next_attempt_at = now(), finished_at = NULL,
                claimed_by = NULL, claim_token = NULL, lease_until = NULL
            WHERE delivery_id = ANY($1::text[]) AND state = 'dead'""",
        discard=f"""
            DELETE FROM {s}.deliveries WHERE delivery_id = ANY($1::text[]) AND state = 'dead'""",
        purge_delivered=f"""
            DELETE FROM {s}.deliveries WHERE delivery_id IN (
                SELECT delivery_id FROM {s}.deliveries
                WHERE state = 'delivered' AND finished_at < now() - make_interval(secs => $1)
                LIMIT $2)""",
        notify="SELECT pg_notify($1, '')",
        endpoint_get=f"""
            SELECT name, url, secret, payload_format, component_id FROM {s}.webhook_endpoints
            WHERE name = $1""",
        endpoint_put=f"""
            INSERT INTO {s}.webhook_endpoints (name, url, secret, payload_format)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE
            SET url = excluded.url, secret = excluded.secret,
                payload_format = excluded.payload_format, updated_at = now()""",
        endpoint_delete=f"DELETE FROM {s}.webhook_endpoints WHERE name = $1",
        endpoint_list=f"""
            SELECT name, url, secret, payload_format, component_id FROM {s}.webhook_endpoints
            ORDER BY name""",
        endpoint_reseal=f"""
            UPDATE {s}.webhook_endpoints SET secret = $3 WHERE name = $1 AND secret = $2""",
    )
