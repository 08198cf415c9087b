"""The backend's fixed SQL statements on components, hotlists and saved searches.

These are the collections issues are filed in, ranked in and found by: the
component tree (paths, effective ACLs), hotlists and their ranked items, and
saved searches, apart from the control flow in :mod:`._components`,
:mod:`._hotlists` and :mod:`._hotlist_calls`. Statements whose subject is an
issue row or its history (even when a hotlist call runs them) are in
:mod:`._queries`. As there, ``search_path`` is set to the deployment's schema
and values are always ``$n`` parameters.
"""

from __future__ import annotations

from bugless_model_postgres._visibility import (
    COMPONENT_VISIBLE,
    HOTLIST_VISIBLE,
    SEEN_PATH,
    TYPED_PATH,
)

# ---- components ----

COMPONENT_BY_ID = "SELECT * FROM components WHERE id = $1"
COMPONENT_BY_ID_FOR_UPDATE = "SELECT * FROM components WHERE id = $1 FOR UPDATE"
#: The component whose ``path_key`` is $1 (its path folded segment by segment
#: by ``_components.path_key``, the one rule names compare by).
COMPONENT_BY_PATH = "SELECT * FROM components WHERE path_key = $1::text[]"
COMPONENTS_BY_IDS = "SELECT * FROM components WHERE id = ANY ($1::bigint[])"
#: A component's row and its path as the caller ($2 admin, $3 principals)
#: sees it (``seen_path``, :data:`._visibility.SEEN_PATH`), to answer them.
_SEEN_COLUMNS = (
    "c.*, "
    + SEEN_PATH.format(admin="$2::boolean", principals="$3::text[]", c="c")
    + " AS seen_path"
)
#: The component $1, with its path as the caller ($2, $3) sees it.
COMPONENT_SEEN_BY_ID = f"SELECT {_SEEN_COLUMNS} FROM components c WHERE c.id = $1"
#: The components path $1 (folded names joined by ``>``) names for the caller
#: ($2, $3): the path they are shown (:data:`._visibility.TYPED_PATH`), with
#: it. A whole path names one component; a shortened one (``…>Net``) may
#: name a few, below different components the caller may not view. Only
#: components the caller may view, before the limit: hidden ones are
#: ``…>Net`` as far as the path goes, and a dozen of them would otherwise
#: fill the limit and leave the caller's own out.
COMPONENT_SEEN_BY_PATH = (
    f"SELECT {_SEEN_COLUMNS} FROM components c WHERE "
    + TYPED_PATH.format(c="c", k="$1::text", admin="$2::boolean", principals="$3::text[]")
    + " AND "
    + COMPONENT_VISIBLE.format(c="c", admin="$2::boolean", principals="$3::text[]")
    + " ORDER BY c.id LIMIT 10"
)
#: Only the path of component $1 as the caller ($2, $3) sees it (to name it in a refusal).
SEEN_PATH_OF = (
    "SELECT "
    + SEEN_PATH.format(admin="$2::boolean", principals="$3::text[]", c="c")
    + " FROM components c WHERE c.id = $1"
)
NEXT_COMPONENT_ID = "SELECT nextval(pg_get_serial_sequence('components', 'id'))"

INSERT_COMPONENT = """
INSERT INTO components (id, parent_id, name, description, acl, template, path_ids, path,
                        path_key, created_at, modified_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10, $10)
RETURNING *
"""

#: Visible components ($1 admin, $2 principals), children of $3 (0: all),
#: after path_key $4, in tree order, each with its path as the caller sees it.
LIST_COMPONENTS = f"""
SELECT c.*, {SEEN_PATH.format(admin="$1", c="c", principals="$2::text[]")} AS seen_path
  FROM components c
 WHERE {COMPONENT_VISIBLE.format(admin="$1", c="c", principals="$2::text[]")}
   AND ($3 = 0 OR parent_id = $3)
   AND ($4 OR NOT archived)
   AND ($5::text[] IS NULL OR path_key > $5::text[])
 ORDER BY path_key
 LIMIT $6
"""

UPDATE_COMPONENT = """
UPDATE components
   SET name = $2, description = $3, archived = $4, acl = $5::jsonb, template = $6::jsonb,
       parent_id = $7, modified_at = $8, version = version + 1
 WHERE id = $1
"""

#: Re-root the subtree of $1 under the path_ids $2 of its new parent: each
#: row keeps its ids from $1 down (by their ordinal: CockroachDB has no
#: array slices, cockroachdb/cockroach#32551).
MOVE_SUBTREE = """
UPDATE components
   SET path_ids = $2::bigint[] || ARRAY(
           SELECT u.aid FROM unnest(path_ids) WITH ORDINALITY AS u(aid, ord)
            WHERE u.ord >= array_position(path_ids, $1::bigint) ORDER BY u.ord)
 WHERE path_ids @> ARRAY[$1::bigint]
"""

