-- A queued message's revision: bumped by every statement that rewrites the
-- message of a waiting delivery (the feed consumer after a redaction, the
-- worker's check right before sending). The worker's rewrite and withdrawal
-- of a claimed row compare the revision they claimed, so a worker that
-- rendered the message again from an older view never overwrites a newer
-- rendering the consumer stored meanwhile.

ALTER TABLE deliveries ADD COLUMN revision integer NOT NULL DEFAULT 0;
