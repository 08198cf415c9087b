"""Statements of the seeder, kept apart from its control flow.

The seeder copies generated issues into an unlogged staging table, then turns
them into ``issues`` and ``issue_history`` rows with the same expressions the
backend's own statements use (``bugless_model_postgres._queries``):

* ``INSERT_ISSUE`` sets ``comments_tsv = to_tsvector(description)`` and
  ``text_tsv = to_tsvector(title) || to_tsvector(description)``;
* each ``UPDATE_ISSUE`` with comment ``c`` sets
  ``comments_tsv = comments_tsv || to_tsvector(c)`` and
  ``text_tsv = to_tsvector(title) || <old comments_tsv> || to_tsvector(c)``;
* ``title_tsv`` is the table's generated column.

Seeded issues have up to three entries, so the chains are written out below.
A missing entry contributes ``to_tsvector('')``, the empty tsvector, which
``||`` leaves unchanged. ``bench.seed`` checks the result against issues the
backend writes itself.
"""

from __future__ import annotations

BENCH_SCHEMA = "bench_meta"

CREATE_META = f"""
CREATE SCHEMA IF NOT EXISTS {BENCH_SCHEMA};
CREATE TABLE IF NOT EXISTS {BENCH_SCHEMA}.seed_info (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS {BENCH_SCHEMA}.vocabulary (rank integer PRIMARY KEY, word text NOT NULL);
CREATE TABLE IF NOT EXISTS {BENCH_SCHEMA}.component_field (
    component_id bigint PRIMARY KEY, field_id bigint NOT NULL
);
"""

#: Every component -> the custom field of its top-level component (path_ids[1]).
FILL_COMPONENT_FIELDS = f"""
INSERT INTO {BENCH_SCHEMA}.component_field (component_id, field_id)
SELECT c.id, f.id FROM components c JOIN custom_fields f ON f.component_id = c.path_ids[1]
"""

#: Candidate words ($1, in order) -> words with a single stem not taken by an
#: earlier candidate, ranked 1..n in candidate order.
FILL_VOCABULARY = f"""
WITH c AS (
    SELECT u.word, u.n, to_tsvector('english', u.word) AS tsv
      FROM unnest($1::text[]) WITH ORDINALITY AS u(word, n)
), single AS (
    SELECT DISTINCT ON (tsv) word, n FROM c WHERE length(tsv) = 1 ORDER BY tsv, n
)
INSERT INTO {BENCH_SCHEMA}.vocabulary (rank, word)
SELECT row_number() OVER (ORDER BY n), word FROM single ORDER BY n LIMIT $2
"""

VOCABULARY = f"SELECT word FROM {BENCH_SCHEMA}.vocabulary ORDER BY rank"

SAVE_INFO = f"""
INSERT INTO {BENCH_SCHEMA}.seed_info (key, value) VALUES ($1, $2::jsonb)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE schemaname = $1 AND tablename = 'issues' AND indexname <> 'issues_pkey'
 ORDER BY indexname
"""

CREATE_STAGE = """
CREATE UNLOGGED TABLE bench_stage (
    id bigint PRIMARY KEY, title text, description text, reporter text, assignee text,
    cc text[], priority smallint, severity smallint, type smallint, component_id bigint,
    created_at timestamptz, status1 smallint, status smallint, modified_at timestamptz,
    closed_at timestamptz, version bigint, comment_count integer,
    e2_at timestamptz, e2_author text, e2_status smallint, e2_comment text,
    e3_at timestamptz, e3_author text, e3_comment text
)
"""
DROP_STAGE = "DROP TABLE IF EXISTS bench_stage"

#: Issues $1..$2 from staging, with the backend's tsvector expressions.
INSERT_ISSUES = f"""
INSERT INTO issues (id, title, status, priority, severity, type, component_id, reporter,
                    assignee, verifier, cc, parent_id, duplicate_of_id, description,
                    created_at, modified_at, closed_at, version, comment_count,
                    idempotency_key, comments_tsv, text_tsv, custom_fields)
SELECT s.id, s.title, s.status, s.priority, s.severity, s.type, s.component_id, s.reporter,
       s.assignee, '', s.cc, 0, 0, s.description,
       s.created_at, s.modified_at, s.closed_at, s.version, s.comment_count,
       NULL, (t.d || t.c2) || t.c3, (t.t || (t.d || t.c2)) || t.c3,
       CASE WHEN s.id % 5 = 0
            THEN jsonb_build_object(cf.field_id::text, '4.' || (s.id / 5 % 10)::text)
            ELSE '{{}}'::jsonb END
  FROM bench_stage s
       LEFT JOIN {BENCH_SCHEMA}.component_field cf ON cf.component_id = s.component_id
       CROSS JOIN LATERAL (
           SELECT to_tsvector('english', s.title) AS t,
                  to_tsvector('english', s.description) AS d,
                  to_tsvector('english', s.e2_comment) AS c2,
                  to_tsvector('english', s.e3_comment) AS c3
           OFFSET 0) t
 WHERE s.id BETWEEN $1 AND $2
 ORDER BY s.id
"""

#: The search rows of every seeded custom value (the backfill of Model
#: migration 0010; the backend writes them with each issue).
FILL_CUSTOM_VALUES = """
INSERT INTO issue_custom_values (issue_id, field_id, value, number, component_id, status)
SELECT i.id, e.key::bigint, x.value,
       CASE WHEN jsonb_typeof(e.value) = 'number' THEN x.value::bigint END,
       i.component_id, i.status
  FROM issues i
       CROSS JOIN LATERAL jsonb_each(i.custom_fields) AS e
       CROSS JOIN LATERAL jsonb_array_elements_text(
           CASE WHEN jsonb_typeof(e.value) = 'array' THEN e.value
                ELSE jsonb_build_array(e.value) END) AS x(value)
 WHERE i.custom_fields <> '{}'::jsonb
"""

