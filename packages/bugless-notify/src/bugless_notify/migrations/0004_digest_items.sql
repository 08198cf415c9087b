-- Daily digests (issue 16): the mails of people whose settings say "daily
-- digest" wait here, rendered for them at the time of the change (with what
-- they could see then), until the digest sender folds each person's into one
-- mail and queues it, deleting them in the same transaction.

CREATE TABLE digest_items (
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    -- The delivery id the mail would have had: processing a change again
    -- (a consumer that died after computing its batch) adds nothing.
    item_id        text PRIMARY KEY CHECK (length(item_id) BETWEEN 1 AND 255),
    user_id        text NOT NULL CHECK (user_id <> ''),
    recipient      text NOT NULL CHECK (recipient <> ''),
    recipient_name text NOT NULL DEFAULT '',
    message        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX digest_items_by_user ON digest_items (user_id, seq);
