"""Round trips the write calls no longer make, and that their answers stay the same.

Each write here used to send statements it could do without: the names of
an issue's custom fields (now read with the issue, so another replica's
rename is seen at once: no cache), the version check of an attachment
deletion (now read with the attachment), the attachment read again after a
redaction (the redaction returns its hash), an edit's separate reads of the
entry and its current text and its four writes of the issue and the entry
(now two), and, with a change listener, a read of every entry it wrote (now
built from the rows the write returned). Removing content no attachment
needs any more checks and forgets it in one statement; a change, an
upload, a deletion (marking its file deleted there too) and a redaction
write their entry with the change-feed row, an upload reads its issue's
usage with the version bump, and the content's row is made or locked in
one statement. An upload inserts its file with its entry and the feed
row, and a deletion, on READ COMMITTED, is a read and one statement (the
issue's version, the file's deletion, its entry and the feed row:
``test_delete_in_one.py``); an edit writes its entry last, with the feed row, and an edit, a
redaction and a title change keep the mentions without reading them all
again; a change listener's issue is built from the write's rows.
The tests count what is sent, and check the answers against reads; what
those writes do when another writer acts alongside is in
``test_write_races.py``.
"""

from __future__ import annotations

import uuid

from write_support import (
    ADMIN,
    ALICE,
    Sent,
    change,
    delete,
    edit,
    upload,
    valued_issue,
)

from bugless_core.mentions import mentioned_usernames
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _mentions
from bugless_model_postgres._edits import names_may_go
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: What the statements this file says are gone start with.
FIELD_NAMES = "SELECT id, name, type FROM custom_fields"
ATTACHMENT_BY_ID = "SELECT a.*, i.component_id"
#: The read of a deletion in one statement: its issue with the file (test_delete_in_one).
DELETION_READ = "FROM attachments a JOIN issues i ON i.id = a.issue_id"
FETCH_ENTRY = "SELECT * FROM issue_history WHERE issue_id = $1 AND version = $2"


async def test_writes_read_names_with_the_issue_and_deletions_their_version_with_the_file(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Statements per call on an issue with a custom value (READ COMMITTED).

    ChangeIssue 2 (was 7), UploadAttachment 5 (14), DeleteAttachment 6
    (18), EditComment 6 (13), Redact of a file 10 (17), the removal of the
    content after those two included; the reply still names the field.
    """
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    names = [
        v1.CustomFieldValue(field_id=field.id, values=["1.2"], name=field.name, type=field.type)
    ]
    async with Sent(backend, model_settings.pool_max_size) as sent:
        changed = await change(backend, issue, v1.Priority.P1)
        assert len(sent.take()) == 2  # a read and one statement (test_change_in_one)
        uploaded = await upload(backend, changed.issue or issue)
        # The checks; then the content's lock with a read and one statement (test_upload_in_one).
        assert len(sent.take()) == 5
        assert uploaded.attachment is not None
        assert uploaded.issue is not None
        deleted = await delete(backend, uploaded, uploaded.issue.version)
        statements = sent.take()
        assert len(statements) == 6  # a read and one statement, then the content's removal
        assert DELETION_READ in statements[0]  # the version read with the file
        assert not any(s.startswith(ATTACHMENT_BY_ID) for s in statements)
        assert deleted.issue is not None
        edited = await edit(backend, deleted.issue, changed.entry)
        assert len(sent.take()) == 6  # was 9: the mentions' read and the entry with the feed
        assert edited.issue is not None
        again = await upload(backend, edited.issue)
        assert again.attachment is not None
        assert again.issue is not None
        sent.take()
        redacted = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=again.issue.version,
                target=v1.RedactionTarget.ATTACHMENT,
                attachment_id=again.attachment.id,
            )
        )
        statements = sent.take()
        assert len(statements) == 10
        assert not any(s.startswith(ATTACHMENT_BY_ID) for s in statements)
        assert sent.starting(FIELD_NAMES) == 0
    for reply in (changed, deleted, edited, redacted):
        assert reply.issue is not None
        assert reply.issue.custom_fields == names
    for uploaded_reply in (uploaded, again):
        assert uploaded_reply.issue is not None
        assert uploaded_reply.issue.custom_fields == names
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert redacted.issue == read
    # The redacted file's content left the store (it was the only reference).
    assert not await backend.blob_store.exists(again.attachment.sha256)


async def test_listeners_hear_the_entries_reads_return_without_reading_them_back(
    replica: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Entries the write returned are not read again; the other sides of relations are."""
    backend = replica
    heard: list[tuple[v1.Issue, v1.HistoryEntry]] = []
    backend.add_change_listener(lambda issue, entry: heard.append((issue, entry)))
    issue, _ = await valued_issue(backend)
    other = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="blocked", component_id=issue.component_id),
        )
    )
    heard.clear()
    async with Sent(backend, model_settings.pool_max_size) as sent:
        changed = await change(backend, issue, v1.Priority.P1)
        assert changed.issue is not None
        uploaded = await upload(backend, changed.issue)
        assert uploaded.issue is not None
        assert uploaded.attachment is not None
        deleted = await delete(backend, uploaded, uploaded.issue.version)
        assert deleted.issue is not None
        edited = await edit(backend, deleted.issue, changed.entry)
        assert edited.issue is not None
        assert sent.starting(FETCH_ENTRY) == 0
        related = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=edited.issue.version,
                delta=v1.IssueDelta(blocking_add=[other.id]),
            )
        )
        # The other side's entry is written without RETURNING: read after the commit.
        assert sent.starting(FETCH_ENTRY) == 1
    assert related.issue is not None
    entries = [r.entry for r in (changed, uploaded, deleted, edited, related)]
    assert [(i.id, e.version) for i, e in heard] == [
        *((issue.id, e.version) for e in entries if e is not None),
        (other.id, 2),
    ]
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    by_version = {e.version: e for e in history.entries}
    others = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=other.id))
    by_version_other = {e.version: e for e in others.entries}
    for heard_issue, entry in heard:
        expected = (by_version if heard_issue.id == issue.id else by_version_other)[entry.version]
        expected.edited_in_version = 0  # ListHistory's own mark, never in an event
        for attached in expected.attachments:
            attached.deleted_in_version = 0  # by a later entry, after this one was heard
        assert entry == expected
        assert heard_issue.version == entry.version  # as read after that write's commit
    # A listener's entry is its own message, not the reply's.
    assert uploaded.entry is not None
    assert heard[1][1] == uploaded.entry
    assert heard[1][1] is not uploaded.entry
    assert heard[1][1].attachments == [uploaded.attachment]


