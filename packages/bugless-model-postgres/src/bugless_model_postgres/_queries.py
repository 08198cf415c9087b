"""The backend's fixed SQL statements about issues, apart from the control flow.

Here: issue rows (reads, creates, changes, locks), their history entries, the
change feed, the parent/duplicate hierarchy checks and the schema version.
An import's statements are in :mod:`._import_queries`; statements on the
collections issues live in (components, hotlists and their items, saved
searches) are in :mod:`._collection_queries`; the search compiler
(:mod:`._search`) builds the only dynamic statement.

Statements run with ``search_path`` set to the deployment's schema, so table
names are unqualified. Values are always ``$n`` parameters.
"""

from __future__ import annotations

import functools
import itertools

from bugless_model_postgres._visibility import HOTLIST_VISIBLE

# ---- issues ----

ISSUE_COLUMNS = """
    i.id, i.title, i.status, i.priority, i.severity, i.type, i.component_id,
    i.reporter, i.assignee, i.verifier, i.cc, i.blocking_ids, i.blocked_by_ids,
    i.parent_id, i.duplicate_of_id, i.description, i.created_at, i.modified_at,
    i.closed_at, i.version, i.comment_count, i.custom_fields, i.external_id, i.star_count
"""

#: Whether another issue names issue ``i`` as its parent, or as the issue it
#: duplicates (``Issue.has_children``, ``has_duplicates``): one probe of a
#: partial index each (``<> 0`` lets the planner use ``issues_parent`` and
#: ``issues_duplicate_of``).
HAS_CHILDREN = "EXISTS (SELECT 1 FROM issues n WHERE n.parent_id = i.id AND n.parent_id <> 0)"
HAS_DUPLICATES = (
    "EXISTS (SELECT 1 FROM issues n WHERE n.duplicate_of_id = i.id AND n.duplicate_of_id <> 0)"
)

#: Name and type of the custom fields issue ``i`` holds values of, by id
#: (``{"12": ["Found In", 3]}``; a deleted field is absent); NULL when it
#: holds none. Read with the issue, so a reply with custom values needs no
#: look-up of their names (a statement of its own before) and no cache
#: that another replica's rename would leave stale.
CUSTOM_FIELD_NAMES = """CASE WHEN i.custom_fields = '{}'::jsonb THEN NULL ELSE coalesce((
    SELECT jsonb_object_agg(f.id::text, jsonb_build_array(f.name, f.type))
      FROM custom_fields f
     WHERE f.id = ANY (ARRAY(SELECT k::bigint FROM jsonb_object_keys(i.custom_fields) AS k))
), '{}'::jsonb) END"""

#: The hotlists of issue ``i`` the caller may see, a template: ``{admin}`` is
#: the caller's admin flag, ``{user}`` their user id.
VISIBLE_HOTLISTS = (
    """ARRAY(SELECT hi.hotlist_id
                   FROM hotlist_items hi JOIN hotlists h ON h.id = hi.hotlist_id
                  WHERE hi.issue_id = i.id
                    AND """
    + HOTLIST_VISIBLE.replace("{h}", "h")
    + """
                  ORDER BY hi.hotlist_id)"""
)
#: Whether the caller (``{user}``) starred issue ``i``.
STARRED = "EXISTS (SELECT 1 FROM issue_stars st WHERE st.issue_id = i.id AND st.user_id = {user})"
#: Whether the caller (``{user}``) muted issue ``i`` (a probe of issue_mutes'
#: primary key, as :data:`STARRED` is of issue_stars').
MUTED = "EXISTS (SELECT 1 FROM issue_mutes mu WHERE mu.user_id = {user} AND mu.issue_id = i.id)"

