"""Contract: the Google Issue Tracker search fields added for parity (issue 18).

``closed`` (GIT's ``resolved``), ``commenter``, ``modifier``,
``lastmodifier``, ``lastcommenter``, ``mention`` and ``parentid:N+``
(transitive children); custom field terms have their own contract.
"""

from __future__ import annotations

import datetime
import unicodedata

from hypothesis import HealthCheck, example, given, settings

from bugless_core.search.build import term
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_testing.model_contracts._edits import edit, redact
from bugless_testing.model_contracts._support import (
    ALICE,
    BOB,
    CAROL,
    change,
    delta,
    eq,
    make_component,
    make_issue,
    search_ids,
    unique,
    within,
)
from bugless_testing.usernames import usernames

F = v1.SearchField
Op = v1.SearchOperator


class SearchParityContract:
    """Each field finds exactly the issues its definition names."""

    async def test_closed_time_and_has_closed(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        still_open = await make_issue(model, root.id)
        fixed = await make_issue(model, root.id)
        await change(model, fixed, delta(status=v1.Status.FIXED))
        assert await search_ids(model, within(root.id, term(F.CLOSED, Op.ANY))) == [fixed.id]
        assert await search_ids(model, within(root.id, term(F.CLOSED, Op.NONE))) == [still_open.id]
        past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        assert await search_ids(model, within(root.id, term(F.CLOSED, Op.GT, past))) == [fixed.id]
        assert await search_ids(model, within(root.id, term(F.CLOSED, Op.LT, past))) == []

    async def test_people_in_the_history(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        issue = await make_issue(model, root.id, caller=ALICE)
        other = await make_issue(model, root.id, caller=ALICE)
        commented = await change(model, issue, comment="from bob", caller=BOB)
        await change(model, commented.issue, delta(title="carol was here"), caller=CAROL)
        assert await search_ids(model, within(root.id, eq(F.COMMENTER, BOB.user_id))) == [issue.id]
        assert await search_ids(model, within(root.id, eq(F.COMMENTER, CAROL.user_id))) == []
        assert await search_ids(model, within(root.id, eq(F.MODIFIER, CAROL.user_id))) == [issue.id]
        assert await search_ids(model, within(root.id, eq(F.MODIFIER, ALICE.user_id))) == [
            other.id,
            issue.id,
        ]
        assert await search_ids(model, within(root.id, eq(F.LAST_MODIFIER, CAROL.user_id))) == [
            issue.id
        ]
        assert await search_ids(model, within(root.id, eq(F.LAST_MODIFIER, ALICE.user_id))) == [
            other.id
        ]
        assert await search_ids(model, within(root.id, eq(F.LAST_COMMENTER, BOB.user_id))) == [
            issue.id
        ]

    async def test_an_edit_of_an_earlier_comment_leaves_the_last_commenter(
        self, model: v1.ModelStub
    ) -> None:
        """An edit's entry is no new comment.

        It carries the comment's new text, but the last commenter is whoever
        wrote the latest comment.
        """
        root = await make_component(model)
        issue = await make_issue(model, root.id, caller=ALICE)
        alices = await change(model, issue, comment="from alice", caller=ALICE)
        bobs = await change(model, alices.issue, comment="from bob", caller=BOB)
        await edit(model, bobs.issue, alices.entry.version, "from alice, corrected")
        assert await search_ids(model, within(root.id, eq(F.LAST_COMMENTER, BOB.user_id))) == [
            issue.id
        ]
        assert await search_ids(model, within(root.id, eq(F.LAST_COMMENTER, ALICE.user_id))) == []

    async def test_a_redacted_comment_was_still_written_by_its_author(
        self, model: v1.ModelStub
    ) -> None:
        """Redaction removes a comment's text, not the fact that its author wrote it.

        The entry keeps its author, ``has:commenter`` and the comment count
        keep counting it, and so do ``commenter:`` and ``lastcommenter:``.
        """
        root = await make_component(model)
        issue = await make_issue(model, root.id, caller=ALICE)
        alices = await change(model, issue, comment="from alice", caller=ALICE)
        bobs = await change(model, alices.issue, comment="my token is hunter2", caller=BOB)
        await redact(model, issue.id, v1.RedactionTarget.COMMENT, entry_version=bobs.entry.version)
        for field in (F.COMMENTER, F.LAST_COMMENTER):
            assert await search_ids(model, within(root.id, eq(field, BOB.user_id))) == [issue.id], (
                field
            )
        assert await search_ids(model, within(root.id, eq(F.LAST_COMMENTER, ALICE.user_id))) == []
        assert await search_ids(model, within(root.id, term(F.COMMENTER, Op.ANY))) == [issue.id]

    async def test_a_description_is_the_first_comment(self, model: v1.ModelStub) -> None:
        """An issue filed with a description has a comment: the description, by its reporter.

        As in Google Issue Tracker, where the description is comment #1:
        ``comment_count`` counts it, the reporter who wrote it is a
        ``commenter:`` and the ``lastcommenter:`` until someone comments, and
        the issue has a commenter (``has:commenter``) and is no
        ``commenter:none``. An issue filed without one has no commenter.
        """
        root = await make_component(model)
        described = await make_issue(model, root.id, caller=ALICE, description="steps")
        bare = await make_issue(model, root.id, caller=ALICE)
        assert (described.comment_count, bare.comment_count) == (1, 0)
        for field in (F.COMMENTER, F.LAST_COMMENTER):
            assert await search_ids(model, within(root.id, eq(field, ALICE.user_id))) == [
                described.id
            ], field
        assert await search_ids(model, within(root.id, term(F.COMMENTER, Op.ANY))) == [described.id]
        assert await search_ids(model, within(root.id, term(F.COMMENTER, Op.NONE))) == [bare.id]
        await change(model, described, comment="seen it too", caller=BOB)
        assert await search_ids(model, within(root.id, eq(F.LAST_COMMENTER, BOB.user_id))) == [
            described.id
        ]
        assert await search_ids(model, within(root.id, eq(F.COMMENTER, ALICE.user_id))) == [
            described.id
        ]

    async def test_parent_with_transitive_children(self, model: v1.ModelStub) -> None:
        root = await make_component(model)
        top = await make_issue(model, root.id)
        child = await make_issue(model, root.id, parent_id=top.id)
        grandchild = await make_issue(model, root.id, parent_id=child.id)
        await make_issue(model, root.id)
        direct = eq(F.PARENT, top.id)
        assert await search_ids(model, within(root.id, direct)) == [child.id]
        transitive = term(F.PARENT, Op.EQ, top.id, include_subtree=True)
        assert await search_ids(model, within(root.id, transitive)) == [grandchild.id, child.id]

    async def test_mentions_in_the_title_description_and_current_comments(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        ann, bob, carol = unique("ann"), unique("bob"), unique("carol")

        async def mentioning(name: str) -> list[int]:
            return await search_ids(model, within(root.id, eq(F.MENTION, name)))

        titled = await make_issue(model, root.id, title=f"ask @{ann} first")
        described = await make_issue(model, root.id, description=f"cc @{ann}.")
        mailed = await make_issue(model, root.id, description=f"mail {ann}@x.example, me@{ann}.x")
        commented = await make_issue(model, root.id)
        said = await change(model, commented, comment=f"@{ann.upper()} and @{carol}, look")
        assert await mentioning(ann) == [commented.id, described.id, titled.id]
        assert mailed.id not in await mentioning(ann)
        # Edits count with their latest text; a redaction mentions nobody.
        await edit(model, commented, said.entry.version, f"only @{bob} now")
        assert await mentioning(ann) == [described.id, titled.id]
        assert await mentioning(carol) == []
        assert await mentioning(bob) == [commented.id]
        await redact(model, described.id, v1.RedactionTarget.DESCRIPTION)
        assert await mentioning(ann) == [titled.id]
        # A new title is read again; a later comment adds its mentions.
        current = await make_issue(model, root.id, title=f"@{carol} first")
        await change(model, titled, delta(title="nobody named"), comment=f"hi @{carol}")
        assert await mentioning(ann) == []
        assert await mentioning(carol) == [current.id, titled.id]
        either = eq(F.MENTION, bob, carol)
        assert await search_ids(model, within(root.id, either)) == [
            current.id,
            commented.id,
            titled.id,
        ]
        nobody = within(root.id, term(F.MENTION, Op.NONE))
        assert await search_ids(model, nobody) == [mailed.id, described.id]
        assert await search_ids(model, within(root.id, term(F.MENTION, Op.ANY))) == [
            current.id,
            commented.id,
            titled.id,
        ]

    async def test_mentions_of_any_script_are_found_by_any_spelling(
        self, model: v1.ModelStub
    ) -> None:
        """Mentions of "Ölaf" composed, decomposed and lower-case are one person's."""
        root = await make_component(model)
        olaf, jose = unique("Ölaf"), unique("josé")
        described = await make_issue(model, root.id, description=f"ask @{olaf}, please")
        commented = await make_issue(model, root.id)
        decomposed = unicodedata.normalize("NFD", olaf.upper())
        await change(model, commented, comment=f"(@{decomposed}) and @{jose}.")
        mailed = await make_issue(model, root.id, description=f"mail {jose}@example.com")
        for spelling in (olaf, olaf.lower(), decomposed, unicodedata.normalize("NFD", olaf)):
            found = await search_ids(model, within(root.id, eq(F.MENTION, spelling)))
            assert found == [commented.id, described.id], spelling
        # Not "jos" (an ASCII grammar's prefix), and not from an e-mail address.
        assert await search_ids(model, within(root.id, eq(F.MENTION, jose))) == [commented.id]
        assert await search_ids(model, within(root.id, eq(F.MENTION, jose[:3]))) == []
        assert mailed.id not in await search_ids(model, within(root.id, term(F.MENTION, Op.ANY)))

    @settings(
        max_examples=15,
        deadline=None,
        # differing_executors: each backend runs this through its own subclass.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(name=usernames(max_inner=12))
    # Emphasis once cut this name ("_0_" beside "."), so "@0._0_.0" mentioned "0".
    @example(name="0._0_.0")
    async def test_every_username_written_is_found_by_its_spellings(
        self, model: v1.ModelStub, name: str
    ) -> None:
        root = await make_component(model)
        issue = await make_issue(model, root.id, title=f"for @{name}.")
        await make_issue(model, root.id, description=f"not {name}, nor x@{name}")
        nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
        for spelling in {name, nfc, nfd, username_key(name)}:
            found = await search_ids(model, within(root.id, eq(F.MENTION, spelling)))
            assert found == [issue.id], spelling
