"""Contract: editing a comment keeps the history honest; redaction removes content."""

from __future__ import annotations

from grpclib.const import Status

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    eq,
    expect_error,
    get_issue,
    history,
    make_component,
    make_issue,
    search_ids,
    unique,
    user_entry,
    within,
)


async def edit(
    model: v1.ModelStub,
    issue: v1.Issue,
    entry_version: int,
    text: str,
    caller: v1.Caller = ALICE,
) -> v1.ChangeIssueResponse:
    """Edit the comment of one entry against the issue's current version."""
    current = await get_issue(model, issue.id)
    return await model.edit_comment(
        v1.EditCommentRequest(
            caller=caller,
            issue_id=issue.id,
            expected_version=current.version,
            entry_version=entry_version,
            comment=text,
        )
    )


async def redact(
    model: v1.ModelStub,
    issue_id: int,
    target: v1.RedactionTarget,
    *,
    entry_version: int = 0,
    attachment_id: int = 0,
    caller: v1.Caller = ADMIN,
) -> v1.ChangeIssueResponse:
    """Redact against the issue's current version."""
    current = await get_issue(model, issue_id)
    return await model.redact(
        v1.RedactRequest(
            caller=caller,
            issue_id=issue_id,
            expected_version=current.version,
            target=target,
            entry_version=entry_version,
            attachment_id=attachment_id,
        )
    )


def _word(prefix: str) -> str:
    """A word no other issue contains (letters only, so the text index keeps it whole)."""
    return prefix + "".join(chr(ord("a") + int(c, 16) % 26) for c in unique("")[1:9])


class EditContract:
    """EditComment: a new entry supersedes the old text; earlier texts stay readable."""

    async def test_an_edit_is_a_new_entry_and_the_original_stays(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="first text")
        response = await edit(model, issue, commented.entry.version, "second text")
        assert response.entry is not None
        assert response.issue is not None
        assert response.entry.edits_version == commented.entry.version
        assert response.entry.comment == "second text"
        assert response.entry.author == ALICE.user_id
        assert response.issue.version == commented.issue.version + 1
        assert response.issue.comment_count == commented.issue.comment_count
        entries = await history(model, issue.id)
        original = entries[commented.entry.version - 1]
        assert original.comment == "first text"
        assert original.edited_in_version == response.entry.version
        assert entries[-1].edits_version == original.version

    async def test_the_notifier_reads_the_text_each_edit_replaced(
        self, model: v1.ModelStub
    ) -> None:
        """GetNotificationViews gives an edit the text before it, so the notifier can compare.

        The notifier tells an edit only to the people it newly @mentions; it
        needs the replaced text for that. Other entries, and other reads,
        leave the field unset; a redaction leaves it blank.
        """
        component = await make_component(model)
        issue = await make_issue(model, component.id, description="first description")
        commented = await change(model, issue, comment="first text")
        one = await edit(model, issue, commented.entry.version, "second text")
        two = await edit(model, issue, commented.entry.version, "third text")
        described = await edit(model, issue, 1, "second description")
        assert one.entry is not None
        assert two.entry is not None
        assert described.entry is not None
        versions = [1, commented.entry.version, one.entry.version, two.entry.version]
        versions.append(described.entry.version)

        async def replaced() -> list[str | None]:
            views = await model.get_notification_views(
                v1.GetNotificationViewsRequest(caller=ADMIN, issue_id=issue.id, versions=versions)
            )
            return [e.replaced_comment for e in views.entries]

        assert await replaced() == [None, None, "first text", "second text", "first description"]
        assert all(e.replaced_comment is None for e in await history(model, issue.id))
        await redact(
            model, issue.id, v1.RedactionTarget.COMMENT, entry_version=commented.entry.version
        )
        assert await replaced() == [None, None, "", "", "first description"]

    async def test_the_latest_edit_is_what_search_finds(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        old, new = _word("old"), _word("new")
        commented = await change(model, issue, comment=f"mentions {old}")
        await edit(model, issue, commented.entry.version, f"mentions {new}")
        text = v1.SearchField.TEXT
        assert await search_ids(model, within(component.id, eq(text, new))) == [issue.id]
        assert await search_ids(model, within(component.id, eq(text, old))) == []

    async def test_editing_entry_one_edits_the_description(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id, description="typo")
        response = await edit(model, issue, 1, "fixed description")
        assert response.issue is not None
        assert response.issue.description == "fixed description"
        assert (await history(model, issue.id))[0].comment == "typo"

    async def test_only_the_author_may_edit(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="mine")
        await expect_error(
            edit(model, issue, commented.entry.version, "theirs", caller=BOB),
            Status.PERMISSION_DENIED,
            "author",
        )
        await expect_error(
            edit(model, issue, commented.entry.version, "admin", caller=ADMIN),
            Status.PERMISSION_DENIED,
            "author",
        )

    async def test_an_edit_against_a_stale_version_is_aborted(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="text")
        await expect_error(
            model.edit_comment(
                v1.EditCommentRequest(
                    caller=ALICE,
                    issue_id=issue.id,
                    expected_version=issue.version,
                    entry_version=commented.entry.version,
                    comment="new",
                )
            ),
            Status.ABORTED,
            f"issue {issue.id}",
        )

    async def test_bad_edits_are_refused_and_change_nothing(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="text")
        field_only = await change(model, commented.issue, v1.IssueDelta(cc_add=["x"]))
        edited = await edit(model, issue, commented.entry.version, "v2")
        assert edited.entry is not None
        await expect_error(edit(model, issue, 99, "x"), Status.NOT_FOUND, "entry_version", "99")
        await expect_error(
            edit(model, issue, edited.entry.version, "v3"),
            Status.INVALID_ARGUMENT,
            "entry_version",
            "an edit of",
        )
        await expect_error(
            edit(model, issue, field_only.entry.version, "x"),
            Status.FAILED_PRECONDITION,
            "no comment",
        )
        await expect_error(
            edit(model, issue, commented.entry.version, "v2"), Status.INVALID_ARGUMENT, "unchanged"
        )
        await expect_error(
            edit(model, issue, commented.entry.version, "   "), Status.INVALID_ARGUMENT, "comment"
        )
        assert edited.issue is not None
        assert (await get_issue(model, issue.id)).version == edited.issue.version

    async def test_an_invisible_issue_is_not_found(self, model: v1.ModelStub) -> None:
        component = await make_component(model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)])
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="private")
        await expect_error(
            edit(model, issue, commented.entry.version, "x", caller=BOB), Status.NOT_FOUND
        )


