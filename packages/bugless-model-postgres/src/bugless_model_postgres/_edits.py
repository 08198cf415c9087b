"""Comment edits and redaction: the two writes that touch what was written.

An edit keeps the history append-only: it is a new entry (``edits_version``
naming the entry it edits) whose comment is the new text; the original and
earlier edits stay. A redaction is the one exception to append-only, on
purpose: it blanks the comment of an entry and of every edit of it (marking
them ``comment_redacted``), blanks the issue's description when that is what
goes, rebuilds the full-text vectors from what is left, and appends an entry
naming what was removed, by whom and when, never the content.

Attachments are stored elsewhere (the blob store); their redaction goes
through an :data:`AttachmentRedactor` the deployment installs on the
backend, called inside the redaction's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import asyncpg

from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    IssueVersionConflict,
    NotFound,
    PermissionDenied,
)
from bugless_core.mentions import mentioned_usernames
from bugless_model_postgres import _custom_values, _entries, _issues, _mentions
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import (
    ROLE_NAMES,
    WriteContext,
    issue_not_found,
    seen_component_path,
)
from bugless_model_postgres._convert import (
    caller_role,
    entry_from_row,
    one_row,
)
from bugless_proto import v1

#: Removes the content of attachment ``attachment_id`` of issue ``issue_id``
#: inside the redaction's transaction (``ctx.conn``), so that both commit or
#: neither does, and returns the content's hash (the caller removes it from
#: the blob store after the commit, if nothing else refers to it) and the
#: file's description it blanked with the content (``""``: none); raises
#: NotFound when the issue has no such attachment. What the attachments
#: module (bugless issue 17) installs as ``PostgresBackend.attachment_redactor``.
AttachmentRedactor = Callable[[WriteContext, int, int], Awaitable[tuple[str, str]]]

#: :data:`q.CURRENT_ENTRIES` with each row's stored vector (``tsv``: NULL
#: while not stored).
_CURRENT = f"""
    SELECT cur.*, v.tsv
      FROM ({q.CURRENT_ENTRIES}) cur
           LEFT JOIN issue_entry_vectors v ON v.issue_id = $1 AND v.version = cur.version"""
#: The descriptions of the files each entry of issue $1 attached
#: (``described``, by ``entry_version``): text a person wrote (an imported
#: file's, migration 0031), searched and read for mentions as the comments
#: are, though it is the file's and no comment (an edit or a redaction of
#: the entry's comment leaves it; a redaction of the file, or of the
#: description alone, blanks it). Few issues have any: parsed, never stored
#: in ``issue_entry_vectors``, which holds comments' vectors only. After
#: them, the entry's files an import did not copy
#: (:func:`._mentions.not_imported_texts`, which the mentions read too), in
#: the order ``_imports._all_text`` builds the vectors in.
_DESCRIBED = rf"""
SELECT d.entry_version, string_agg(d.body, E'\n' ORDER BY d.kind, d.ord) AS described
  FROM (SELECT a.entry_version, 0 AS kind, a.id AS ord, a.description AS body
          FROM attachments a
         WHERE a.issue_id = $1 AND a.description <> ''
        UNION ALL
        SELECT n.version, 1, n.ord, n.body
          FROM ({_mentions.not_imported_texts("h.issue_id = $1")}) n) d
 GROUP BY d.entry_version"""
#: The other entries' current texts in entry order, then what
#: :data:`_DESCRIBED` read of each entry (its files' descriptions, the texts
#: of the files an import did not copy: the same texts the vectors take, of
#: entry $6 too, as they are no comment) (``t.others``), when $7 (else
#: none): with the title and entry $6's new text, what the issue's mentions
#: come from, read only when a name its old text had may go.
_OTHERS = """coalesce(array_agg(cur.body ORDER BY cur.original)
                    FILTER (WHERE $7::boolean AND cur.original <> $6::bigint), '{}')
           || coalesce(array_agg(d.described ORDER BY cur.original)
                       FILTER (WHERE $7::boolean AND d.described IS NOT NULL), '{}')
           AS others"""
#: Issue $1's new version after an edit of entry $6 to the text $5 (its
#: entry written after, with the feed row) or a redaction of it ($5 empty,
#: its comments blanked already): the description set to $3 when $4 (entry
#: 1), the comment vectors made again from the current text of every
#: comment, entry $6's taken as $5 (none: $6 0), each followed by the
#: descriptions of the files its entry attached; its columns returned as
#: :data:`q.FETCH_ISSUE` reads them (the call's reply), with the other
#: entries' current texts when $7 (``other_texts``, read by the same pass
#: over the history).
#:
#: The vector is the entries' vectors (``issue_entry_vectors``, migration
#: 0012) concatenated in entry order (``tsvector_concat_agg``, 0013): the
#: vector appending each comment's, as the writers do, builds. The current
#: entries with a comment whose vector is not stored yet (written since the
#: issue's last edit or redaction, or before 0012) are parsed once and
#: stored, so an edit parses its new text and the comments written since,
#: not every comment (an issue of 200 comments: ~13 ms of PostgreSQL per
#: edit to parse them all, ~2.5 ms to concatenate stored ones). Entry $6's
#: stored vector goes (its text is $5 now): the table holds vectors of
#: current texts only.
BUMP_AFTER_EDIT = f"""
WITH cur AS ({_CURRENT}
), stored AS (
    INSERT INTO issue_entry_vectors (issue_id, version, tsv)
    SELECT $1, cur.version, to_tsvector('english', cur.body)
      FROM cur
     WHERE cur.tsv IS NULL AND cur.body <> '' AND cur.original <> $6::bigint
    ON CONFLICT DO NOTHING
    RETURNING version, tsv
), replaced AS (
    DELETE FROM issue_entry_vectors v
     USING cur
     WHERE v.issue_id = $1 AND v.version = cur.version AND cur.original = $6::bigint
), t AS (
    -- Each entry's comment, then the descriptions of the files it attached;
    -- an entry with neither adds nothing (the empty vector).
    SELECT tsvector_concat_agg(
               CASE WHEN cur.original = $6::bigint THEN to_tsvector('english', $5::text)
                    WHEN cur.body = '' THEN ''::tsvector
                    ELSE coalesce(cur.tsv, s.tsv, to_tsvector('english', cur.body)) END
               || coalesce(to_tsvector('english', d.described), ''::tsvector)
               ORDER BY cur.original) AS tsv,
           {_OTHERS}
      FROM cur LEFT JOIN stored s ON s.version = cur.version
           LEFT JOIN ({_DESCRIBED}) d ON d.entry_version = cur.original
)
UPDATE issues AS i
   SET version = i.version + 1, modified_at = $2,
       description = CASE WHEN $4 THEN $3 ELSE i.description END,
       comments_tsv = t.tsv, text_tsv = to_tsvector('english', i.title) || t.tsv
  FROM t
 WHERE i.id = $1