#: Issues by id (``{where}``) with their component's ACL, and the select list
#: filled in: every field here, a read mask's in
#: :func:`bugless_model_postgres._issue_projection.fetch_statement`.
FETCH_TEMPLATE = """
SELECT {columns},
       c.effective_acl, c.path AS component_path, {names} AS custom_field_names,
       {hotlists} AS visible_hotlist_ids,
       {starred} AS starred, {muted} AS muted,
       {has_children} AS has_children, {has_duplicates} AS has_duplicates
  FROM issues i JOIN components c ON c.id = i.component_id
 WHERE {where}
"""

#: Most ids :func:`fetch_issues_in_slots` takes; more go to :data:`FETCH_ISSUES`.
ID_SLOTS = (8, 16, 32, 64, 128)


def ids_condition(slots: int) -> str:
    """Which issues a read by id reads: ``$1`` (``slots`` 1), ``slots`` parameters, or an array (0).

    With ``= ANY ($1::bigint[])`` PostgreSQL 15 re-plans the statement on every
    call (~1 ms, 2-3x its execution for a handful of ids): a custom plan knows
    the array's length, the generic plan assumes 10 elements, so the custom
    one always looks cheaper and the generic plan is never chosen
    (``pg_prepared_statements``: 0 generic of 200). A list of ``slots``
    parameters (one of :data:`ID_SLOTS`) has the same length in both plans,
    so after five calls the connection keeps the generic plan. The ids are
    ``$1`` and ``$4`` onwards (``$2`` admin, ``$3`` user id as in
    :data:`FETCH_ISSUES`); unused slots repeat an id, which ``= ANY`` reads
    once. One id is ``= $1``, which settles on a generic plan after five calls
    (``= ANY`` of one element is re-planned every time, as above).
    """
    if slots == 1:
        return "i.id = $1::bigint"
    if slots == 0:
        return "i.id = ANY ($1::bigint[])"
    ids = ", ".join(["$1::bigint", *(f"${n}" for n in range(4, slots + 3))])
    return f"i.id = ANY (ARRAY[{ids}]::bigint[])"


def _fetch(where: str, columns: str = ISSUE_COLUMNS) -> str:
    """:data:`FETCH_TEMPLATE` reading every field ($2 admin, $3 user id)."""
    return FETCH_TEMPLATE.format(
        columns=columns,
        names=CUSTOM_FIELD_NAMES,
        hotlists=VISIBLE_HOTLISTS.format(admin="$2", user="$3"),
        starred=STARRED.format(user="$3"),
        muted=MUTED.format(user="$3"),
        has_children=HAS_CHILDREN,
        has_duplicates=HAS_DUPLICATES,
        where=where,
    )


#: Issues by id ($1 an array) with their component's ACL and the hotlists the
#: caller may see ($2 admin, $3 user id), and whether other issues name each
#: as their parent or canonical issue.
FETCH_ISSUES = _fetch(ids_condition(0))


def fetch_issue_with(columns: str) -> str:
    """:data:`FETCH_ISSUE` (one id, ``$1``) that also reads ``columns`` (``", expr AS name"``)."""
    return _fetch(ids_condition(1), ISSUE_COLUMNS + columns)


@functools.cache
def fetch_issues_in_slots(slots: int) -> str:
    """:data:`FETCH_ISSUES` with ``slots`` ids as parameters (see :func:`ids_condition`)."""
    return _fetch(ids_condition(slots))


#: :data:`FETCH_ISSUES` for one id ($1 a bigint; see :func:`ids_condition`).
FETCH_ISSUE = _fetch(ids_condition(1))