_CHANGE = (
    "jsonb_build_object('field', {field}, 'old', {old}, 'new', {new}, "
    "'added', {added}, 'removed', '[]'::jsonb)"
)


def _scalar(field: str, new: str, old: str = "''") -> str:
    return _CHANGE.format(field=f"'{field}'", old=old, new=new, added="'[]'::jsonb")


#: Creation changes in the backend's order: title, status, priority,
#: severity, type, component_id, then assignee and cc when set. $3..$6 are
#: the enum names by wire value (status, priority, severity, type).
_CREATION_CHANGES = (
    "jsonb_build_array("
    + ", ".join(
        [
            _scalar("title", "s.title"),
            _scalar("status", "($3::text[])[s.status1]"),
            _scalar("priority", "($4::text[])[s.priority]"),
            _scalar("severity", "($5::text[])[s.severity]"),
            _scalar("type", "($6::text[])[s.type]"),
            _scalar("component_id", "s.component_id::text"),
        ]
    )
    + ")"
    + f" || CASE WHEN s.assignee <> '' THEN jsonb_build_array({_scalar('assignee', 's.assignee')})"
    + " ELSE '[]'::jsonb END"
    + " || CASE WHEN cardinality(s.cc) > 0 THEN jsonb_build_array("
    + _CHANGE.format(field="'cc'", old="''", new="''", added="to_jsonb(s.cc)")
    + ") ELSE '[]'::jsonb END"
)
_STATUS_CHANGE = (
    "CASE WHEN s.e2_status > 0 THEN jsonb_build_array("
    + _scalar("status", "($3::text[])[s.e2_status]", old="($3::text[])[s.status1]")
    + ") ELSE '[]'::jsonb END"
)

#: History entries of issues $1..$2 from staging.
INSERT_HISTORY = f"""
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           caused_by_issue_id)
SELECT s.id, e.version, e.author, e.at, e.comment, e.changes, 0
  FROM bench_stage s
       CROSS JOIN LATERAL (VALUES
           (1, s.reporter, s.created_at, s.description, {_CREATION_CHANGES}),
           (2, s.e2_author, s.e2_at, s.e2_comment, {_STATUS_CHANGE}),
           (3, s.e3_author, s.e3_at, s.e3_comment, '[]'::jsonb)
       ) AS e(version, author, at, comment, changes)
 WHERE s.id BETWEEN $1 AND $2 AND e.at IS NOT NULL
 ORDER BY s.id, e.version
"""

RESET_ISSUE_SEQUENCE = (
    "SELECT setval(pg_get_serial_sequence('issues', 'id'), (SELECT max(id) FROM issues))"
)

#: Whole-table consistency: counts of issues whose row disagrees with its
#: history (version, times, closed_at vs the status class).
CONSISTENCY = """
WITH h AS (
    SELECT issue_id, count(*) AS entries, min(created_at) AS first_at,
           max(created_at) AS last_at, count(*) FILTER (WHERE comment <> '') AS comments
      FROM issue_history GROUP BY issue_id
)
SELECT count(*) FILTER (WHERE h.issue_id IS NULL) AS without_history,
       count(*) FILTER (WHERE i.version <> h.entries) AS bad_version,
       count(*) FILTER (WHERE i.created_at <> h.first_at) AS bad_created,
       count(*) FILTER (WHERE i.modified_at <> h.last_at) AS bad_modified,
       count(*) FILTER (WHERE i.comment_count <> h.comments) AS bad_comment_count,
       count(*) FILTER (WHERE (i.status <= 3) <> (i.closed_at IS NULL)) AS bad_closed_at,
       count(*) FILTER (WHERE i.title_tsv IS NULL OR i.text_tsv = ''::tsvector) AS bad_tsv
  FROM issues i LEFT JOIN h ON h.issue_id = i.id
"""

#: One issue's row and history as JSON, minus what differs between a seeded
#: and a replayed copy (ids and wall-clock times; custom field values, which
#: the seeder writes on the row alone, without the creation's history change).
ISSUE_SNAPSHOT = """
SELECT to_jsonb(i) - 'id' - 'created_at' - 'modified_at' - 'closed_at' - 'custom_fields'
       || jsonb_build_object('closed', i.closed_at IS NOT NULL) AS issue,
       (SELECT jsonb_agg(to_jsonb(h) - 'issue_id' - 'created_at' ORDER BY h.version)
          FROM issue_history h WHERE h.issue_id = i.id) AS history
  FROM issues i WHERE i.id = $1
"""

SAMPLE_IDS = """
(SELECT id FROM issues WHERE version = 1 AND cardinality(cc) > 0 AND assignee <> ''
  ORDER BY id LIMIT 2)
UNION ALL (SELECT id FROM issues WHERE version = 1 AND assignee = '' ORDER BY id LIMIT 1)
UNION ALL (SELECT id FROM issues WHERE version = 2 AND status = 3 ORDER BY id LIMIT 1)
UNION ALL (SELECT id FROM issues WHERE version = 2 AND status > 3 AND comment_count = 1
            ORDER BY id LIMIT 1)
UNION ALL (SELECT id FROM issues WHERE version = 2 AND status > 3 AND comment_count = 2
            ORDER BY id LIMIT 1)
UNION ALL (SELECT id FROM issues WHERE version = 2 AND status < 3 ORDER BY id LIMIT 1)
UNION ALL (SELECT id FROM issues WHERE version = 3 ORDER BY id LIMIT 3)
"""
