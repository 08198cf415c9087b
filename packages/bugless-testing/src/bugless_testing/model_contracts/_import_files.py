"""Contract: an imported entry attaches the source's files at its place, author and time.

The backend's blob store must have :data:`ATTACHMENT_LIMITS`, as for the
attachment contracts.
"""

from __future__ import annotations

import hashlib

from grpclib.const import Status

from bugless_core.model.backend import ModelBackend
from bugless_proto import v1
from bugless_testing.model_contracts._attachments import (
    ATTACHMENT_LIMITS,
    PNG,
    download,
    listed,
    requests,
)
from bugless_testing.model_contracts._edits import _word, edit, redact
from bugless_testing.model_contracts._imports import (
    IMPORTER,
    T0,
    _at,
    _entry,
    _external_id,
    _request,
)
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    eq,
    expect_error,
    get_issue,
    history,
    make_component,
    search_ids,
    unique,
    within,
)


async def store_content(
    model: v1.ModelStub, content: bytes, name: str = "shot.png", *, caller: v1.Caller = IMPORTER
) -> v1.ImportedAttachment:
    """Store ``content`` for an import (UploadAttachment with ``import_content``)."""
    header = v1.UploadAttachmentHeader(
        caller=caller, name=name, content_type="image/png", size=len(content), import_content=True
    )
    stored = (await model.upload_attachment(requests(header, content))).attachment
    assert stored is not None
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.size == len(content)
    return v1.ImportedAttachment(
        name=name, content_type="image/png", sha256=stored.sha256, size=stored.size
    )


def _attaching(author: str, hours: float, *files: v1.ImportedAttachment) -> v1.ImportedEntry:
    return v1.ImportedEntry(author=author, created_at=_at(hours), attachments=list(files))