#: The paths of the subtree of $1 as its names spell them now (from
#: path_ids), with the path each row holds.
SUBTREE_PATHS = """
SELECT s.id, s.path AS held, string_agg(a.name, '>' ORDER BY u.ord) AS path
  FROM components s
       CROSS JOIN LATERAL unnest(s.path_ids) WITH ORDINALITY AS u(aid, ord)
       JOIN components a ON a.id = u.aid
 WHERE s.path_ids @> ARRAY[$1::bigint]
 GROUP BY s.id, s.path
"""

#: Components $1 take paths $2 and keys $3 (each ``_components.path_key`` of
#: the path, its segments joined by '>', which no name holds), when their
#: path is still $4 (the one read: a rename committed meanwhile wins).
SET_PATHS = """
UPDATE components c
   SET path = k.path, path_key = string_to_array(k.path_key, '>')
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS k(id, path, path_key, held)
 WHERE c.id = k.id AND c.path = k.held
"""

#: Every component's id, parent, name, path and key (for the key fill after migrating).
ALL_COMPONENT_PATHS = "SELECT id, parent_id, name, path, path_key FROM components ORDER BY id"

#: Recompute the effective ACL (own + ancestors' entries, highest role per
#: principal) of the subtree of $1.
REFRESH_EFFECTIVE_ACL = """
UPDATE components d
   SET effective_acl = coalesce(e.acl, '{}'::jsonb), viewers = coalesce(e.viewers, '{}')
  FROM (SELECT s.id,
               (SELECT jsonb_object_agg(x.p, x.r)
                  FROM (SELECT e.p, max(e.r) AS r
                          FROM components a
                               CROSS JOIN LATERAL jsonb_to_recordset(a.acl) AS e(p text, r int)
                         WHERE a.id = ANY (s.path_ids)
                         GROUP BY e.p) x) AS acl,
               (SELECT array_agg(DISTINCT e.p ORDER BY e.p)
                  FROM components a
                       CROSS JOIN LATERAL jsonb_to_recordset(a.acl) AS e(p text, r int)
                 WHERE a.id = ANY (s.path_ids)) AS viewers
          FROM components s
         WHERE s.path_ids @> ARRAY[$1::bigint]) e
 WHERE d.id = e.id
"""

# ---- hotlists ----

HOTLIST_COLUMNS = """
h.*, (SELECT count(*)::int FROM hotlist_items hi WHERE hi.hotlist_id = h.id) AS item_count
"""
HOTLIST_BY_ID = f"SELECT {HOTLIST_COLUMNS} FROM hotlists h WHERE h.id = $1"
LOCK_HOTLIST = "SELECT id FROM hotlists WHERE id = $1 FOR UPDATE"
INSERT_HOTLIST = """
INSERT INTO hotlists (name, description, owner, editors, private, created_at, modified_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
RETURNING id
"""
UPDATE_HOTLIST = """
UPDATE hotlists
   SET name = $2, description = $3, owner = $4, editors = $5, private = $6, modified_at = $7,
       version = version + 1
 WHERE id = $1
"""
DELETE_HOTLIST = "DELETE FROM hotlists WHERE id = $1"
#: Visible hotlists ($1 admin, $2 user) of member $3 ('' = any), after id $4.
LIST_HOTLISTS = f"""
SELECT {HOTLIST_COLUMNS} FROM hotlists h
 WHERE {HOTLIST_VISIBLE.format(h="h", admin="$1", user="$2")}
   AND ($3 = '' OR h.owner = $3 OR $3 = ANY (h.editors))
   AND h.id > $4
 ORDER BY h.id
 LIMIT $5
"""
HOTLIST_ISSUE_IDS = "SELECT issue_id FROM hotlist_items WHERE hotlist_id = $1"
HOTLIST_ITEM = "SELECT * FROM hotlist_items WHERE hotlist_id = $1 AND issue_id = $2"
SHIFT_RANKS_UP = """
UPDATE hotlist_items SET rank = rank + $3 WHERE hotlist_id = $1 AND rank >= $2
"""
INSERT_HOTLIST_ITEM = """
INSERT INTO hotlist_items (hotlist_id, issue_id, rank, note, adder, added_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""
#: Items for issues $2 in that order, ranked from $3 on.
INSERT_HOTLIST_ITEMS = """
INSERT INTO hotlist_items (hotlist_id, issue_id, rank, note, adder, added_at)
SELECT $1, t.issue_id, $3 + t.position - 1, $4, $5, $6
  FROM unnest($2::bigint[]) WITH ORDINALITY AS t(issue_id, position)
