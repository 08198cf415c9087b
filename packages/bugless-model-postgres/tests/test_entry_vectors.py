"""An edit or a redaction makes its issue's comment vector from stored entry vectors.

``issue_entry_vectors`` (migrations 0012 and 0013) holds the text vector of
history entries' comments; an edit or a redaction stores the missing ones of
its issue's current entries and concatenates them in entry order, so the
issue's vectors are those appending every current text builds, and no
redacted text keeps a vector. Nothing is written when an entry is: an issue
no edit touched yet (and every issue written before 0012) has none.
"""

from __future__ import annotations

import pytest
from write_support import ADMIN, ALICE, fresh_component

from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

#: The latest row of every entry of issue $1: (entry, row version, text).
CURRENT_ROWS = """
SELECT DISTINCT ON (coalesce(nullif(edits_version, 0), version))
       coalesce(nullif(edits_version, 0), version) AS original, version, comment
  FROM issue_history WHERE issue_id = $1
 ORDER BY coalesce(nullif(edits_version, 0), version), version DESC
"""
VECTORS = "SELECT version, tsv FROM issue_entry_vectors WHERE issue_id = $1 ORDER BY version"
ISSUE_VECTORS = "SELECT comments_tsv, text_tsv FROM issues WHERE id = $1"
WRONG_VECTORS = """
SELECT count(*) FROM issue_entry_vectors v JOIN issue_history h USING (issue_id, version)
 WHERE v.tsv <> to_tsvector('english', h.comment)
"""


class Writer:
    """Alice's and an admin's writes on one issue, each at the version the last reply gave."""

    def __init__(self, backend: PostgresBackend, issue: v1.Issue) -> None:
        self.backend, self.issue = backend, issue

    def _took(self, reply: v1.ChangeIssueResponse) -> int:
        assert reply.issue is not None
        assert reply.entry is not None
        self.issue = reply.issue
        return reply.entry.version

    async def comment(self, text: str) -> int:
        return self._took(
            await self.backend.change_issue(
                v1.ChangeIssueRequest(
                    caller=ALICE,
                    issue_id=self.issue.id,
                    expected_version=self.issue.version,
                    comment=text,
                )
            )
        )

    async def edit(self, entry: int, text: str) -> int:
        return self._took(
            await self.backend.edit_comment(
                v1.EditCommentRequest(
                    caller=ALICE,
                    issue_id=self.issue.id,
                    expected_version=self.issue.version,
                    entry_version=entry,
                    comment=text,
                )
            )
        )

    async def redact(self, entry: int) -> int:
        return self._took(
            await self.backend.redact(
                v1.RedactRequest(
                    caller=ADMIN,
                    issue_id=self.issue.id,
                    expected_version=self.issue.version,
                    target=v1.RedactionTarget.COMMENT,
                    entry_version=entry,
                )
            )
        )


async def _writer(backend: PostgresBackend, description: str) -> Writer:
    component = await fresh_component(backend, "vectors")
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="the parser stalls", component_id=component.id),
            description=description,
        )
    )
    return Writer(backend, issue)


async def _appended_twin(backend: PostgresBackend, issue_id: int) -> Writer:
    """A new issue of the same title whose comments are ``issue_id``'s current texts, appended."""
    async with backend._pool.acquire() as conn:
        texts = [r["comment"] for r in await conn.fetch(CURRENT_ROWS, issue_id)]
    twin = await _writer(backend, texts[0])
    for text in texts[1:]:
        if text:  # a comment-less entry (a redacted one) adds an empty vector: nothing
            await twin.comment(text)
    return twin


async def _appended_twin_vectors(backend: PostgresBackend, issue_id: int) -> object:
    twin = await _appended_twin(backend, issue_id)
    async with backend._pool.acquire() as conn:
        return await conn.fetchrow(ISSUE_VECTORS, twin.issue.id)


async def test_an_edited_or_redacted_issues_vectors_are_those_appending_its_texts_builds(
    bugless_model_backend: PostgresBackend,
) -> None:
    """After each edit and redaction the vectors equal an unedited twin's, built by appends.

    The texts end and start with stop words (positions count them) and
    repeat words across entries; entry 1 (the description) and an entry
    edited twice are edited, one entry is redacted after its edit.
    """
    backend = bugless_model_backend
    issue = await _writer(backend, "The parser stalls on a long line of the log")
    first = await issue.comment("it hangs in the tokenizer, and the")
    second = await issue.comment("a stack trace: tokenizer.next at line 9")
    third = await issue.comment("the tokenizer loops for ever on tabs")
    edits = [
        (first, "it hangs in the lexer, not the parser"),
        (1, "The parser stalls on every line with a tab"),
        (first, "the lexer loops on tabs, and it"),
        (third, "fixed by the tab patch"),
    ]
    for entry, text in edits:
        await issue.edit(entry, text)
        await issue.comment(f"checked after editing {entry}")
        twin = await _appended_twin(backend, issue.issue.id)
        async with backend._pool.acquire() as conn:
            assert await conn.fetchrow(ISSUE_VECTORS, issue.issue.id) == await conn.fetchrow(
                ISSUE_VECTORS, twin.issue.id
            )
    await issue.redact(first)
    await issue.redact(second)
    twin = await _appended_twin(backend, issue.issue.id)
    async with backend._pool.acquire() as conn:
        vectors = await conn.fetchrow(ISSUE_VECTORS, issue.issue.id)
        assert vectors is not None
        assert vectors == await conn.fetchrow(ISSUE_VECTORS, twin.issue.id)
        assert "lexer" not in vectors["comments_tsv"]  # the redacted edit's word
        assert "'trace'" not in vectors["comments_tsv"]  # the redacted comment's
        assert await conn.fetchval(WRONG_VECTORS) == 0