#: :data:`FETCH_ISSUE` that also takes the issue's row lock (READ COMMITTED only).
#: One statement reads one snapshot, taken before it waits for the lock: if a
#: writer changed the row meanwhile, PostgreSQL re-checks only the locked row
#: at its new version, so the subqueries (hotlists, star) and the component
#: joined are as of before that writer (a move to another component even
#: drops the row). ``locked_as_read`` says whether the locked row is the one
#: the snapshot saw (same ``xmin``); when not, or with no row, the caller
#: reads again with :data:`FETCH_ISSUE`, holding the lock by then.
#: ``hotlist_ids``: every hotlist holding the issue, private ones too (what
#: an admin sees: the change listeners' copy of the issue is built from it
#: instead of a read after the commit).
LOCK_AND_FETCH_ISSUE = (
    _fetch(
        ids_condition(1),
        ISSUE_COLUMNS
        + ", i.xmin = (SELECT s.xmin FROM issues s WHERE s.id = i.id) AS locked_as_read"
        + ", ARRAY(SELECT a.hotlist_id FROM hotlist_items a WHERE a.issue_id = i.id)"
        + " AS hotlist_ids",
    )
    + " FOR UPDATE OF i\n"
)

#: The committed version of issue $1 and the ACL deciding who may change it
#: (read without locks, before a change queues for its row lock).
ISSUE_VERSION = """
SELECT i.version, c.effective_acl
  FROM issues i JOIN components c ON c.id = i.component_id
 WHERE i.id = $1
"""

#: Row locks on every issue a write touches, in id order (no deadlocks
#: between writers that touch overlapping sets).
LOCK_ISSUES = "SELECT id FROM issues WHERE id = ANY ($1::bigint[]) ORDER BY id FOR UPDATE"

FIND_IDEMPOTENT = "SELECT id FROM issues WHERE reporter = $1 AND idempotency_key = $2"

#: A new issue with its relation lists, written once (one row version: the
#: table has many indexes and no HOT updates). ``RETURNING id``: no row when
#: a concurrent create with the same idempotency key committed first. The id
#: is the column default (identity sequence) here, given as ``$21`` in
#: :data:`INSERT_ISSUE_WITH_ID` (backends that mint their own ids); ``$20``
#: is the custom field values (jsonb text).
_INSERT_ISSUE = """
INSERT INTO issues ({id}title, status, priority, severity, type, component_id, reporter,
                    assignee, verifier, cc, blocking_ids, blocked_by_ids, parent_id,
                    duplicate_of_id, description, created_at, modified_at, closed_at, version,
                    comment_count, idempotency_key, comments_tsv, text_tsv, custom_fields)
VALUES ({id_value}$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16,
        $17, 1, $18, $19,
        to_tsvector('english', $15), to_tsvector('english', $1) || to_tsvector('english', $15),
        $20::jsonb)
ON CONFLICT (reporter, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id
"""
INSERT_ISSUE = _INSERT_ISSUE.format(id="", id_value="")
INSERT_ISSUE_WITH_ID = _INSERT_ISSUE.format(id="id, ", id_value="$21, ")


def feed_after_entry(*, committed_at: str, author: str, issue_ids: str, versions: str) -> str:
    """The ``head`` and ``appended`` CTEs of a write whose entries CTE is ``entry``.

    ``head`` is updated only once the entry is written (its condition reads
    ``entry``), so a statement that writes nothing takes no position and
    holds no lock on the feed's head; the arguments are SQL expressions for
    the feed row's columns. Starts with ``, head AS (``; ends after
    ``appended``'s closing parenthesis.
    """
    return f""", head AS (
    UPDATE change_feed_state SET position = position + 1
     WHERE name = 'head' AND EXISTS (SELECT 1 FROM entry)
    RETURNING position
), appended AS (
    INSERT INTO change_feed (position, committed_at, author, issue_ids, versions, component_ids)
    SELECT position, {committed_at}, {author}, {issue_ids}, {versions}, '{{}}'::bigint[]
      FROM head
    RETURNING position
)"""


