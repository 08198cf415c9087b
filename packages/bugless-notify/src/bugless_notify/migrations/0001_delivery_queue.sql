-- The notifier's durable delivery queue and its webhook endpoints.
-- Applied by bugless_core.migrations with search_path set to the notifier's schema.

CREATE TABLE deliveries (
    -- Insertion order: deliveries due at the same moment go out in it.
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    -- The idempotency key: enqueueing it again is a no-op, and channels
    -- derive the Message-ID / X-Bugless-Delivery from it.
    delivery_id     text PRIMARY KEY CHECK (length(delivery_id) BETWEEN 1 AND 255),
    channel         text NOT NULL CHECK (channel <> ''),
    recipient       text NOT NULL CHECK (recipient <> ''),
    recipient_name  text NOT NULL DEFAULT '',
    -- The rendered NotificationMessage (its to_json form).
    message         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    -- Attempts started (counted when claimed, so a crash counts too).
    attempts        integer NOT NULL DEFAULT 0,
    -- When the row may next be claimed. While claimed it is the end of the
    -- lease: a replica that died holding it frees it by simply not finishing.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,
    claim_token     text,
    lease_until     timestamptz,
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When it was delivered or moved to the dead letters.
    finished_at     timestamptz
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (finished_at DESC, seq DESC) WHERE state = 'dead';
CREATE INDEX deliveries_delivered ON deliveries (finished_at) WHERE state = 'delivered';

CREATE TABLE webhook_endpoints (
    name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    url            text NOT NULL,
    secret         text NOT NULL,
    payload_format text NOT NULL DEFAULT 'json' CHECK (payload_format IN ('json', 'chat')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