async def test_mentions_after_edits_redactions_and_title_changes_are_what_a_resync_finds(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """An edit or redaction writes only the mentions that changed; a title change reads none.

    After every write the stored mentions equal what ``_mentions.sync``
    computes from the stored texts (the rule before: a read and two writes
    per edit, redaction and title change).
    """
    backend = bugless_model_backend
    component = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"mentions-{uuid.uuid4().hex[:8]}")
    )
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="about @ann", component_id=component.id),
            description="hi @bob",
        )
    )

    async def stored() -> list[str]:
        async with backend._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT username FROM issue_mentions WHERE issue_id = $1 ORDER BY 1", issue.id
            )
            texts = await conn.fetch(_mentions._TEXTS, [issue.id])
        names = [r["username"] for r in rows]
        assert names == sorted(mentioned_usernames(*(t["body"] for t in texts)))
        return names

    def mention_writes(statements: list[str]) -> list[str]:
        return [
            s
            for s in statements
            if s.startswith(("DELETE FROM issue_mentions", "INSERT INTO issue_mentions"))
            or s.startswith("SELECT title AS body")
        ]

    async def rewrite(current: v1.Issue, entry: int, text: str) -> v1.Issue:
        reply = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=current.version,
                entry_version=entry,
                comment=text,
            )
        )
        assert reply.issue is not None
        return reply.issue

    async def retitle(current: v1.Issue, title: str, comment: str = "") -> v1.Issue:
        reply = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=current.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(title=title), update_mask=FieldMask(["title"])
                ),
                comment=comment,
            )
        )
        assert reply.issue is not None
        return reply.issue

    async def redact(current: v1.Issue, entry: int) -> v1.Issue:
        reply = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=current.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=entry,
            )
        )
        assert reply.issue is not None
        return reply.issue

    assert await stored() == ["ann", "bob"]
    commented = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE, issue_id=issue.id, expected_version=issue.version, comment="ping @carol"
        )
    )
    assert commented.issue is not None
    assert commented.entry is not None
    ping = commented.entry.version
    assert await stored() == ["ann", "bob", "carol"]
    async with Sent(backend, model_settings.pool_max_size) as sent:
        current = await rewrite(commented.issue, ping, "ping @dave")
        assert len(mention_writes(sent.take())) == 2  # carol out, dave in
        assert await stored() == ["ann", "bob", "dave"]
        sent.take()
        current = await rewrite(current, ping, "ping @Dave, again")
        statements = sent.take()
        assert mention_writes(statements) == []  # the same names: nothing written
        assert len(statements) == 6
        current = await rewrite(current, 1, "hi @ann")  # the description; ann also in the title
        assert len(mention_writes(sent.take())) == 1  # bob out
        assert await stored() == ["ann", "dave"]
        sent.take()
        current = await retitle(current, "about @ann and @erin")
        assert len(sent.take()) == 2  # erin in, with the change's one statement; nothing read
        assert await stored() == ["ann", "dave", "erin"]
        sent.take()
        # ann and erin may go with the title: resync (ann stays: the description)
        current = await retitle(current, "quiet", "over to @frank")
        assert any(s.startswith("SELECT title AS body") for s in sent.take())
        assert await stored() == ["ann", "dave", "frank"]
        sent.take()
        current = await redact(current, ping + 2)  # an edit of ping: its comment goes
        statements = sent.take()
        assert len(statements) == 8  # was 12: BEGIN, lock, target, blank, bump, dave out,
        assert len(mention_writes(statements)) == 1  # entry and feed, COMMIT
        assert await stored() == ["ann", "frank"]
        current = await redact(current, 1)  # the description, edited
        assert await stored() == ["frank"]
        assert current.description == ""
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    assert history.entries[-1].redaction_target == v1.RedactionTarget.DESCRIPTION
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert read == current


