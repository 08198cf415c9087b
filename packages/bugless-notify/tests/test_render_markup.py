"""A comment's markup and people's values in each form of a notification.

They come out as text, never markup; links are made absolute only outside code.
"""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st
from notify_support import PUBLIC_URL, notice, sample_entry, sample_issue

from bugless_core.markdown import markdown_parser
from bugless_notify.render import (
    ChangeNotice,
    Person,
    Reason,
    render_notification,
    with_site_links,
)
from bugless_proto import v1


def test_a_comments_mentions_are_its_text_in_every_form_never_a_link() -> None:
    """A mail has no dead person link either: ``@name`` is shown as typed, known or not.

    The web links the mentions of people who exist (bugless_web.markup.render_text);
    a notification shows the comment as text, so no form can link a name nobody has.
    """
    base = notice()
    message = render_notification(
        ChangeNotice(
            issue=base.issue,
            entry=sample_entry(comment="ask @nosuch and @bob"),
            reason=Reason.MENTIONED,
            public_url=PUBLIC_URL,
            people=base.people,
        )
    )
    for form in (message.text, message.html, message.chat_text):
        assert "ask @nosuch and @bob" in form
        assert "/users/" not in form


def test_a_comments_links_into_bugless_open_from_a_mail() -> None:
    """The web writes a file dropped into a comment as ``[x.log](/attachments/3/x.log)``.

    That target is the site's own, relative: the issue page opens it, a mail
    client cannot (it has no site to resolve it against). A mail's forms give
    it the web's address; links elsewhere, and the JSON form's stored text, are
    left as written.
    """
    base = notice()
    comment = (
        '[engine.log](/attachments/3/engine.log) and [#1](/imported?id=trac%3A1 "old"), '
        "[docs](https://example.org/a) [proto](//cdn.example.org/x) `[a](/b)`"
    )
    message = render_notification(
        ChangeNotice(
            issue=base.issue,
            entry=sample_entry(comment=comment),
            reason=Reason.CC,
            public_url=PUBLIC_URL,
            people=base.people,
        )
    )
    absolute = (
        f"[engine.log]({PUBLIC_URL}/attachments/3/engine.log) and "
        f'[#1]({PUBLIC_URL}/imported?id=trac%3A1 "old"), '
        "[docs](https://example.org/a) [proto](//cdn.example.org/x)"
    )
    assert absolute in message.text
    assert "`[a](/b)`" in message.text, "code is shown as typed"
    assert absolute.replace('"', "&quot;") in message.html
    assert message.data["entry"]["comment"] == comment


def test_a_link_inside_code_is_left_as_typed_in_a_mail() -> None:
    """Code the issue page shows as code keeps its ``](/path`` as the author typed it.

    Before, only backtick fences and one-line spans were skipped: a ``~~~``
    fence, an indented block, a fence in a list item, or a span of two
    backticks had ``](/notes`` made ``](https://bugs.example.com/notes``,
    so the mail quoted code the author never wrote. A backslash-escaped
    backtick is text, not the start of code.
    """
    code = "[x](/notes)"
    comment = "\n".join(
        [
            "See [engine.log](/attachments/3/engine.log).",
            "",
            "~~~",
            code,
            "~~~",
            "",
            f"    {code}",
            "",
            "- a step:",
            "",
            "  ```md",
            f"  {code}",
            "  ```",
            "",
            f"``{code} ` {code}`` and [after](/attachments/4/a.txt)",
            "",
            "A \\`-escaped backtick opens no code: [escaped](/attachments/5/b.txt) `x`",
            "",
            "```",
            f"{code} (a fence never closed runs to the end)",
        ]
    )
    base = notice()
    message = render_notification(
        ChangeNotice(
            issue=base.issue,
            entry=sample_entry(comment=comment),
            reason=Reason.CC,
            public_url=PUBLIC_URL,
            people=base.people,
        )
    )
    assert message.text.count(code) == 6
    assert f"({PUBLIC_URL}/notes)" not in message.text
    assert f"[engine.log]({PUBLIC_URL}/attachments/3/engine.log)" in message.text
    assert f"[after]({PUBLIC_URL}/attachments/4/a.txt)" in message.text
    assert f"[after]({PUBLIC_URL}/attachments/4/a.txt)" in message.html
    assert f"[escaped]({PUBLIC_URL}/attachments/5/b.txt)" in message.text
    assert f"({PUBLIC_URL}/notes)" not in message.html


_markup = st.text(alphabet=st.sampled_from("<>&\"'/= aiscrptonerhf"), min_size=1, max_size=40)
_RENDERER_TAGS = {"div", "p", "b", "a", "ul", "li", "del", "ins"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text += data


@given(title=_markup, comment=_markup, name=_markup)
def test_values_in_the_html_are_text_never_markup(title: str, comment: str, name: str) -> None:
    issue = sample_issue(title=title)
    entry = v1.HistoryEntry(issue_id=123, version=2, author="u_x", comment=comment)
    message = render_notification(
        ChangeNotice(
            issue=issue,
            entry=entry,
            reason=Reason.CC,
            public_url=PUBLIC_URL,
            people={"u_x": Person(name)},
        )
    )
    parsed = _Tags()
    parsed.feed(message.html)
    parsed.close()
    for tag, attrs in parsed.tags:
        assert tag in _RENDERER_TAGS
        for attr, value in attrs:
            assert attr in {"style", "href"}
            if attr == "href":
                assert value is not None
                assert value.startswith(PUBLIC_URL)
    assert comment in parsed.text
    assert name in parsed.text


@given(title=_markup)
def test_chat_text_escapes_what_slack_reads_as_markup(title: str) -> None:
    message = render_notification(
        ChangeNotice(
            issue=sample_issue(title=title),
            entry=sample_entry(comment=title),
            reason=Reason.CC,
            public_url=PUBLIC_URL,
        )
    )
    # The only angle brackets left are the link's own.
    link_free = message.chat_text.replace(f"<{PUBLIC_URL}/issues/123|", "", 1)
    link_free = link_free.replace(">", "", 1)
    assert "<" not in link_free
    assert ">" not in link_free.replace("> ", "")  # quote markers start comment lines


def test_a_backtick_after_an_escaped_backslash_opens_code_and_an_escaped_bracket_no_link() -> None:
    """Escapes are read as CommonMark reads them, one backslash and the character after it.

    ``\\\\`` is a backslash typed, so the backtick after it opens code and a
    ``](/path`` in that code is text the author wrote (a53c2175 took any
    backslash before a backtick for an escape of it); ``\\]`` is a bracket
    typed, so ``\\](/path)`` is no link to make absolute.
    """
    code = "[x](/notes)"
    text = f"a \\\\`{code}` b \\](/typed) c [after](/attachments/4/a.txt)"
    assert with_site_links(text, PUBLIC_URL) == (
        f"a \\\\`{code}` b \\](/typed) c [after]({PUBLIC_URL}/attachments/4/a.txt)"
    )
    shown = markdown_parser().render(text)
    assert "<code>[x](/notes)</code>" in shown
    assert 'href="/typed"' not in shown
