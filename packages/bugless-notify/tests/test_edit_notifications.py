"""Who hears of an edit: the people it newly ``@mentions``, and no one else.

GitHub and GitLab mail an edited comment only to those the edit newly
mentions; the notifier mailed everyone a comment reaches (the assignee, CC,
the people mentioned before) for every typo fixed. The rule itself is unit
tested on :func:`bugless_notify.recipients.candidates`; here a real notifier
process reads a real Model's feed (the Model gives each edit the text it
replaced) and mails an SMTP sink.
"""

from __future__ import annotations

from collections import Counter

from notifier_process_support import People, addr, recipients, settle

from bugless_dev.stack import RunningService
from bugless_notify.recipients import Candidate, candidates, mentioned_usernames_of
from bugless_notify.render import Reason
from bugless_proto import v1
from bugless_testing.smtp import ReceivedMail, SmtpSink


def _plain(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_an_edit_mails_only_the_people_it_newly_mentions(
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    tag, ids = people.ids["_tag"], people.ids
    component = await model.create_component(
        v1.CreateComponentRequest(caller=v1.Caller(user_id="test-admin", admin=True), name=tag)
    )
    alice = people.caller("alice")
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=alice,
            fields=v1.IssueFields(
                title="Flaky DNS", component_id=component.id, assignee=ids["dave"]
            ),
            cc=[ids["frank"]],
        )
    )
    await settle(smtp_sink, 2)
    smtp_sink.clear()
    said = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice,
            issue_id=issue.id,
            expected_version=issue.version,
            comment=f"@carol{tag} please look",
        )
    )
    assert said.entry is not None
    commented = await settle(smtp_sink, 3)
    assert recipients(commented) == Counter(addr(people, n) for n in ("dave", "frank", "carol"))
    smtp_sink.clear()

    async def edit(text: str, version: int) -> int:
        done = await model.edit_comment(
            v1.EditCommentRequest(
                caller=alice,
                issue_id=issue.id,
                expected_version=version,
                entry_version=said.entry.version if said.entry else 0,
                comment=text,
            )
        )
        assert done.issue is not None
        return done.issue.version

    version = await edit(f"@carol{tag} please look, and @bob{tag} too", issue.version + 1)
    edited = await settle(smtp_sink, 1)
    assert recipients(edited) == Counter([addr(people, "bob")]), (
        "only bob, whom the edit newly mentions: not carol (mentioned before), "
        "not the assignee or CC"
    )
    assert edited[0].message["X-Bugless-Reason"] == "mentioned"
    assert "edited a comment on" in _plain(edited[0])
    smtp_sink.clear()
    # Rewording mentions no one new: no mail. The next comment's mails,
    # which the notifier reads after the edit (commit order per issue),
    # show that nothing came before them.
    version = await edit(f"@carol{tag} please look, and @bob{tag} as well", version)
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice, issue_id=issue.id, expected_version=version, comment="any news?"
        )
    )
    after = await settle(smtp_sink, 2)
    assert recipients(after) == Counter(addr(people, n) for n in ("dave", "frank"))
    assert not [m for m in after if "edited a comment on" in _plain(m)]


def _issue() -> v1.Issue:
    return v1.Issue(
        id=5, version=6, title="t", reporter="u_alice", assignee="u_dave", cc=["u_frank"]
    )


def _edit(comment: str, replaced: str | None, *, redacted: bool = False) -> v1.HistoryEntry:
    return v1.HistoryEntry(
        issue_id=5,
        version=6,
        author="u_alice",
        comment=comment,
        edits_version=2,
        replaced_comment=replaced,
        comment_redacted=redacted,
    )


AUDIENCE = v1.IssueAudience(
    issue_id=5, starred_by=["u_star"], component_subscribers=["u_sub"], muted_by=[]
)


def test_an_edit_adding_a_mention_names_only_that_person() -> None:
    entry = _edit("@carol please look, and @Bob too", "@carol please look")
    assert mentioned_usernames_of(_issue(), entry) == ["bob"]
    assert candidates(_issue(), entry, AUDIENCE, ["u_bob"]) == [
        Candidate("u_bob", Reason.MENTIONED)
    ]


def test_an_edit_changing_wording_only_names_nobody() -> None:
    entry = _edit("@carol please look at this", "@carol please look")
    assert mentioned_usernames_of(_issue(), entry) == []
    assert candidates(_issue(), entry, AUDIENCE, []) == []


def test_an_edit_a_redaction_blanked_names_nobody() -> None:
    """The Model blanks an edit's text and the text it replaced when it redacts the comment."""
    entry = _edit("", "", redacted=True)
    assert mentioned_usernames_of(_issue(), entry) == []
    assert candidates(_issue(), entry, AUDIENCE, []) == []


def test_an_edit_still_carries_the_batch_saved_search_notices() -> None:
    """Saved-search changes go with a batch's first entry, which may be an edit."""
    entry = _edit("reworded", "worded")
    assert candidates(_issue(), entry, AUDIENCE, [], [("u_sam", "P0s")]) == [
        Candidate("u_sam", Reason.SAVED_SEARCH, "P0s")
    ]


def test_an_edit_from_an_older_model_goes_to_whoever_a_comment_reaches() -> None:
    """Without the replaced text (a Model older than the field), the rule before it."""
    entry = _edit("@carol please look, and @bob too", None)
    assert mentioned_usernames_of(_issue(), entry) == ["carol", "bob"]
    named = candidates(_issue(), entry, AUDIENCE, ["u_carol", "u_bob"])
    assert [(c.user_id, c.reason) for c in named] == [
        ("u_carol", Reason.MENTIONED),
        ("u_bob", Reason.MENTIONED),
        ("u_dave", Reason.ASSIGNEE),
        ("u_alice", Reason.REPORTER),
        ("u_frank", Reason.CC),
        ("u_star", Reason.STARRED),
        ("u_sub", Reason.COMPONENT),
    ]