async def test_each_current_entry_is_parsed_once_and_a_redaction_forgets_its_vectors(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Vectors are stored for the current comments an edit finds without one, not on writes.

    The edited entry's is not (its text is the edit's now) or goes; the
    next edit stores only the comments written since; a comment-less entry
    has none; a redaction deletes the vectors of the entry it blanks.
    """
    backend = bugless_model_backend
    issue = await _writer(backend, "first words")
    a = await issue.comment("alpha comment")
    b = await issue.comment("beta comment")

    async def stored() -> dict[int, str]:
        async with backend._pool.acquire() as conn:
            assert await conn.fetchval(WRONG_VECTORS) == 0
            return {r["version"]: r["tsv"] for r in await conn.fetch(VECTORS, issue.issue.id)}

    assert await stored() == {}  # a create and comments store none
    a_edit = await issue.edit(a, "alpha again")
    assert sorted(await stored()) == [1, b]
    before = await stored()
    c = await issue.comment("gamma comment")
    b_edit = await issue.edit(b, "beta again")
    after = await stored()
    assert sorted(after) == [1, a_edit, c]  # b's went with its text
    assert after[1] == before[1]
    c_edit = await issue.edit(c, "gamma again")  # b's edit is stored; c's goes
    assert sorted(await stored()) == [1, a_edit, b_edit]
    await issue.redact(b)  # c's edit stored; a redaction entry has no comment: no vector
    assert sorted(await stored()) == [1, a_edit, c_edit]
    await issue.redact(a)
    assert sorted(await stored()) == [1, c_edit]
    async with backend._pool.acquire() as conn:
        vectors = await conn.fetchrow(ISSUE_VECTORS, issue.issue.id)
    assert vectors is not None
    assert "'alpha'" not in vectors["comments_tsv"]
    assert "'beta'" not in vectors["comments_tsv"]
    assert "'gamma'" in vectors["text_tsv"]
    assert vectors == await _appended_twin_vectors(backend, issue.issue.id)


#: A real database's way to lose an UPDATE of one row: a trigger skipping it
#: (as a row written elsewhere without the issue's lock would leave the
#: redaction blanking another count than it read).
SKIP_ONE_ROW = """
CREATE FUNCTION skip_row_in_test() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER skip_row_in_test BEFORE UPDATE ON issue_history FOR EACH ROW
  WHEN (OLD.issue_id = {issue_id} AND OLD.version = {version})
  EXECUTE FUNCTION skip_row_in_test();
"""
DROP_SKIP = """
DROP TRIGGER IF EXISTS skip_row_in_test ON issue_history;
DROP FUNCTION IF EXISTS skip_row_in_test();
"""


async def test_a_redaction_blanking_other_rows_than_it_read_fails_loudly_and_writes_nothing(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The rows of an entry are read under the issue's lock; blanking fewer is a bug.

    No call of the service can provoke it (every writer of an issue's
    history holds the issue's row lock): a trigger makes the database skip
    one row of the two, and the redaction raises instead of answering a
    half-redacted comment, its transaction rolled back.
    """
    backend = bugless_model_backend
    issue = await _writer(backend, "the description")
    entry = await issue.comment("a secret")
    edit = await issue.edit(entry, "a secret, again")
    before = issue.issue.version
    async with backend._pool.acquire() as conn:
        history = [dict(r) for r in await conn.fetch(CURRENT_ROWS, issue.issue.id)]
        await conn.execute(SKIP_ONE_ROW.format(issue_id=issue.issue.id, version=edit))
        try:
            with pytest.raises(RuntimeError, match=r"had 2 rows under the issue's lock"):
                await issue.redact(entry)
        finally:
            await conn.execute(DROP_SKIP)
        assert [dict(r) for r in await conn.fetch(CURRENT_ROWS, issue.issue.id)] == history
        assert await conn.fetchval("SELECT version FROM issues WHERE id = $1", issue.issue.id) == (
            before
        )
    redaction = await issue.redact(entry)  # without the trigger, both rows go
    async with backend._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT version, comment FROM issue_history WHERE issue_id = $1 ORDER BY version",
            issue.issue.id,
        )
    assert [(r["version"], r["comment"]) for r in rows] == [
        (1, "the description"),
        (entry, ""),
        (edit, ""),
        (redaction, ""),
    ]
