-- bugless schema: notification settings carry a version; "webhook" is not a
-- person's channel.
--
-- UpdateNotificationSettings replaced a person's settings unconditionally:
-- the CLI and the web settings page read the settings, changed some and
-- wrote them all back, so a change made elsewhere in between (the other
-- of the two, a script) was overwritten and nobody was told. `version`
-- counts the replacements; an update naming an expected version writes
-- only where it is still current, checked by the one upsert that writes
-- (see _follow.SAVE_SETTINGS), so two concurrent updates made from the same
-- read cannot both succeed. Settings saved before this version, and the
-- defaults of a person with no row, are version 1.
--
-- The Model accepted "webhook" as a person's channel, but the notifier has
-- no personal webhook: it mailed such a person as if the channel were
-- "email". The Model now refuses it; stored ones say what the notifier did.
--
-- An older replica still serving after this migration saves settings
-- without touching `version` (its upsert names the old columns only): a
-- save it makes is not seen as a change by a conditional save made from a
-- read before it, as no save was before this version (docs/upgrades.md).
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (jsonb_set, ->>).
UPDATE notification_settings
   SET settings = jsonb_set(settings, '{channel}', '"email"')
 WHERE settings->>'channel' = 'webhook';

ALTER TABLE notification_settings ADD COLUMN version bigint NOT NULL DEFAULT 1;