"""
#: Issues $1 joined or left a hotlist: each one's version goes up and its
#: entry (author $3 at $2, changes $4) records it; returns (issue_id, version).
RECORD_MEMBERSHIPS = """
WITH bumped AS (
  UPDATE issues SET version = version + 1, modified_at = $2
   WHERE id = ANY ($1::bigint[])
  RETURNING id, version
)
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           caused_by_issue_id)
SELECT id, version, $3, $2, '', $4::jsonb, 0 FROM bumped
RETURNING issue_id, version
"""
DELETE_HOTLIST_ITEMS = """
DELETE FROM hotlist_items WHERE hotlist_id = $1 AND issue_id = ANY ($2::bigint[])
"""
#: Renumber ranks 0..n-1 keeping their order (after removals or a move).
COMPACT_RANKS = """
UPDATE hotlist_items t SET rank = r.new_rank
  FROM (SELECT issue_id, (row_number() OVER (ORDER BY rank, added_at, issue_id) - 1)::int
               AS new_rank
          FROM hotlist_items WHERE hotlist_id = $1) r
 WHERE t.hotlist_id = $1 AND t.issue_id = r.issue_id AND t.rank <> r.new_rank
"""
COUNT_HOTLIST_ITEMS = "SELECT count(*)::int FROM hotlist_items WHERE hotlist_id = $1"
#: Items of hotlist $1 ranked in the order of issues $2 (0-based); only changed ranks are written.
SET_ITEM_RANKS = """
UPDATE hotlist_items h SET rank = t.position - 1
  FROM unnest($2::bigint[]) WITH ORDINALITY AS t(issue_id, position)
 WHERE h.hotlist_id = $1 AND h.issue_id = t.issue_id AND h.rank <> t.position - 1
"""
SET_ITEM_NOTE = """
UPDATE hotlist_items SET note = $3 WHERE hotlist_id = $1 AND issue_id = $2 RETURNING *
"""
#: Hotlist $1's items changed at $2 (joined, left, re-ranked, noted): its
#: order and notes are its content, so its version and last change move, as
#: a rename's do. Run with the hotlist locked first (lock order: hotlist,
#: then its items).
TOUCH_HOTLIST = """
UPDATE hotlists SET version = version + 1, modified_at = $2 WHERE id = $1
"""
#: Items of $1 whose issue the caller may view ($2 admin, $3 principals),
#: after rank $4, in rank order.
LIST_HOTLIST_ITEMS = f"""
SELECT hi.* FROM hotlist_items hi
  JOIN issues i ON i.id = hi.issue_id
  JOIN components c ON c.id = i.component_id
 WHERE hi.hotlist_id = $1
   AND {COMPONENT_VISIBLE.format(admin="$2", c="c", principals="$3::text[]")}
   AND hi.rank > $4
 ORDER BY hi.rank
 LIMIT $5
"""

# ---- saved searches ----

INSERT_SAVED_SEARCH = """
INSERT INTO saved_searches (owner, name, query, readers, columns, created_at, modified_at)
VALUES ($1, $2, $3, $4, $6, $5, $5)
RETURNING *
"""
SAVED_SEARCH_BY_ID = "SELECT * FROM saved_searches WHERE id = $1"
SAVED_SEARCH_FOR_UPDATE = "SELECT * FROM saved_searches WHERE id = $1 FOR UPDATE"
UPDATE_SAVED_SEARCH = """
UPDATE saved_searches
   SET name = $2, query = $3, readers = $4, columns = $6, modified_at = $5,
       version = version + 1
 WHERE id = $1
RETURNING *
"""
DELETE_SAVED_SEARCH = "DELETE FROM saved_searches WHERE id = $1"
#: Moves the subscriptions' version (0035), last in the transaction of every
#: subscribe, unsubscribe, and edit or deletion of a saved search: the
#: notifier re-lists the subscriptions only when it moved.
BUMP_SUBSCRIPTIONS_VERSION = (
    "UPDATE saved_search_subscriptions_version SET version = version + 1 WHERE only_row"
)
SUBSCRIPTIONS_VERSION = "SELECT version FROM saved_search_subscriptions_version WHERE only_row"
#: The caller's own ($1 user) plus, unless $3, those shared with principals $2.
LIST_SAVED_SEARCHES = """
SELECT * FROM saved_searches
 WHERE (owner = $1 OR (NOT $3 AND readers && $2::text[]))
   AND id > $4
 ORDER BY id
 LIMIT $5
"""