#: The common create (no relations, no hotlists) in one statement: the issue
#: (:data:`INSERT_ISSUE`'s ``$1``-``$20``), its entry 1 (``$21`` the changes,
#: jsonb text), and the transaction's change-feed row with its NOTIFY on
#: channel ``$22`` (:data:`FEED_APPEND_AND_NOTIFY`). The feed row is the last
#: write the statement orders: ``head`` is updated only once the issue and its
#: entry are written (its condition reads them), and the row lock is held to
#: commit as the feed's ordering needs (migration 0005). No row: a concurrent
#: create with the same idempotency key committed first (nothing written).
#: :func:`create_issue_in_one` adds the mentions and custom value rows at
#: ``@PARTS@``.
_CREATE_ISSUE_IN_ONE = (
    """
WITH created AS (
"""
    + INSERT_ISSUE.strip()
    + """
), entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                               caused_by_issue_id)
    SELECT id, 1, $7, $16, $15, $21::jsonb, 0 FROM created
    RETURNING issue_id
)"""
    + feed_after_entry(
        committed_at="$16",
        author="$7",
        issue_ids="ARRAY[(SELECT id FROM created)]::bigint[]",
        versions="ARRAY[1]::bigint[]",
    )
    + """@PARTS@
SELECT created.id, appended.position, pg_notify($22, appended.position::text)
  FROM created CROSS JOIN appended
"""
)

#: The new issue's mentions: usernames ``${0}`` (see :func:`create_issue_in_one`).
_CREATED_MENTIONS = """, mentioned AS (
    INSERT INTO issue_mentions (issue_id, username)
    SELECT created.id, m.username FROM created, unnest(${0}::text[]) AS m(username)
    ON CONFLICT DO NOTHING
)"""

#: The new issue's custom value search rows (migration 0010): field ids
#: ``${0}``, values ``${1}``, numbers ``${2}``, folded values ``${3}``
#: (migration 0021); the issue's component ``$6``
#: and status ``$2``, as :data:`_custom_values.INSERT_ROWS` writes them.
_CREATED_VALUES = """, valued AS (
    INSERT INTO issue_custom_values
           (issue_id, field_id, value, number, component_id, status, folded)
    SELECT created.id, v.field_id, v.value, v.number, $6, $2, v.folded
      FROM created, unnest(${0}::bigint[], ${1}::text[], ${2}::bigint[], ${3}::text[])
           AS v(field_id, value, number, folded)
)"""


@functools.cache
def create_issue_in_one(*, mentions: bool, values: bool) -> str:
    """:data:`CREATE_ISSUE_IN_ONE` with the create's other rows, so it stays one statement.

    One statement is atomic without BEGIN/COMMIT (``run_write``'s
    ``one_statement``), so a create with @mentions or custom field values
    writes them here rather than in statements of their own. A part is left
    out when the create has none: an empty part still opens its table and
    indexes (as ``_batch_create.insert_statement`` found). Parameters after
    ``$22``: the mentioned usernames (1), then the value rows (4).
    """
    numbers = itertools.count(23)
    parts = ""
    if mentions:
        parts += _CREATED_MENTIONS.format(next(numbers))
    if values:
        parts += _CREATED_VALUES.format(*itertools.islice(numbers, 4))
    return _CREATE_ISSUE_IN_ONE.replace("@PARTS@", parts)


CREATE_ISSUE_IN_ONE = create_issue_in_one(mentions=False, values=False)

#: Apply a change to issue $1 and return its columns as :data:`FETCH_ISSUE`
#: reads them (:data:`ISSUE_COLUMNS`, same order): the reply to the change is
#: built from this row, with no read after the write.
UPDATE_ISSUE = f"""
UPDATE issues AS i
   SET title = $2, status = $3, priority = $4, severity = $5, type = $6, component_id = $7,
       assignee = $8, verifier = $9, cc = $10, blocking_ids = $11, blocked_by_ids = $12,
       parent_id = $13, duplicate_of_id = $14, closed_at = $15, modified_at = $16,
       version = version + 1, comment_count = comment_count + $17,
       comments_tsv = comments_tsv || to_tsvector('english', $18),
       text_tsv = to_tsvector('english', $2) || comments_tsv || to_tsvector('english', $18),
       custom_fields = $19::jsonb
 WHERE i.id = $1
RETURNING {ISSUE_COLUMNS}"""

