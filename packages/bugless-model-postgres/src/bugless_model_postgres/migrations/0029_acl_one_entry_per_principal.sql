-- bugless schema: a component's own access list names each user or group once.
--
-- Since 9eaca465 the Model refuses an access list naming one principal
-- twice (the second entry's role was not what its editor meant: a demotion
-- written next to an ADMIN entry left the person an admin). Releases before
-- it stored such lists as sent, so a component may still hold two or more
-- entries for one principal. Access never depended on their order: the
-- effective ACL (`effective_acl`, `viewers`) takes each principal's highest
-- role (REFRESH_EFFECTIVE_ACL). This file merges the own entries the same
-- way, keeping each principal once, with its highest role, where it was
-- first listed; so what GetComponent shows (and the web's access-list form
-- edits) is what the Model enforces, and an unchanged save is accepted.
-- Access does not change, so the effective ACL is left as it is. A merged
-- component's version goes up by one: a form read before the merge is
-- stale, not saved over the merged list.
--
-- Valid on PostgreSQL 14+ and CockroachDB 23.2+ (jsonb_array_elements
-- WITH ORDINALITY, ordered jsonb_agg, UPDATE ... FROM a subquery).
UPDATE components c
   SET acl = merged.acl, version = c.version + 1
  FROM (SELECT kept.id,
               jsonb_agg(jsonb_build_object('p', kept.p, 'r', kept.r) ORDER BY kept.first) AS acl
          FROM (SELECT s.id,
                       e.entry ->> 'p' AS p,
                       max((e.entry ->> 'r')::int) AS r,
                       min(e.ord) AS first
                  FROM components s
                       CROSS JOIN LATERAL jsonb_array_elements(s.acl) WITH ORDINALITY AS e(entry, ord)
                 GROUP BY s.id, e.entry ->> 'p') kept
         GROUP BY kept.id) merged
 WHERE c.id = merged.id
   AND jsonb_array_length(c.acl) <> jsonb_array_length(merged.acl);