async def test_a_move_that_drops_values_names_them_from_the_issues_row(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The names of the values a move drops come with the locked issue, not a look-up."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    elsewhere = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"away-{uuid.uuid4().hex[:8]}")
    )
    async with Sent(backend, model_settings.pool_max_size) as sent:
        moved = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(component_id=elsewhere.id),
                    update_mask=FieldMask(["component_id"]),
                ),
            )
        )
        assert sent.starting(FIELD_NAMES) == 0
    assert moved.issue is not None
    assert moved.issue.custom_fields == []
    assert moved.entry is not None
    dropped = [c for c in moved.entry.changes if c.field_name]
    assert [(c.field_name, c.field_type, c.old_value, c.new_value) for c in dropped] == [
        (field.name, field.type, "1.2", "")
    ]
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    assert history.entries[-1] == moved.entry


async def test_listeners_hear_the_issue_an_admin_reads_without_a_read_after_the_commit(
    replica: PostgresBackend, model_settings: ModelSettings
) -> None:
    """With a change listener a write sends what it sends without one.

    The listener's issue is built from the rows the write returned and read
    under its lock (every hotlist, a private one the caller cannot see
    included; no star of the admin's), and equals an admin's read after it.
    """
    backend = replica
    bob = v1.Caller(user_id="bob")
    issue, _ = await valued_issue(backend)
    hotlist = await backend.create_hotlist(
        v1.CreateHotlistRequest(caller=bob, name=f"bob's {uuid.uuid4().hex[:6]}", private=True)
    )
    await backend.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=bob, hotlist_id=hotlist.id, issue_ids=[issue.id])
    )
    await backend.star_issue(v1.StarIssueRequest(caller=ALICE, issue_id=issue.id, starred=True))
    current = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert current.starred
    assert current.hotlist_ids == []
    heard: list[tuple[v1.Issue, v1.HistoryEntry]] = []
    backend.add_change_listener(lambda issue, entry: heard.append((issue, entry)))

    async def admin_read() -> v1.Issue:
        return await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))

    async with Sent(backend, model_settings.pool_max_size) as sent:
        changed = await change(backend, current, v1.Priority.P1)
        assert len(sent.take()) == 2  # as without a listener
        assert changed.issue is not None
        assert changed.issue.starred
        assert heard[-1][0] == await admin_read()
        assert heard[-1][0].hotlist_ids == [hotlist.id]
        assert not heard[-1][0].starred
        sent.take()
        uploaded = await upload(backend, changed.issue)
        assert len(sent.take()) == 5  # as without a listener
        assert uploaded.issue is not None
        assert uploaded.attachment is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        edited = await edit(backend, uploaded.issue, changed.entry)
        assert len(sent.take()) == 6
        assert edited.issue is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        deleted = await delete(backend, uploaded, edited.issue.version)
        assert len(sent.take()) == 6  # as without a listener
        assert deleted.issue is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        removed = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=bob,
                issue_id=issue.id,
                expected_version=deleted.issue.version,
                delta=v1.IssueDelta(hotlist_remove=[hotlist.id]),
            )
        )
        assert removed.issue is not None
        assert heard[-1][0] == await admin_read()
        assert heard[-1][0].hotlist_ids == []
    assert [e.version for _, e in heard] == [
        r.issue.version for r in (changed, uploaded, edited, deleted, removed) if r.issue
    ]