#: An entry that changes only relation lists or membership (other sides,
#: hotlist calls): bump the version, keep every scalar.
UPDATE_ISSUE_LISTS = """
UPDATE issues
   SET blocking_ids = $2, blocked_by_ids = $3, modified_at = $4, version = version + 1
 WHERE id = $1
RETURNING version
"""

INSERT_ENTRY = """
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           caused_by_issue_id)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
"""

#: :data:`INSERT_ENTRY` returning the whole entry as :data:`FETCH_ENTRY` reads it.
INSERT_ENTRY_RETURNING = INSERT_ENTRY + "RETURNING *\n"

#: :data:`INSERT_ENTRY_RETURNING` for an entry that has no cause and may
#: delete an attachment ($7, 0: none), record a redaction (target $8,
#: redacted entry $9, redacted attachment $10; 0: none) or edit the comment
#: of entry $11 (0: none): the entry part of :data:`ENTRY_AND_FEED`, where
#: the change feed is appended by a statement of its own.
INSERT_LAST_ENTRY = """
INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                           deleted_attachment_id, redaction_target, redacted_version,
                           redacted_attachment_id, edits_version)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)
RETURNING *
"""

FETCH_ENTRY = "SELECT * FROM issue_history WHERE issue_id = $1 AND version = $2"
#: The entries of the (issue $1[n], version $2[n]) pairs, each once: a Watch
#: stream's batch of feed rows reads its entries in this one statement.
FETCH_ENTRIES = """
SELECT h.* FROM unnest($1::bigint[], $2::bigint[]) AS p(issue_id, version)
  JOIN issue_history h ON h.issue_id = p.issue_id AND h.version = p.version
"""


def current_entries(issues: str) -> str:
    """The latest row of every history entry of the issues ``issues`` selects.

    ``issues`` is a condition on ``h.issue_id`` (``h.issue_id = $1``, or
    ``= ANY (…)`` for several). Each row: ``issue_id``, ``original`` the
    entry, ``version`` its row (the entry or its latest edit), ``body`` its
    text (redacted ones empty). The current texts an issue's mentions
    (``_mentions``) and, after an edit or a redaction, its comment vector
    (``_edits``) are made from.
    """
    original = "coalesce(nullif(h.edits_version, 0), h.version)"
    return f"""
SELECT DISTINCT ON (h.issue_id, {original})
       h.issue_id, {original} AS original, h.version, h.comment AS body
  FROM issue_history h
 WHERE {issues}
 ORDER BY h.issue_id, {original}, h.version DESC"""


#: :func:`current_entries` of issue $1.
CURRENT_ENTRIES = current_entries("h.issue_id = $1")

#: A write's one entry and its transaction's change-feed row with the NOTIFY,
#: in one statement, the transaction's last (as :data:`FEED_APPEND_AND_NOTIFY`
#: must be): the entry as :data:`INSERT_LAST_ENTRY` writes it (``$1``-``$11``);
#: channel ``$12``. ``head`` is updated only once the entry is written (its
#: condition reads it), as in :data:`CREATE_ISSUE_IN_ONE`. Returns the
#: entry's columns and ``feed_position``.
ENTRY_AND_FEED = (
    """
WITH entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                               deleted_attachment_id, redaction_target, redacted_version,
                               redacted_attachment_id, edits_version)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)
    RETURNING *
)"""
    + feed_after_entry(
        committed_at="$4", author="$3", issue_ids="ARRAY[$1::bigint]", versions="ARRAY[$2::bigint]"
    )
    + """
SELECT entry.*, appended.position AS feed_position, pg_notify($12, appended.position::text)
  FROM entry CROSS JOIN appended
"""
)

#: Attachment $1 deleted by entry $2 of its issue.
MARK_ATTACHMENT_DELETED = "UPDATE attachments SET deleted_in_version = $2 WHERE id = $1"