class ImportedFileContract:
    """ImportIssue's files: at their entry, with the source's uploader and time; once."""

    async def test_files_are_attached_at_their_entry_with_the_source_author_and_time(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        shot = await store_content(model, PNG, "screen shot.png")
        log = await store_content(model, b"T+5 no stop\n" * 10, "engine.log")
        external_id = _external_id()
        items = [
            _entry("src-dev", 1, "I can reproduce it."),
            _attaching("src-reporter", 2, shot, log),
            _entry("src-dev", 30, "Fixed in r123.", status=v1.Status.FIXED),
        ]
        done = await model.import_issue(_request(component.id, external_id, *items))
        assert done.issue is not None
        issue_id = done.issue.id
        entries = await history(model, issue_id)
        assert [e.created_at for e in entries] == [T0, _at(1), _at(2), _at(30)]
        attaching = entries[2]
        assert attaching.author == "src-reporter"
        assert attaching.imported_from == external_id
        assert [a.name for a in attaching.attachments] == ["screen shot.png", "engine.log"]
        files = await listed(model, issue_id, caller=ADMIN)
        assert [(f.name, f.uploader, f.created_at, f.entry_version) for f in files] == [
            ("screen shot.png", "src-reporter", _at(2), 3),
            ("engine.log", "src-reporter", _at(2), 3),
        ]
        assert files[0].content_type == "image/png"
        assert files[1].content_type == "text/plain"
        assert files[0].declared_content_type == "image/png"
        attachment, content = await download(model, files[1].id, caller=ADMIN)
        assert attachment is not None
        assert content == b"T+5 no stop\n" * 10
        # Importing again (a re-run, a refresh) attaches nothing twice.
        again = await model.import_issue(_request(component.id, external_id, *items))
        assert again.entries_written == 0
        assert len(await listed(model, issue_id, caller=ADMIN)) == 2
        issue = await get_issue(model, issue_id)
        assert issue.version == 4

    async def test_a_refresh_attaches_the_files_of_newer_entries_only(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        first_file = await store_content(model, PNG + b"1", "one.png")
        later_file = await store_content(model, PNG + b"2", "two.png")
        external_id = _external_id()
        items = [_attaching("src-dev", 1, first_file), _attaching("src-dev", 5, later_file)]
        first = await model.import_issue(_request(component.id, external_id, items[0]))
        assert first.issue is not None
        refreshed = await model.import_issue(_request(component.id, external_id, *items))
        assert refreshed.entries_written == 1
        files = await listed(model, first.issue.id, caller=ADMIN)
        assert [(f.name, f.entry_version) for f in files] == [("one.png", 2), ("two.png", 3)]

    async def test_missing_content_writes_nothing_of_the_issue(
        self, model: v1.ModelStub, bugless_model_backend: ModelBackend
    ) -> None:
        component = await make_component(model)
        never = v1.ImportedAttachment(
            name="gone.png", sha256=hashlib.sha256(b"never stored").hexdigest(), size=12
        )
        external_id = _external_id()
        request = _request(
            component.id, external_id, _entry("src-dev", 1, "see file"), _attaching("a", 2, never)
        )
        await expect_error(model.import_issue(request), Status.UNAVAILABLE, "gone.png", "store")
        found = await search_ids(model, eq(v1.SearchField.EXTERNAL_ID, external_id))
        assert found == [], "a half-imported issue was left"
        assert not await bugless_model_backend.blob_store.exists(never.sha256)

    async def test_storing_import_content_needs_the_import_permission_and_the_limits(
        self, model: v1.ModelStub
    ) -> None:
        await expect_error(store_content(model, PNG, caller=ALICE), Status.PERMISSION_DENIED)
        too_big = b"x" * (ATTACHMENT_LIMITS.max_file_bytes + 1)
        await expect_error(store_content(model, too_big), Status.RESOURCE_EXHAUSTED, "limit")

    async def test_a_described_file_keeps_its_description_and_counts_no_comment(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        shot = await store_content(model, PNG + b"described", "pad.png")
        shot.description = "The pad after the *second* test."
        items = [_entry("src-dev", 1, "I can reproduce it."), _attaching("src-qa", 2, shot)]
        done = await model.import_issue(_request(component.id, _external_id(), *items))
        assert done.issue is not None
        # The description and one comment: the file's entry wrote none.
        assert done.issue.comment_count == 2
        entries = await history(model, done.issue.id)
        assert (entries[2].comment, entries[2].author) == ("", "src-qa")
        assert [a.description for a in entries[2].attachments] == [shot.description]
        (file,) = await listed(model, done.issue.id, caller=ADMIN)
        assert file.description == shot.description
        redacted = await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=done.issue.id,
                expected_version=done.issue.version,
                target=v1.RedactionTarget.ATTACHMENT,
                attachment_id=file.id,
            )
        )
        assert redacted.issue is not None
        assert redacted.issue.comment_count == 2
        (file,) = await listed(model, done.issue.id, caller=ADMIN)
        assert (file.redacted, file.description) == (True, "")
        too_long = v1.ImportedAttachment(
            name="x.png", sha256=shot.sha256, size=shot.size, description="x" * 70_000
        )
        request = _request(component.id, _external_id(), _attaching("a", 1, too_long))
        await expect_error(
            model.import_issue(request), Status.INVALID_ARGUMENT, "attachments[0].description"
        )

    async def test_a_description_is_searched_and_mentions_as_the_comment_beside_it(
        self, model: v1.ModelStub
    ) -> None:
        """Its words and @mentions are found (text, ``comment:``, ``mention:``) until it goes.

        An edit or a redaction of the comment of the entry attaching the file
        leaves the description (the file's), and an edit dropping the one
        comment naming someone the description names too keeps the mention;
        a redaction of the file takes the description out of all three.
        """
        component = await make_component(model)
        word, said, name = _word("flange"), _word("said"), unique("qa")
        shot = await store_content(model, PNG + b"searched", "gasket.png")
        shot.description = f"The {word} after @{name} ran the test."
        attaching = _attaching(ALICE.user_id, 2, shot)
        attaching.comment = f"{said}: see the file"
        items = [_entry(ALICE.user_id, 1, f"cc @{name}"), attaching]
        done = await model.import_issue(_request(component.id, _external_id(), *items))
        assert done.issue is not None
        issue = done.issue
        text, comment = eq(v1.SearchField.TEXT, word), eq(v1.SearchField.COMMENT, word)
        mention = eq(v1.SearchField.MENTION, name)

        async def found() -> list[list[int]]:
            return [
                await search_ids(model, within(component.id, n)) for n in (text, comment, mention)
            ]

        assert await found() == [[issue.id]] * 3
        await edit(model, issue, 2, "cc nobody")  # the description still names them
        await edit(model, issue, 3, "see the file, again")
        assert await found() == [[issue.id]] * 3
        said_term = within(component.id, eq(v1.SearchField.TEXT, said))
        assert await search_ids(model, said_term) == []
        await redact(model, issue.id, v1.RedactionTarget.COMMENT, entry_version=3)
        assert await found() == [[issue.id]] * 3
        (file,) = await listed(model, issue.id, caller=ADMIN)
        await redact(model, issue.id, v1.RedactionTarget.ATTACHMENT, attachment_id=file.id)
        assert await found() == [[], [], []]

    async def test_a_file_not_imported_is_searched_by_why_and_its_description(
        self, model: v1.ModelStub
    ) -> None:
        """Why and its description are found by text and ``comment:``, through edits.

        Before it was a change of its entry it was that entry's comment, and
        found as one; an edit of another comment (which rebuilds the issue's
        vectors) keeps it found.
        """
        component = await make_component(model)
        word, why = _word("crankcase"), _word("oversized")
        left_out = v1.ImportedEntry(
            author="src-dev", created_at=_at(2),
            files_not_imported=[
                v1.NotImportedFile(
                    name="core.dump", reason=f"{why} for the Model", description=f"The {word} trace"
                )
            ],
        )  # fmt: skip
        items = [_entry(ALICE.user_id, 1, "Seen."), left_out]
        done = await model.import_issue(_request(component.id, _external_id(), *items))
        assert done.issue is not None
        issue = done.issue

        async def found(term: str) -> list[list[int]]:
            return [
                await search_ids(model, within(component.id, eq(field, term)))
                for field in (v1.SearchField.TEXT, v1.SearchField.COMMENT)
            ]

        assert await found(word) == [[issue.id]] * 2
        assert await found(why) == [[issue.id]] * 2
        await edit(model, issue, 2, "Seen, again.")
        assert await found(word) == [[issue.id]] * 2
        assert await found(why) == [[issue.id]] * 2

    async def test_a_file_not_imported_mentions_as_the_comment_it_was(
        self, model: v1.ModelStub
    ) -> None:
        """An @name in its description is a mention, kept when a comment naming them goes.

        While the import wrote such a file as a comment, its @names were
        mentions; as its entry's change they still are (``mention:`` finds
        the issue, as search finds its words). An edit dropping the one
        comment naming the same person reads the issue's other texts again,
        and the file's description still names them.
        """
        component = await make_component(model)
        name = unique("qa")
        left_out = v1.ImportedEntry(
            author="src-dev", created_at=_at(2),
            files_not_imported=[
                v1.NotImportedFile(
                    name="core.dump", reason="too large", description=f"Trace @{name} took"
                )
            ],
        )  # fmt: skip
        items = [_entry(ALICE.user_id, 1, f"cc @{name}"), left_out]
        done = await model.import_issue(_request(component.id, _external_id(), *items))
        assert done.issue is not None
        issue = done.issue
        mention = within(component.id, eq(v1.SearchField.MENTION, name))
        assert await search_ids(model, mention) == [issue.id]
        await edit(model, issue, 2, "cc nobody")
        assert await search_ids(model, mention) == [issue.id]
        await edit(model, issue, 2, f"cc @{name} again")
        await redact(model, issue.id, v1.RedactionTarget.COMMENT, entry_version=2)
        assert await search_ids(model, mention) == [issue.id]

    async def test_a_description_is_redacted_alone_and_the_file_kept(
        self, model: v1.ModelStub
    ) -> None:
        """ATTACHMENT_DESCRIPTION blanks the description everywhere; the content stays.

        The entry records the file's id; the words and the mention go from
        search. Once gone (or with its content) there is nothing left to
        redact; another issue's file is NOT_FOUND, and an editor may not.
        """
        component = await make_component(model)
        word, name = _word("bearing"), unique("ops")
        content = PNG + b"kept"
        shot = await store_content(model, content, "bearing.png")
        shot.description = f"The {word} password, ask @{name}."
        items = [_attaching("src-qa", 2, shot)]
        done = await model.import_issue(_request(component.id, _external_id(), *items))
        assert done.issue is not None
        issue = done.issue
        (file,) = await listed(model, issue.id, caller=ADMIN)
        other = await model.import_issue(_request(component.id, _external_id()))
        assert other.issue is not None
        target = v1.RedactionTarget.ATTACHMENT_DESCRIPTION
        await expect_error(
            redact(model, other.issue.id, target, attachment_id=file.id), Status.NOT_FOUND, "has no"
        )
        await expect_error(
            redact(model, issue.id, target, attachment_id=file.id, caller=ALICE),
            Status.PERMISSION_DENIED,
            "to redact",
        )
        redacted = await redact(model, issue.id, target, attachment_id=file.id)
        assert redacted.entry is not None
        entry = redacted.entry
        assert (entry.redaction_target, entry.redacted_attachment_id) == (target, file.id)
        assert entry.redacted_version == 0
        (file,) = await listed(model, issue.id, caller=ADMIN)
        assert (file.redacted, file.description) == (False, "")
        _, downloaded = await download(model, file.id, caller=ADMIN)
        assert downloaded == content
        entries = await history(model, issue.id)
        assert [a.description for a in entries[1].attachments] == [""]
        for term in (eq(v1.SearchField.TEXT, word), eq(v1.SearchField.MENTION, name)):
            assert await search_ids(model, within(component.id, term)) == []
        await expect_error(
            redact(model, issue.id, target, attachment_id=file.id),
            Status.FAILED_PRECONDITION,
            "no description to redact",
        )