RETURNING {q.ISSUE_COLUMNS}, t.others AS other_texts"""
#: :data:`BUMP_AFTER_EDIT` parsing every current text again, for a database
#: without the aggregate (``Dialect.stored_comment_vectors`` false:
#: CockroachDB), where ``issue_entry_vectors`` stays empty.
BUMP_AFTER_EDIT_FROM_TEXTS = f"""
UPDATE issues AS i
   SET version = i.version + 1, modified_at = $2,
       description = CASE WHEN $4 THEN $3 ELSE i.description END,
       comments_tsv = t.tsv, text_tsv = to_tsvector('english', i.title) || t.tsv
  FROM (SELECT to_tsvector('english',
                           coalesce(string_agg(concat_ws(' ',
                                                         CASE WHEN cur.original = $6::bigint
                                                              THEN $5::text
                                                              ELSE cur.body END,
                                                         d.described),
                                               ' ' ORDER BY cur.original), '')) AS tsv,
               {_OTHERS}
          FROM ({q.CURRENT_ENTRIES}) cur
               LEFT JOIN ({_DESCRIBED}) d ON d.entry_version = cur.original) t
 WHERE i.id = $1
RETURNING {q.ISSUE_COLUMNS}, t.others AS other_texts"""
#: Entry $2 of issue $1, with the current text of its comment (its latest
#: edit's, or its own) as ``current_comment``, and the issue's stored
#: mentions (``mentioned``), which an edit of it keeps up to date with the
#: other current texts :data:`BUMP_AFTER_EDIT` returns.
ENTRY_TO_EDIT = f"""
SELECT h.*, (SELECT e.comment FROM issue_history e
              WHERE e.issue_id = $1 AND (e.version = $2 OR e.edits_version = $2)
              ORDER BY e.version DESC LIMIT 1) AS current_comment,
       {_mentions.STORED} AS mentioned
  FROM issue_history h
 WHERE h.issue_id = $1 AND h.version = $2
