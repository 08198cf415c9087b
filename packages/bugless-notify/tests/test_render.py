from __future__ import annotations

import dataclasses
import json

import pytest
from notify_support import PUBLIC_URL, notice, sample_entry, sample_issue

from bugless_core.notification_channel import NotificationMessage
from bugless_notify.reasons import message_subject
from bugless_notify.render import (
    ChangeNotice,
    Person,
    Reason,
    render_notification,
)
from bugless_proto import v1


def test_subject_names_the_issue_and_its_title_on_one_line() -> None:
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(title="Disk full\non /var"),
            entry=sample_entry(),
            reason=Reason.CC,
            public_url=PUBLIC_URL,
        )
    )
    assert message.subject == "[bugless] b/123: Disk full on /var"
    assert message.thread_id == "issue-123"


def test_text_shows_each_changed_field_old_to_new_with_timeline_labels() -> None:
    text = render_notification(notice()).text
    assert "Alice Smith changed b/123: Disk full on /var" in text
    assert "  Status: New → Assigned" in text
    assert "  Priority: P2 → P1" in text
    assert "  Assignee: none → Bob Jones" in text
    assert "  CC: + Carol White, \u2212 Bob Jones" in text
    assert "Comment:\n\n  Moved to P1." in text


def test_every_form_links_to_the_issue_page() -> None:
    message = render_notification(notice())
    url = f"{PUBLIC_URL}/issues/123"
    # A mail opens the change on the page (the timeline entry's anchor), not
    # the top of the issue; chat and webhook payloads link the issue.
    assert f"\n{url}#entry-4\n" in message.text
    assert f'href="{url}#entry-4"' in message.html
    assert f'<a href="{url}#entry-4">Open b/123</a>' in message.html
    # The issue's own page only where its Mute button is what is meant.
    assert message.html.count(f'href="{url}"') == 1
    assert f'Mute on <a href="{url}">its page</a>' in message.html
    assert f"<{url}|b/123: Disk full on /var>" in message.chat_text
    assert message.data["issue"]["url"] == url
    base = notice()
    created = render_notification(
        dataclasses.replace(base, entry=dataclasses.replace(base.entry, version=1))
    )
    assert f"\n{url}\n" in created.text
    assert "#entry-" not in created.text + created.html


def test_every_mail_form_says_where_to_change_what_notifies_you() -> None:
    message = render_notification(notice())
    page = f"{PUBLIC_URL}/settings/notifications"
    assert message.settings_url == page
    assert f"Change what notifies you: {page}" in message.text
    assert f'<a href="{page}">Change what notifies you</a>' in message.html


def test_every_mail_form_says_how_to_stop_mail_about_its_issue() -> None:
    """Muting an issue stops its mail whatever the reason (CC, a subscription, a star).

    Before, a mail led only to the settings page, which lists saved searches
    and stars but not the issues one is CC'd on or assigned: someone CC'd
    had no word on how to stop one issue's mail (walk26).
    """
    message = render_notification(notice())
    issue = f"{PUBLIC_URL}/issues/{notice().issue.id}"
    ref = f"b/{notice().issue.id}"
    assert f"To stop mail about {ref}, press Mute on its page: {issue}\n" in message.text
    assert f'To stop mail about {ref}, press Mute on <a href="{issue}">its page</a>.' in (
        message.html
    )
    # A queued delivery keeps it (to_json/from_json), and one queued before it
    # existed reads back without it.
    kept = NotificationMessage.from_json(json.loads(json.dumps(message.to_json())))
    assert kept == message
    old = {k: v for k, v in message.to_json().items() if k != "settings_url"}
    assert NotificationMessage.from_json(old).settings_url == ""