class RedactionContract:
    """Redact: the content is gone from storage, index and every edit; a record says so."""

    async def test_a_redacted_comment_is_gone_with_every_edit(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        secret, later = _word("secret"), _word("later")
        commented = await change(model, issue, comment=f"password {secret}")
        await edit(model, issue, commented.entry.version, f"password {secret} {later}")
        await edit(model, issue, commented.entry.version, f"rotated {later}")
        response = await redact(
            model, issue.id, v1.RedactionTarget.COMMENT, entry_version=commented.entry.version
        )
        record = response.entry
        assert record is not None
        assert record.author == ADMIN.user_id
        assert record.redaction_target is v1.RedactionTarget.COMMENT
        assert record.redacted_version == commented.entry.version
        assert record.comment == ""
        entries = await history(model, issue.id)
        versions = [e for e in entries if commented.entry.version in (e.version, e.edits_version)]
        assert len(versions) == 3
        for entry in versions:
            assert entry.comment == ""
            assert entry.comment_redacted
        assert all(secret not in e.comment and later not in e.comment for e in entries)
        for word in (secret, later):
            found = await search_ids(model, within(component.id, eq(v1.SearchField.TEXT, word)))
            assert found == [], f"{word} is still in the full-text index"

    async def test_redacting_an_edit_redacts_its_original(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="a")
        edited = await edit(model, issue, commented.entry.version, "b")
        assert edited.entry is not None
        response = await redact(
            model, issue.id, v1.RedactionTarget.COMMENT, entry_version=edited.entry.version
        )
        assert response.entry is not None
        assert response.entry.redacted_version == commented.entry.version

    async def test_a_redacted_description_is_gone(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        secret = _word("leak")
        issue = await make_issue(model, component.id, description=f"token {secret}")
        response = await redact(model, issue.id, v1.RedactionTarget.DESCRIPTION)
        assert response.issue is not None
        assert response.entry is not None
        assert response.issue.description == ""
        assert response.entry.redaction_target is v1.RedactionTarget.DESCRIPTION
        assert response.entry.redacted_version == 1
        first = (await history(model, issue.id))[0]
        assert first.comment == ""
        assert first.comment_redacted
        text = v1.SearchField.TEXT
        assert await search_ids(model, within(component.id, eq(text, secret))) == []
        assert (await get_issue(model, issue.id)).title == issue.title

    async def test_the_rest_of_the_issue_stays_searchable(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        keep, drop = _word("keep"), _word("drop")
        issue = await make_issue(model, component.id, description=f"about {keep}")
        commented = await change(model, issue, comment=f"oops {drop}")
        await redact(
            model, issue.id, v1.RedactionTarget.COMMENT, entry_version=commented.entry.version
        )
        text = v1.SearchField.TEXT
        assert await search_ids(model, within(component.id, eq(text, keep))) == [issue.id]
        assert await search_ids(model, within(component.id, eq(text, drop))) == []

    async def test_only_admins_may_redact(self, model: v1.ModelStub) -> None:
        admin_of_component = v1.Caller(user_id=unique("compadmin"))
        component = await make_component(
            model,
            acl=[
                user_entry(ALICE.user_id, v1.Role.EDITOR),
                user_entry(admin_of_component.user_id, v1.Role.ADMIN),
            ],
        )
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="x")
        await expect_error(
            redact(
                model,
                issue.id,
                v1.RedactionTarget.COMMENT,
                entry_version=commented.entry.version,
                caller=ALICE,
            ),
            Status.PERMISSION_DENIED,
            "admin",
        )
        response = await redact(
            model,
            issue.id,
            v1.RedactionTarget.COMMENT,
            entry_version=commented.entry.version,
            caller=admin_of_component,
        )
        assert response.entry is not None
        assert response.entry.author == admin_of_component.user_id

    async def test_nothing_left_to_redact_is_refused(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        await expect_error(
            redact(model, issue.id, v1.RedactionTarget.DESCRIPTION),
            Status.FAILED_PRECONDITION,
            "no text",
        )
        await expect_error(
            redact(model, issue.id, v1.RedactionTarget.COMMENT, entry_version=50),
            Status.NOT_FOUND,
            "entry_version",
        )
        await expect_error(
            redact(model, issue.id, v1.RedactionTarget.ATTACHMENT, attachment_id=7),
            Status.NOT_FOUND,
            "attachment",
        )
        assert (await get_issue(model, issue.id)).version == issue.version

    async def test_a_redacted_comment_cannot_be_edited(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        commented = await change(model, issue, comment="x")
        await redact(
            model, issue.id, v1.RedactionTarget.COMMENT, entry_version=commented.entry.version
        )
        await expect_error(
            edit(model, issue, commented.entry.version, "y"), Status.FAILED_PRECONDITION, "redacted"
        )