"""
#: The comment a redaction of entry $2 of issue $1 removes: the entry, the
#: one it edits if it is an edit (``original``), how many rows that comment
#: and its edits are (``entry_rows``: :data:`REDACT_COMMENTS` blanks as many),
#: whether one of them still has text (``has_text``), its current text
#: (``current_comment``) and the issue's stored mentions, as
#: :data:`ENTRY_TO_EDIT`.
REDACTION_TARGET = f"""
SELECT h.*, r.original, t.entry_rows, t.has_text, t.current_comment,
       {_mentions.STORED} AS mentioned
  FROM issue_history h
       CROSS JOIN LATERAL (SELECT coalesce(nullif(h.edits_version, 0), h.version) AS original) r
       CROSS JOIN LATERAL (
           SELECT count(*) AS entry_rows, coalesce(bool_or(e.comment <> ''), false) AS has_text,
                  (array_agg(e.comment ORDER BY e.version DESC))[1] AS current_comment
             FROM issue_history e
            WHERE e.issue_id = $1 AND (e.version = r.original OR e.edits_version = r.original)
       ) t
 WHERE h.issue_id = $1 AND h.version = $2
"""
#: A new version of issue $1, its columns returned as :data:`q.FETCH_ISSUE` reads
#: them (the call's reply is built from them: no read after the write).
BUMP_VERSION = f"""
UPDATE issues AS i SET version = version + 1, modified_at = $2 WHERE i.id = $1
RETURNING {q.ISSUE_COLUMNS}"""
#: The redactions of a file: its content (with its description), or its
#: description alone.
_OF_A_FILE = frozenset({v1.RedactionTarget.ATTACHMENT, v1.RedactionTarget.ATTACHMENT_DESCRIPTION})
#: Blank the description of attachment $1 of issue $2, its content kept,
#: unless it has none (or its content was redacted, which blanked it); the
#: description it had (``old_description``).
BLANK_FILE_DESCRIPTION = """
WITH old AS (
    SELECT description FROM attachments
     WHERE id = $1 AND issue_id = $2 AND NOT redacted AND description <> ''
)
UPDATE attachments SET description = ''
 WHERE id = $1 AND issue_id = $2 AND NOT redacted AND description <> ''
RETURNING (SELECT description FROM old) AS old_description
"""
#: Attachment $1 if it is issue $2's, whether its content is redacted.
FILE_OF_ISSUE = "SELECT redacted FROM attachments WHERE id = $1 AND issue_id = $2"
#: Blank the comment of entry $2 and of every edit of it, and forget their
#: stored vectors (a redacted text leaves none behind); returns how many
#: rows were blanked (``blanked``: all of them, those already blank too) and
#: how many stored vectors went (``forgotten``).
REDACT_COMMENTS = """
WITH gone AS (
    UPDATE issue_history SET comment = '', comment_redacted = true
     WHERE issue_id = $1 AND (version = $2 OR edits_version = $2)
    RETURNING version
), forgotten AS (
    DELETE FROM issue_entry_vectors
     WHERE issue_id = $1 AND version IN (SELECT version FROM gone)
    RETURNING version
)
SELECT (SELECT count(*) FROM gone) AS blanked, (SELECT count(*) FROM forgotten) AS forgotten
"""


async def _locked_issue(
    ctx: WriteContext, issue_id: int, expected_version: int
) -> tuple[dict[str, object], v1.Role]:
    """The issue, locked and visible, at the expected version; with the caller's role."""
    await _issues.reject_stale_before_locking(ctx, issue_id, expected_version)
    row = (await _issues.lock_and_load(ctx, {issue_id})).get(issue_id)
    role = caller_role(ctx.caller, row["effective_acl"]) if row is not None else None
    if row is None or role is None:
        raise issue_not_found(issue_id)
    if row["version"] != expected_version:
        raise IssueVersionConflict(issue_id, expected_version, row["version"])
    return dict(row.items()), role


async def _entry(
    ctx: WriteContext, issue_id: int, version: int, statement: str = q.FETCH_ENTRY
) -> dict[str, object]:
    row = await ctx.conn.fetchrow(statement, issue_id, version)
    if row is None:
        raise NotFound(
            f"entry_version: issue {issue_id} has no history entry {version}",
            metadata={"field": "entry_version", "issue_id": str(issue_id)},
        )
    return dict(row.items())


