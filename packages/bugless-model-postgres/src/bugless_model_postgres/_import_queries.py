"""The backend's fixed SQL statements of an import (ImportIssue, issue 21).

Kept apart from :mod:`._queries` (the statements of native issue writes,
history, the change feed) because only the import modules read them
(:mod:`._imports`, :mod:`._import_relations`, :mod:`._import_labels`): an
imported issue is written in its final state with the times and counts its
source recorded, and its entries are written in one statement each.

Statements run with ``search_path`` set to the deployment's schema, so table
names are unqualified. Values are always ``$n`` parameters.
"""

from __future__ import annotations

#: The issue imported before under external id $1, locked for the extension.
IMPORTED_ISSUE = """
SELECT id, title, status, priority, severity, type, component_id, assignee, verifier, cc,
       closed_at, modified_at, version, import_position, custom_fields, created_at,
       parent_id, duplicate_of_id, blocking_ids, blocked_by_ids
  FROM issues WHERE external_id = $1 AND external_id <> ''
   FOR UPDATE
"""

#: The issue imported before under external id $1 and how much of its
#: source's history it holds, read without a lock (to lock it in id order
#: with the issues its new entries name).
IMPORTED_ISSUE_POSITION = """
SELECT id, import_position FROM issues WHERE external_id = $1 AND external_id <> ''
"""

#: An imported issue in its final state, with the times and counts its
#: source recorded. ``RETURNING id``: no row when a concurrent import of the
#: same external id committed first. ``{id}``/``{id_value}`` as in
#: :data:`._queries.INSERT_ISSUE`.
_INSERT_IMPORTED = """
INSERT INTO issues ({id}title, status, priority, severity, type, component_id, reporter,
                    assignee, verifier, cc, description, created_at, modified_at, closed_at,
                    version, comment_count, comments_tsv, text_tsv, custom_fields,
                    external_id, import_position)
VALUES ({id_value}$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
        to_tsvector('english', $17), to_tsvector('english', $1) || to_tsvector('english', $17),
        $18::jsonb, $19, $20)
ON CONFLICT (external_id) WHERE external_id <> '' DO NOTHING
RETURNING id
"""
INSERT_IMPORTED = _INSERT_IMPORTED.format(id="", id_value="")
INSERT_IMPORTED_WITH_ID = _INSERT_IMPORTED.format(id="id, ", id_value="$21, ")

#: An imported issue after newer source history: state, times, counts.
UPDATE_IMPORTED = """
UPDATE issues
   SET title = $2, status = $3, priority = $4, severity = $5, type = $6, component_id = $7,
       assignee = $8, verifier = $9, cc = $10, closed_at = $11, modified_at = $12,
       version = $13, comment_count = comment_count + $14,
       comments_tsv = comments_tsv || to_tsvector('english', $15),
       text_tsv = to_tsvector('english', $2) || comments_tsv || to_tsvector('english', $15),
       import_position = $16
 WHERE id = $1
"""

#: Only the position moves: the newer source items changed nothing here.
ADVANCE_IMPORT_POSITION = "UPDATE issues SET import_position = $2 WHERE id = $1"

#: Every entry of one imported issue ($1) in one statement: versions, authors,
#: times, comments and changes as parallel arrays; $7 the external reference.
INSERT_IMPORTED_ENTRIES = """
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           imported_from, edits_version)
SELECT $1, e.version, e.author, e.created_at, e.comment, e.changes::jsonb, $7, e.edits
  FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
              $8::bigint[])
       AS e(version, author, created_at, comment, changes, edits)
"""

#: The issues an imported history's relations name: by external id ($1) or id ($2).
ISSUES_BY_REFERENCE = """
SELECT id, external_id FROM issues
 WHERE (external_id = ANY ($1::text[]) AND external_id <> '') OR id = ANY ($2::bigint[])
"""

#: An imported issue's relations at the end of its history.
SET_IMPORTED_RELATIONS = """
UPDATE issues SET parent_id = $2, duplicate_of_id = $3, blocking_ids = $4, blocked_by_ids = $5
 WHERE id = $1
"""

#: The other issues of an imported history's blocking changes (locked before),
#: with their last entry's time.
IMPORT_OTHER_SIDES = """
SELECT i.id, i.blocking_ids, i.blocked_by_ids, i.modified_at, i.version,
       (SELECT max(h.created_at) FROM issue_history h WHERE h.issue_id = i.id) AS last_entry_at
  FROM issues i WHERE i.id = ANY ($1::bigint[])
"""

#: The other side's lists after an imported history's blocking changes.
UPDATE_IMPORTED_OTHER_SIDE = """
UPDATE issues SET blocking_ids = $2, blocked_by_ids = $3, modified_at = $4, version = $5
 WHERE id = $1
"""

#: The other side's entries, as :data:`INSERT_IMPORTED_ENTRIES` but caused by
#: the importing issue ($7).
INSERT_IMPORTED_CAUSED_ENTRIES = """
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           imported_from, caused_by_issue_id)
SELECT $1, e.version, e.author, e.created_at, '', e.changes::jsonb, $6, $7
  FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[])
       AS e(version, author, created_at, changes)
"""

#: The description after an imported edit of it ($2), as EditComment sets it.
SET_IMPORTED_DESCRIPTION = "UPDATE issues SET description = $2 WHERE id = $1"
SET_IMPORTED_CUSTOM_FIELDS = "UPDATE issues SET custom_fields = $2::jsonb WHERE id = $1"
ISSUE_HOTLIST_IDS = "SELECT hotlist_id FROM hotlist_items WHERE issue_id = $1"

#: Announce entries $3 (versions) of issue $2 on channel $1, as
#: :data:`._queries.ENTRY_AND_FEED` does for one (delivered on commit).
NOTIFY_ENTRIES = """
SELECT pg_notify($1, $2::bigint::text || ':' || v::text || ':' || pg_current_xact_id()::text)
  FROM unnest($3::bigint[]) AS v
"""

#: Components an import names: existence and archival.
IMPORT_COMPONENTS = "SELECT id, path, archived FROM components WHERE id = ANY ($1::bigint[])"