async def test_an_edit_and_a_redaction_read_the_issues_current_texts_once(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The vectors' rebuild returns the other texts the mentions need: one scan of the history.

    Each scan reads every entry and edit of the issue (its cost grows with the
    history); the edit's entry read no longer does one of its own.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    changed = await change(backend, issue, v1.Priority.P1)
    assert changed.issue is not None
    async with Sent(backend, model_settings.pool_max_size) as sent:
        edited = await edit(backend, changed.issue, changed.entry)
        assert sum(s.count("DISTINCT ON") for s in sent.take()) == 1
        assert edited.issue is not None
        redacted = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=edited.issue.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=changed.issue.version,  # the comment edited
            )
        )
        assert sum(s.count("DISTINCT ON") for s in sent.take()) == 1
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert redacted.issue == read


async def test_an_edit_or_redaction_keeps_a_name_exactly_while_another_current_text_has_it(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The other texts an edit or a redaction reads are every other entry's current text.

    A name another comment still mentions stays; one only the changed text
    had goes; another comment's earlier text (edited away since) and a
    redacted comment count for nothing; the changed entry's own earlier
    edits neither. After every write the stored names are what
    ``_mentions.sync`` finds from the stored texts.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    current = issue

    async def stored() -> list[str]:
        async with backend._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT username FROM issue_mentions WHERE issue_id = $1 ORDER BY 1", issue.id
            )
            texts = await conn.fetch(_mentions._TEXTS, [issue.id])
        names = [r["username"] for r in rows]
        assert names == sorted(mentioned_usernames(*(t["body"] for t in texts)))
        return names

    async def comment(text: str) -> int:
        nonlocal current
        reply = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE, issue_id=issue.id, expected_version=current.version, comment=text
            )
        )
        assert reply.issue is not None
        assert reply.entry is not None
        current = reply.issue
        return reply.entry.version

    async def rewrite(entry: int, text: str) -> None:
        nonlocal current
        reply = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=current.version,
                entry_version=entry,
                comment=text,
            )
        )
        assert reply.issue is not None
        current = reply.issue

    async def redact(entry: int) -> None:
        nonlocal current
        reply = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=current.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=entry,
            )
        )
        assert reply.issue is not None
        current = reply.issue

    first = await comment("ask @gina and @hank")
    second = await comment("@gina again")
    third = await comment("@ivy knows")
    assert await stored() == ["gina", "hank", "ivy"]
    await rewrite(first, "ask @hank")  # gina: the second comment still has her
    assert await stored() == ["gina", "hank", "ivy"]
    await rewrite(second, "nobody")  # gina: only the second had her (the first's edit went)
    assert await stored() == ["hank", "ivy"]
    await rewrite(second, "@hank too")
    await rewrite(first, "@jo instead")  # hank: the second's latest text has him
    assert await stored() == ["hank", "ivy", "jo"]
    await rewrite(second, "@jo too")  # hank: in the second's earlier edit only, which is gone
    assert await stored() == ["ivy", "jo"]
    fourth = await comment("@ivy again")
    await redact(third)  # ivy: the fourth comment still has her
    assert await stored() == ["ivy", "jo"]
    await rewrite(fourth, "@kim")  # ivy: the third's text was redacted
    assert await stored() == ["jo", "kim"]
    await redact(first)  # jo: the second's latest text has him
    assert await stored() == ["jo", "kim"]
    await redact(second)  # jo: no text left has him
    assert await stored() == ["kim"]
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert read == current


def test_the_other_texts_are_read_only_when_a_name_of_the_old_text_may_go() -> None:
    """A name the old text mentions that neither the title nor the new text does may go."""
    assert not names_may_go("ping @ann", "a title", "ping @ann again")
    assert not names_may_go("ping @Ann", "about @ann", "")  # the title keeps her; any case
    assert not names_may_go("mail me@ann.example", "a title", "nobody")  # an address
    assert not names_may_go("no names", "a title")
    assert names_may_go("@ann and @bob", "about @ann", "@ann only")
    assert names_may_go("ping @ann", "a title")  # a redaction: nothing new