async def edit_comment(ctx: WriteContext, request: v1.EditCommentRequest) -> _issues.Changed:
    """Append an entry replacing a comment's text; return the issue and the entry written."""
    issue_id, number = request.issue_id, request.entry_version
    loaded, _ = await _locked_issue(ctx, issue_id, request.expected_version)
    entry = await _entry(ctx, issue_id, number, ENTRY_TO_EDIT)
    if entry["edits_version"]:
        raise InvalidArgument(
            f"entry_version: entry {number} is an edit of entry {entry['edits_version']}; "
            f"edit entry {entry['edits_version']} instead",
            metadata={"field": "entry_version"},
        )
    if entry["redaction_target"]:
        raise InvalidArgument(
            f"entry_version: entry {number} records a redaction and has no comment",
            metadata={"field": "entry_version"},
        )
    if entry["author"] != ctx.caller.user_id:
        raise PermissionDenied(
            f"only the author of entry {number} of issue {issue_id} may edit its comment",
            metadata={"issue_id": str(issue_id), "entry_version": str(number)},
        )
    if entry["comment_redacted"]:
        raise FailedPrecondition(
            f"entry_version: the comment of entry {number} was redacted and cannot be edited",
            metadata={"field": "entry_version"},
        )
    if not entry["comment"] and number != 1:
        raise FailedPrecondition(
            f"entry_version: entry {number} has no comment to edit; add a comment instead",
            metadata={"field": "entry_version"},
        )
    if entry["current_comment"] == request.comment:
        raise InvalidArgument("comment: the text is unchanged", metadata={"field": "comment"})
    # The issue is locked at this version: its one UPDATE rebuilds the vectors
    # with the entry's new text, and the edit's entry (the next version) is
    # written last, with the change feed's row where it can be.
    version = int(loaded["version"]) + 1  # type: ignore[call-overload]
    title, new = str(loaded["title"]), request.comment
    need = names_may_go(str(entry["current_comment"]), title, new)
    written = one_row(
        await ctx.conn.fetchrow(_bump(ctx), issue_id, ctx.now, new, number == 1, new, number, need)
    )
    if written["version"] != version:  # the lock says otherwise: a bug, said loudly
        msg = f"issue {issue_id} moved to version {written['version']} under its lock"
        raise RuntimeError(msg)
    await _keep_mentions(ctx, issue_id, entry, written if need else None, title, new)
    issue = await _changed_issue(ctx, loaded, written)  # before the feed's lock
    marked = await _entries.insert_last_entry(
        ctx, issue_id, version, request.comment, [], edits_version=number
    )
    return _issues.Changed(issue, entry_from_row(marked))


async def redact(
    ctx: WriteContext, request: v1.RedactRequest, redact_attachment: AttachmentRedactor | None
) -> tuple[_issues.Changed, str]:
    """Remove the target's content everywhere it is kept.

    Returns the issue and the entry, and the hash of the attachment content
    redacted (``""`` for a comment, the description or a file's description).
    """
    issue_id, target = request.issue_id, request.target
    row, role = await _locked_issue(ctx, issue_id, request.expected_version)
    if role < v1.Role.ADMIN:
        path = await seen_component_path(
            ctx.conn,
            ctx.caller,
            int(row["component_id"]),  # type: ignore[call-overload]
            str(row["component_path"]),
        )
        raise PermissionDenied(
            f"{ROLE_NAMES[v1.Role.ADMIN]} role on component {path} needed "
            f"to redact issue {issue_id}",
            metadata={"issue_id": str(issue_id)},
        )
    original, sha256, described = 0, "", ""
    of_a_file = target in _OF_A_FILE
    if of_a_file:
        # Its description goes (with its content, or alone): out of the
        # vectors and the mentions below.
        sha256, described = await _redact_of_file(ctx, request, redact_attachment)
    else:
        number = 1 if target is v1.RedactionTarget.DESCRIPTION else request.entry_version
        entry = await _entry(ctx, issue_id, number, REDACTION_TARGET)
        original = int(entry["original"])  # type: ignore[call-overload]
        if original == 1:
            target = v1.RedactionTarget.DESCRIPTION
        if not entry["has_text"]:
            raise FailedPrecondition(
                f"entry {original} of issue {issue_id} has no text left to redact",
                metadata={"issue_id": str(issue_id), "entry_version": str(original)},
            )
        blanked = await ctx.conn.fetchval(REDACT_COMMENTS, issue_id, original)
        if blanked != entry["entry_rows"]:  # read under the issue's lock: a bug, said loudly
            msg = (
                f"entry {original} of issue {issue_id} had {entry['entry_rows']} rows under the "
                f"issue's lock, and its redaction blanked {blanked}"
            )
            raise RuntimeError(msg)
    if of_a_file and not described:
        written = one_row(await ctx.conn.fetchrow(BUMP_VERSION, issue_id, ctx.now))
    elif of_a_file:  # the vectors without its description
        title = str(row["title"])
        need = names_may_go(str(described), title)
        written = one_row(
            await ctx.conn.fetchrow(_bump(ctx), issue_id, ctx.now, "", False, "", 0, need)
        )
        if need:
            mentioned = await ctx.conn.fetchval(f"SELECT {_mentions.STORED}", issue_id)
            await _keep_mentions(ctx, issue_id, {"mentioned": mentioned}, written, title)
    else:  # the description too when entry 1's text goes; the vectors without the text
        title = str(row["title"])
        need = names_may_go(str(entry["current_comment"]), title)
        written = one_row(
            await ctx.conn.fetchrow(
                _bump(ctx), issue_id, ctx.now, "", original == 1, "", original, need
            )
        )
        await _keep_mentions(ctx, issue_id, entry, written if need else None, title)
    version = int(written["version"])
    issue = await _changed_issue(ctx, row, written)  # before the feed's lock
    redaction = (int(target), original, request.attachment_id)
    marked = await _entries.insert_last_entry(ctx, issue_id, version, "", [], redaction=redaction)
    return _issues.Changed(issue, entry_from_row(marked)), sha256