def test_a_mails_foot_offers_its_one_click_link_beside_the_mute_button() -> None:
    """The link the mail's List-Unsubscribe names mutes what the foot says Mute does: this issue."""
    base = notice()
    link = f"{PUBLIC_URL}/unsubscribe/eyJ0.eyJ1.c2ln"
    message = render_notification(dataclasses.replace(base, unsubscribe_url=link))
    assert (
        f"press Mute on its page: {PUBLIC_URL}/issues/123\nor mute it with this link: {link}\n"
        in (message.text)
    )
    assert f'or <a href="{link}">with this link</a>.' in message.html
    assert message.unsubscribe_url == link
    assert NotificationMessage.from_json(message.to_json()) == message
    plain = render_notification(base)
    assert "with this link" not in plain.text
    assert "with this link" not in plain.html
    assert plain.unsubscribe_url == ""


def test_the_reason_is_said_in_words_and_given_as_a_key() -> None:
    message = render_notification(notice(reason=Reason.SAVED_SEARCH, saved_search="P0 storage"))
    assert "You receive this because you subscribed to a saved search (P0 storage)." in message.text
    assert message.reason == "saved_search"
    assert message.data["reason"] == "saved_search"


def test_what_the_reason_refers_to_is_kept_in_a_field_of_its_own_kind() -> None:
    """A saved search's name and a subscribed component's id are two fields, not one string.

    ``reason_detail`` held either, told apart only by the reason: a search
    named "3" read the same as component 3. The message keeps each in its
    own field, and ``reason_detail`` as before for notifiers of the
    earlier release reading the queue during a rollout.
    """
    search = render_notification(notice(reason=Reason.SAVED_SEARCH, saved_search="3"))
    assert (search.saved_search, search.subscribed_component_id) == ("3", 0)
    component = render_notification(notice(reason=Reason.COMPONENT, subscribed_component_id=3))
    assert (component.saved_search, component.subscribed_component_id) == ("", 3)
    assert (search.reason_detail, component.reason_detail) == ("3", "3")
    assert search.data["reason_detail"] == component.data["reason_detail"] == "3"
    for message in (search, component):
        again = NotificationMessage.from_json(json.loads(json.dumps(message.to_json())))
        assert again == message
        assert message_subject(again) == (message.saved_search, message.subscribed_component_id)
    # A message an earlier notifier queued has only reason_detail: read by its reason.
    for message, subject in ((search, ("3", 0)), (component, ("", 3))):
        stored = message.to_json()
        del stored["saved_search"], stored["subscribed_component_id"]
        assert message_subject(NotificationMessage.from_json(stored)) == subject
    # What the mail says is what it said.
    assert "you subscribed to a saved search (3)." in search.text
    assert (
        "you subscribed to its component, Platform>Storage."
        in render_notification(notice(reason=Reason.COMPONENT, subscribed_component_id=7)).text
    )


def test_a_creation_lists_the_fields_it_set_and_the_description() -> None:
    entry = v1.HistoryEntry(
        issue_id=9,
        version=1,
        author="u_alice",
        comment="It broke.",
        changes=[
            v1.FieldChange(field="title", old_value="", new_value="It broke"),
            v1.FieldChange(field="status", old_value="", new_value="NEW"),
            v1.FieldChange(field="verifier", old_value="", new_value=""),
            v1.FieldChange(field="component_id", old_value="", new_value="7"),
        ],
    )
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(9, "It broke"),
            entry=entry,
            reason=Reason.COMPONENT,
            public_url=PUBLIC_URL,
            people={"u_alice": Person("Alice Smith")},
            components={7: "Platform>Storage"},
        )
    )
    assert "Alice Smith created b/9: It broke" in message.text
    assert "  Status: New\n" in message.text
    assert "  Component: Platform>Storage\n" in message.text
    assert "Verifier" not in message.text
    assert "Description:\n\n  It broke." in message.text
    assert message.data["event"] == "issue.created"


