-- Webhook endpoints configured per component by its admins (issue 16), and
-- their history. An endpoint with no component is an operator's (made with
-- the store directly); one with a component gets the changes of issues in
-- that component (and its subtree when include_subtree), as the person who
-- made it may see them.

ALTER TABLE webhook_endpoints
    ADD COLUMN component_id    bigint,
    ADD COLUMN include_subtree boolean NOT NULL DEFAULT false,
    ADD COLUMN enabled         boolean NOT NULL DEFAULT true,
    -- Whose view of an issue the endpoint gets (see bugless_notify.endpoints).
    ADD COLUMN created_by      text NOT NULL DEFAULT '';

CREATE INDEX webhook_endpoints_component ON webhook_endpoints (component_id)
    WHERE component_id IS NOT NULL;

-- Who added, disabled, enabled or deleted which endpoint, and when; never a secret.
CREATE TABLE webhook_history (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    component_id bigint NOT NULL,
    name         text NOT NULL,
    action       text NOT NULL CHECK (action IN ('add', 'enable', 'disable', 'delete')),
    actor        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_history_component ON webhook_history (component_id, seq DESC);