async def _redact_of_file(
    ctx: WriteContext, request: v1.RedactRequest, redact_attachment: AttachmentRedactor | None
) -> tuple[str, str]:
    """Redact a file's content (with its description) or its description alone.

    Returns:
        The hash of the content redacted (``""``: the description alone) and
        the description that went (``""``: none).
    """
    issue_id, attachment_id = request.issue_id, request.attachment_id
    if request.target is v1.RedactionTarget.ATTACHMENT_DESCRIPTION:
        blanked = await ctx.conn.fetchval(BLANK_FILE_DESCRIPTION, attachment_id, issue_id)
        if blanked is not None:
            return "", str(blanked)
        file = await ctx.conn.fetchrow(FILE_OF_ISSUE, attachment_id, issue_id)
        if file is not None:
            why = "its content was redacted with it" if file["redacted"] else "it has none"
            raise FailedPrecondition(
                f"attachment {attachment_id} has no description to redact: {why}",
                metadata={"attachment_id": str(attachment_id)},
            )
    elif redact_attachment is not None:
        return await redact_attachment(ctx, issue_id, attachment_id)
    raise NotFound(
        f"attachment_id: issue {issue_id} has no attachment {attachment_id}",
        metadata={"field": "attachment_id"},
    )


def _bump(ctx: WriteContext) -> str:
    """The statement that bumps an edited or redacted issue on this database."""
    return BUMP_AFTER_EDIT if ctx.dialect.stored_comment_vectors else BUMP_AFTER_EDIT_FROM_TEXTS


def names_may_go(old: str, *kept: str) -> bool:
    """Whether a name the text ``old`` mentions is in none of the texts ``kept``.

    When ``old`` (an entry's current text, being edited or redacted)
    mentions only names the title or the new text (``kept``) mention too,
    no stored mention can go: the issue's mentions are the stored ones and
    the new text's, and the other entries' texts need not be read.
    """
    kept_names = set(mentioned_usernames(*kept))
    return any(n not in kept_names for n in mentioned_usernames(old))


async def _keep_mentions(
    ctx: WriteContext,
    issue_id: int,
    entry: dict[str, object],
    written: asyncpg.Record | None,
    title: str,
    *new: str,
) -> None:
    """The issue's mentions after ``entry``'s text became ``new`` (nothing: redacted).

    ``entry`` holds the issue's stored mentions, read with it
    (:data:`ENTRY_TO_EDIT`, :data:`REDACTION_TARGET`) under the issue's
    lock, and ``written`` the other entries' current texts
    (:data:`BUMP_AFTER_EDIT`) when a name of the entry's old text may go
    (:func:`names_may_go`; else ``None``, and none can: the stored names and
    the new text's are all). Either way the names are what
    :func:`_mentions.sync` would read after the write, without its read and
    with no write when they stay the same.
    """
    stored = cast("list[str]", entry["mentioned"])
    if written is None:
        names = [*stored, *(n for n in mentioned_usernames(*new) if n not in stored)]
    else:
        others = cast("list[str]", written["other_texts"])
        names = mentioned_usernames(title, *others, *new)
    await _mentions.set_names(ctx.conn, issue_id, stored, names)


async def _changed_issue(
    ctx: WriteContext, loaded: dict[str, object], written: asyncpg.Record
) -> v1.Issue:
    """The issue in the reply of an edit or a redaction, from its rows as written (no read-back)."""
    custom = _custom_values.load_values(written["custom_fields"])
    return await _issues.changed_issue(ctx, loaded, written, custom=custom)