def test_a_component_subscription_names_the_component_it_is_on() -> None:
    """An ancestor's subscription says which: "its component" left the reader guessing.

    The subscribed component's id is named from the paths the
    recipient may see; without it (an older Model) or without its path
    (a component hidden from the recipient), the general wording.
    """
    paths = {3: "Infra<&>", 7: "Infra<&>>Net"}

    def reason(subscribed: int, components: dict[int, str]) -> tuple[str, str]:
        message = render_notification(
            ChangeNotice(
                issue=sample_issue(),
                entry=sample_entry(),
                reason=Reason.COMPONENT,
                subscribed_component_id=subscribed,
                public_url=PUBLIC_URL,
                components=components,
            )
        )
        text = message.text[message.text.index("You receive this because ") :]
        return text.splitlines()[0], message.html

    issue = sample_issue()
    assert issue.component_id == 7
    text, html = reason(3, paths)
    assert (
        text
        == "You receive this because you subscribed to Infra<&> (this issue is in Infra<&>>Net)."
    )
    assert (
        "you subscribed to Infra&lt;&amp;&gt; (this issue is in Infra&lt;&amp;&gt;&gt;Net)." in html
    )
    assert reason(7, paths)[0] == (
        "You receive this because you subscribed to its component, Infra<&>>Net."
    )
    assert reason(3, {3: "Infra<&>"})[0] == (
        "You receive this because you subscribed to Infra<&>, which holds its component."
    )
    for subscribed, components in ((0, paths), (3, {7: "Infra<&>>Net"}), (9, paths)):
        assert reason(subscribed, components)[0] == (
            "You receive this because you subscribed to its component."
        ), subscribed


def test_a_person_the_caller_did_not_resolve_is_unknown_never_an_opaque_id() -> None:
    entry = sample_entry()
    entry.author = "u_secret_id"
    message = render_notification(
        ChangeNotice(issue=sample_issue(), entry=entry, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    for form in (message.text, message.html, message.chat_text, json.dumps(message.data)):
        assert "u_secret_id" not in form
        assert "u_bob" not in form
    assert "unknown user changed" in message.text


def test_only_the_changes_the_caller_passes_are_shown() -> None:
    entry = sample_entry()
    entry.changes = [c for c in entry.changes if c.field != "priority"]
    message = render_notification(
        ChangeNotice(issue=sample_issue(), entry=entry, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert "Priority" not in message.text
    assert "Priority" not in message.html
    assert all(change["field"] != "priority" for change in message.data["entry"]["changes"])


def test_components_hotlists_and_issues_are_named_and_linked() -> None:
    entry = v1.HistoryEntry(
        issue_id=123,
        version=5,
        author="u_alice",
        changes=[
            v1.FieldChange(field="component_id", old_value="7", new_value="8"),
            v1.FieldChange(field="hotlist_ids", added=["3"], removed=["4"]),
            v1.FieldChange(field="blocking_ids", added=["45"]),
        ],
    )
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(),
            entry=entry,
            reason=Reason.STARRED,
            public_url=PUBLIC_URL + "/",
            people={"u_alice": Person("Alice Smith")},
            components={7: "Platform>Storage", 8: "Platform>Network"},
            hotlists={3: "Launch blockers"},
        )
    )
    assert "  Component: Platform>Storage → Platform>Network" in message.text
    assert "  Hotlists: + Launch blockers, \u2212 hotlist 4" in message.text
    assert "  Blocking: + b/45" in message.text
    assert f'href="{PUBLIC_URL}/components/8"' in message.html
    assert f'href="{PUBLIC_URL}/hotlists/3"' in message.html
    assert f'href="{PUBLIC_URL}/issues/45"' in message.html


def test_json_form_carries_the_structured_diff_and_no_email_addresses() -> None:
    data = render_notification(notice()).data
    assert data["event"] == "issue.changed"
    assert data["issue"]["id"] == 123
    assert data["issue"]["status"] == "Assigned"
    assert data["issue"]["component"] == {"id": 7, "path": "Platform>Storage"}
    assert data["issue"]["assignee"] == {"name": "Bob Jones", "username": "bob"}
    changes = data["entry"]["changes"]
    assert changes[0] == {"field": "status", "label": "Status", "old": "NEW", "new": "ASSIGNED"}
    assert changes[3]["added"] == [{"name": "Carol White", "username": "carol"}]
    assert data["entry"]["created_at"] == "2026-03-01T12:30:00Z"
    assert "@" not in json.dumps(data)
    json.dumps(data)  # serialisable as it is


def test_a_comment_only_entry_is_a_comment_event() -> None:
    entry = v1.HistoryEntry(issue_id=123, version=6, author="u_bob", comment="Any news?")
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(),
            entry=entry,
            reason=Reason.REPORTER,
            public_url=PUBLIC_URL,
            people={"u_bob": Person("Bob Jones")},
        )
    )
    assert "Bob Jones commented on b/123" in message.text
    assert message.data["event"] == "issue.commented"