#: :data:`ENTRY_AND_FEED` for a deletion's entry, which also marks attachment
#: ``$7`` deleted (:data:`MARK_ATTACHMENT_DELETED`) before the entry is written.
DELETION_AND_FEED = ENTRY_AND_FEED.replace(
    "WITH entry AS (",
    """WITH marked AS (
    UPDATE attachments SET deleted_in_version = $2 WHERE id = $7 RETURNING id
), entry AS (""",
    1,
).replace(
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11)",
    "SELECT $1, $2, $3, $4, $5, $6::jsonb, marked.id, $8, $9, $10, $11 FROM marked",
    1,
)

LIST_HISTORY = """
SELECT * FROM issue_history WHERE issue_id = $1 AND version > $2 ORDER BY version LIMIT $3
"""

# ---- the change feed ----

#: Append the transaction's feed row, numbered from ``head`` (see migration
#: 0005: the row lock on ``head`` is held to commit, so positions follow
#: commit order with no gap). Run last in a write transaction.
_FEED_HEAD_AND_ROW = """
WITH head AS (
    UPDATE change_feed_state SET position = position + 1 WHERE name = 'head'
    RETURNING position
), appended AS (
    INSERT INTO change_feed (position, committed_at, author, issue_ids, versions, component_ids)
    SELECT position, $1, $2, $3::bigint[], $4::bigint[], $5::bigint[] FROM head
    RETURNING position
)
"""
FEED_APPEND = _FEED_HEAD_AND_ROW + "SELECT position FROM appended"

#: :data:`FEED_APPEND` that also NOTIFYs the position on channel ``$6``
#: (delivered by the database at commit only): a wake-up for readers, which
#: then read the feed table; losing one costs a poll interval, nothing more.
FEED_APPEND_AND_NOTIFY = (
    _FEED_HEAD_AND_ROW + "SELECT position, pg_notify($6, position::text) FROM appended"
)

#: ``head`` and ``pruned`` positions.
FEED_STATE = "SELECT name, position FROM change_feed_state"
FEED_HEAD = "SELECT position FROM change_feed_state WHERE name = 'head'"

#: Changes after position $1, oldest first, at most $2.
READ_FEED = """
SELECT * FROM change_feed WHERE position > $1 ORDER BY position LIMIT $2
"""

#: Remove the changes up to the newest one committed before $1 (a prefix of
#: the feed, whatever the writers' clocks did) and raise ``pruned`` to it.
PRUNE_FEED = """
WITH cut AS (SELECT max(position) AS upto FROM change_feed WHERE committed_at < $1),
gone AS (DELETE FROM change_feed WHERE position <= (SELECT upto FROM cut) RETURNING position)
UPDATE change_feed_state SET position = (SELECT upto FROM cut)
 WHERE name = 'pruned' AND (SELECT upto FROM cut) > position
"""

#: Ancestors of $1 along parent_id (or duplicate_of_id): is $2 among them?
PARENT_CHAIN_REACHES = """
WITH RECURSIVE up(id, depth) AS (
    SELECT $1::bigint, 0
    UNION
    SELECT i.parent_id, up.depth + 1 FROM issues i JOIN up ON i.id = up.id
     WHERE i.parent_id <> 0 AND up.depth < 100000
)
SELECT EXISTS (SELECT 1 FROM up WHERE id = $2)
"""
DUPLICATE_CHAIN_REACHES = """
WITH RECURSIVE up(id, depth) AS (
    SELECT $1::bigint, 0
    UNION
    SELECT i.duplicate_of_id, up.depth + 1 FROM issues i JOIN up ON i.id = up.id
     WHERE i.duplicate_of_id <> 0 AND up.depth < 100000
)
SELECT EXISTS (SELECT 1 FROM up WHERE id = $2)
"""
#: Serialises writes that may close a parent/duplicate cycle, so two
#: concurrent changes cannot each pass the check and together form a loop.
HIERARCHY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('bugless-issue-hierarchy', 0))"

# ---- server info ----

SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