@pytest.mark.parametrize(
    ("target", "event", "redaction"),
    [
        (v1.RedactionTarget.COMMENT, "issue.comment_redacted", {"target": "comment", "version": 4}),
        (
            v1.RedactionTarget.DESCRIPTION,
            "issue.description_redacted",
            {"target": "description", "version": 1},
        ),
        (
            v1.RedactionTarget.ATTACHMENT,
            "issue.attachment_redacted",
            {"target": "attachment", "attachment_id": 9},
        ),
        (
            v1.RedactionTarget.ATTACHMENT_DESCRIPTION,
            "issue.attachment_description_redacted",
            {"target": "attachment_description", "attachment_id": 9},
        ),
    ],
)
def test_a_redaction_is_its_own_event_and_says_what_went_without_any_text(
    target: v1.RedactionTarget, event: str, redaction: dict[str, object]
) -> None:
    entry = v1.HistoryEntry(
        issue_id=123,
        version=8,
        author="u_bob",
        redaction_target=target,
        redacted_version=int(str(redaction.get("version", 0))),
        redacted_attachment_id=int(str(redaction.get("attachment_id", 0))),
    )
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(), entry=entry, reason=Reason.WEBHOOK, public_url=PUBLIC_URL
        )
    )
    assert message.data["event"] == event
    assert message.data["entry"]["redaction"] == redaction
    assert message.data["entry"]["comment"] == ""
    assert message.quoted_versions == ()
    # Every other entry says it is none.
    commented = render_notification(notice())
    assert commented.data["entry"]["redaction"] is None
    assert commented.data["entry"]["comment_redacted"] is False


def test_an_entry_caused_by_another_issue_says_so() -> None:
    entry = v1.HistoryEntry(
        issue_id=123,
        version=7,
        author="u_bob",
        caused_by_issue_id=45,
        changes=[v1.FieldChange(field="blocked_by_ids", added=["45"])],
    )
    message = render_notification(
        ChangeNotice(issue=sample_issue(), entry=entry, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert "changed through b/45 b/123" in message.text
    assert message.data["entry"]["caused_by_issue_id"] == 45


def test_custom_fields_read_by_name_and_user_fields_as_people() -> None:
    entry = sample_entry()
    entry.changes = [
        v1.FieldChange(
            field="customfield7",
            field_name="Reviewer",
            field_type=v1.CustomFieldType.USER,
            old_value="",
            new_value="u_bob",
        ),
        v1.FieldChange(
            field="customfield8",
            field_name="Found In",
            field_type=v1.CustomFieldType.ENUM,
            old_value="4.1",
            new_value="4.2",
        ),
    ]
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(),
            entry=entry,
            reason=Reason.CC,
            public_url=PUBLIC_URL,
            people={"u_bob": Person("Bob Jones")},
        )
    )
    assert "  Reviewer: none → Bob Jones" in message.text
    assert "  Found In: 4.1 → 4.2" in message.text
    assert "u_bob" not in message.text


def test_an_email_rendering_leaves_out_only_the_webhook_forms() -> None:
    notified = ChangeNotice(
        issue=sample_issue(), entry=sample_entry(), reason=Reason.CC, public_url=PUBLIC_URL
    )
    full = render_notification(notified)
    mail = render_notification(notified, webhook_forms=False)
    assert (mail.subject, mail.text, mail.html, mail.thread_id, mail.reason) == (
        full.subject,
        full.text,
        full.html,
        full.thread_id,
        full.reason,
    )
    assert full.chat_text
    assert full.data
    assert (mail.chat_text, dict(mail.data)) == ("", {})


def test_files_attached_are_named_with_their_size_and_deleted_ones_by_name() -> None:
    entry = sample_entry()
    entry.changes = []
    entry.comment = ""
    entry.attachments = [
        v1.Attachment(id=7, name="crash\nreport.log", size=2048, content_type="text/plain"),
        v1.Attachment(id=8, name="<b>shot</b>.png", size=3 * 1024 * 1024, content_type="image/png"),
    ]
    message = render_notification(
        ChangeNotice(issue=sample_issue(), entry=entry, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert "attached files to b/123" in message.text
    assert "  Attached: crash report.log (2 KiB)" in message.text
    # A chat channel is told which files too, escaped as the rest of its text.
    assert (
        "Attached: crash report.log (2 KiB); Attached: &lt;b&gt;shot&lt;/b&gt;.png (3 MiB)"
        in message.chat_text.splitlines()
    )
    assert "Attached: &lt;b&gt;shot&lt;/b&gt;.png (3 MiB)" in message.html
    # A webhook receiver is told the files by id and name, as stored, with
    # their type and the web's download link (the name quoted, last).
    files = [
        {
            "id": 7,
            "name": "crash\nreport.log",
            "size": 2048,
            "content_type": "text/plain",
            "url": f"{PUBLIC_URL}/attachments/7/crash%0Areport.log",
        },
        {
            "id": 8,
            "name": "<b>shot</b>.png",
            "size": 3 * 1024 * 1024,
            "content_type": "image/png",
            "url": f"{PUBLIC_URL}/attachments/8/%3Cb%3Eshot%3C%2Fb%3E.png",
        },
    ]
    assert message.data["entry"]["attachments"] == files
    assert message.data["entry"]["deleted_attachment"] is None
    # Its own event: a receiver of issue.commented is not handed an empty comment.
    assert message.data["event"] == "issue.attachment_added"
    # With a comment, the comment is the news: issue.commented, the files listed
    # (and a comment redacted since was one); with field changes, issue.changed.
    for comment, redacted, changes, event in (
        ("Logs attached.", False, [], "issue.commented"),
        ("", True, [], "issue.commented"),
        ("", False, sample_entry().changes, "issue.changed"),
    ):
        said = dataclasses.replace(
            entry, comment=comment, comment_redacted=redacted, changes=changes
        )
        rendered = render_notification(
            ChangeNotice(issue=sample_issue(), entry=said, reason=Reason.CC, public_url=PUBLIC_URL)
        )
        assert (rendered.data["event"], rendered.data["entry"]["attachments"]) == (event, files)
    # A notifier that knows no web base URL gives no link.
    unlinked = render_notification(
        ChangeNotice(issue=sample_issue(), entry=entry, reason=Reason.CC, public_url="")
    )
    assert [f["url"] for f in unlinked.data["entry"]["attachments"]] == [None, None]
    # Nor for a file deleted, or its content redacted, before the payload was
    # made (a delivery retried later): there is nothing to download.
    removed = dataclasses.replace(
        entry,
        attachments=[
            dataclasses.replace(entry.attachments[0], deleted_in_version=9),
            dataclasses.replace(entry.attachments[1], redacted=True),
        ],
    )
    late = render_notification(
        ChangeNotice(issue=sample_issue(), entry=removed, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert [f["url"] for f in late.data["entry"]["attachments"]] == [None, None]
    assert [f["name"] for f in late.data["entry"]["attachments"]] == [f["name"] for f in files]
    deleted = sample_entry()
    deleted.changes = []
    deleted.comment = ""
    deleted.deleted_attachment_id = 7
    deleted.deleted_attachment_name = "crash\nreport.log"
    gone = render_notification(
        ChangeNotice(issue=sample_issue(), entry=deleted, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert "deleted an attachment of b/123" in gone.text
    assert "  Deleted attachment crash report.log" in gone.text
    assert gone.chat_text.splitlines()[1:] == ["Deleted attachment crash report.log"]
    assert gone.data["entry"]["deleted_attachment"] == {"id": 7, "name": "crash\nreport.log"}
    assert gone.data["entry"]["attachments"] == []
    # Its own event: a receiver of issue.commented is not handed an empty comment.
    assert gone.data["event"] == "issue.attachment_deleted"
    # A Model older than deleted_attachment_name says only the id.
    deleted.deleted_attachment_name = ""
    old = render_notification(
        ChangeNotice(issue=sample_issue(), entry=deleted, reason=Reason.CC, public_url=PUBLIC_URL)
    )
    assert "  Deleted attachment 7" in old.text
    assert "Deleted attachment 7" in old.html
    assert old.data["entry"]["deleted_attachment"] == {"id": 7, "name": None}


def test_a_comment_only_mail_has_one_blank_line_before_comment() -> None:
    """A change that only comments has no field lines between the heading and "Comment:".

    Before, the heading's blank line and the comment's own made two.
    """
    base = notice()
    entry = dataclasses.replace(base.entry, changes=[])
    text = render_notification(dataclasses.replace(base, entry=entry)).text
    assert text.startswith(
        "Alice Smith commented on b/123: Disk full on /var\n\nComment:\n\n  Moved to P1.\n"
    )
    # With field lines, one blank line still separates them from the comment.
    assert "  CC: + Carol White, \u2212 Bob Jones\n\nComment:\n\n" in render_notification(base).text


def test_a_saved_search_mail_says_how_to_unsubscribe_from_the_search() -> None:
    """Muting an issue stops one issue; the search keeps mailing its other matches.

    Before, such a mail offered only Mute, so the way to stop the search's
    mail (unsubscribing on the saved searches page) went unsaid.
    """
    searches = f"{PUBLIC_URL}/searches"
    message = render_notification(notice(reason=Reason.SAVED_SEARCH, saved_search="P1 in Storage"))
    assert "you subscribed to a saved search (P1 in Storage)." in message.text
    assert f"To stop mail from the search, unsubscribe from it: {searches}\n" in message.text
    assert f'To stop mail from the search, <a href="{searches}">unsubscribe from it</a>.' in (
        message.html
    )
    other = render_notification(notice(reason=Reason.CC))
    assert searches not in other.text + other.html


def test_an_edit_reads_as_an_edit_of_the_comment_or_the_description() -> None:
    """An edit is the new text of an earlier entry's, not a new comment.

    Before, bob's edit of his comment read "Bob Jones commented on b/123",
    and alice's edit of the description quoted it under "Comment:".
    """
    base = notice()

    def edit(of: int) -> NotificationMessage:
        entry = dataclasses.replace(base.entry, changes=[], edits_version=of, comment="@carol new")
        return render_notification(dataclasses.replace(base, entry=entry))

    comment = edit(3)
    assert comment.text.startswith("Alice Smith edited a comment on b/123: Disk full on /var\n")
    assert "\nComment:\n\n  @carol new\n" in comment.text
    assert "</b> edited a comment on <a" in comment.html
    description = edit(1)
    assert description.text.startswith(
        "Alice Smith edited the description of b/123: Disk full on /var\n"
    )
    assert "\nDescription:\n\n  @carol new\n" in description.text
    assert "<p><b>Description</b></p>" in description.html
    assert "edited the description of it" in description.chat_text
