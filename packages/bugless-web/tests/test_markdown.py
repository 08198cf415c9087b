"""Markdown: bare URLs, issue references, task lists, and the preview endpoint."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from litestar.testing import AsyncTestClient
from web_support import sign_in
from xss_corpus import PAYLOADS, dangerous_markup

from bugless_core.mentions import mentioned_usernames
from bugless_core.usernames import username_key
from bugless_testing.usernames import markdown_texts
from bugless_web.markup import render_markdown, render_text

REL = 'rel="noopener noreferrer nofollow ugc"'


def test_bare_urls_become_links_but_file_names_stay_text() -> None:
    html = str(
        render_markdown("see https://example.com/a?b=1&c=2 and setup.py, mail ops@example.com")
    )
    assert (
        f'<a href="https://example.com/a?b=1&amp;c=2" {REL}>https://example.com/a?b=1&amp;c=2</a>'
        in html
    )
    assert 'href="mailto:ops@example.com"' in html
    assert "setup.py," in html
    assert 'href="http://setup.py"' not in html


def test_hash_and_b_slash_numbers_link_to_issues_outside_code_and_entities() -> None:
    html = str(
        render_markdown("dup of #123, see b/45 and issue 6; not `#7`, page#8, a/b/9 or it's")
    )
    assert f'<a href="/issues/123" {REL}>#123</a>' in html
    assert f'<a href="/issues/45" {REL}>b/45</a>' in html
    assert f'<a href="/issues/6" {REL}>issue 6</a>' in html
    assert "<code>#7</code>" in html
    assert "/issues/8" not in html
    assert "/issues/9" not in html
    # An escaped quote is an entity (&#39;) in the output: never an issue link.
    assert "/issues/39" not in str(render_markdown('it\'s "quoted" & <tagged>'))


def test_mentions_link_to_the_person_outside_code_links_and_addresses() -> None:
    html = str(
        render_markdown(
            "ask @ann.lee, cc @Bob; not `@code`, me@ann.example or [x](https://e.com/@z)"
        )
    )
    assert f'<a class="mention" href="/users/ann.lee" {REL}>@ann.lee</a>,' in html
    assert f'<a class="mention" href="/users/Bob" {REL}>@Bob</a>' in html
    assert "<code>@code</code>" in html
    assert "/users/ann.example" not in html
    assert "/users/z" not in html
    # Emphasis around a mention is prose; an entity is its character.
    html = str(render_markdown("_@ann_, **@Bob** and &#64;cy"))
    assert f'<em><a class="mention" href="/users/ann" {REL}>@ann</a></em>' in html
    assert f'<strong><a class="mention" href="/users/Bob" {REL}>@Bob</a></strong>' in html
    assert f'<a class="mention" href="/users/cy" {REL}>@cy</a>' in html
    # A hand-written link with the mention class is text, never markup.
    forged = str(render_markdown('<a class="mention" href="javascript:alert(1)">@x</a>'))
    assert "javascript:" not in forged.replace("&lt;", "").split("<a", 1)[-1]


def test_a_name_emphasis_could_cut_links_whole() -> None:
    """``@0._0_.0`` links the user ``0._0_.0``: its ``_0_`` beside "." is no emphasis.

    Before, CommonMark's emphasis cut it ("@0.<em>0</em>.0") and the page
    linked ``@0``; emphasis around a name still is emphasis.
    """
    html = str(render_markdown("for @0._0_.0. and _@a_b_.c_, **@d__e__-f**"))
    assert f'for <a class="mention" href="/users/0._0_.0" {REL}>@0._0_.0</a>. and' in html
    assert f'<em><a class="mention" href="/users/a_b_.c" {REL}>@a_b_.c</a></em>,' in html
    assert f'<strong><a class="mention" href="/users/d__e__-f" {REL}>@d__e__-f</a></strong>' in html


def test_task_lists_are_read_only_checkboxes() -> None:
    html = str(render_markdown("- [ ] write tests\n- [x] make them fail\n- plain item"))
    boxes = re.findall(r"<input[^>]*>", html)
    assert len(boxes) == 2
    assert all('type="checkbox"' in b and 'disabled="disabled"' in b for b in boxes)
    assert 'checked="checked"' not in boxes[0]
    assert 'checked="checked"' in boxes[1]
    assert "write tests" in html
    assert "<li>plain item</li>" in html


def test_a_page_links_only_the_mentions_of_people_it_was_told_exist() -> None:
    """Any case or normal form of a person's name stays a link; nobody's is muted text."""
    html = str(render_text("ask @O\u0308LAF, `@code` and @ghost.", {username_key("Ölaf")}))
    assert f'<a class="mention" href="/users/%C3%96LAF" {REL}>@O\u0308LAF</a>' in html
    assert '<span class="mention unknown" title="no such user">@ghost</span>.' in html
    assert "/users/ghost" not in html
    assert "<code>@code</code>" in html
    assert str(render_text("no one here", set())) == "<p>no one here</p>\n"


def test_task_list_output_stays_inert_for_the_xss_corpus() -> None:
    for payload in PAYLOADS:
        html = str(render_markdown(f"- [x] {payload}\n- [ ] <input type=text onfocus=alert(1)>"))
        assert dangerous_markup(html) == [], payload
        assert 'type="text"' not in html


async def test_preview_renders_the_draft_with_the_same_renderer(
    client: AsyncTestClient[Any],
) -> None:
    token = await sign_in(client, "bob")
    draft = "**bold** see #12\n\n- [x] done\n\n<script>alert(1)</script>"
    response = await client.post("/preview", data={"text": draft}, headers={"X-CSRF-Token": token})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == str(render_markdown(draft))
    assert "<script>" not in response.text
    empty = await client.post("/preview", data={"text": "  "}, headers={"X-CSRF-Token": token})
    assert "Nothing to preview" in empty.text


async def test_preview_needs_the_csrf_token_and_a_signed_in_person(
    client: AsyncTestClient[Any],
) -> None:
    await sign_in(client, "bob")
    forged = await client.post("/preview", data={"text": "hi"})
    assert forged.status_code == 403
    client.cookies.clear()  # a browser that never signed in
    page = await client.get("/signin")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    anonymous = await client.post(
        "/preview", data={"text": "hi"}, headers={"X-CSRF-Token": token.group(1)}
    )
    assert anonymous.status_code == 401


def test_the_render_cache_is_bounded_in_characters_and_keeps_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bugless_web import markup

    monkeypatch.setattr(markup, "RENDER_CACHE_CHARS", 300)
    for word in ("alpha", "beta", "gamma", "delta"):
        html = markup.render_markdown(f"**{word}** " * 5)
        assert f"<strong>{word}</strong>" in html
    kept, chars = markup.render_cache_size()
    assert chars <= 300
    assert 1 <= kept < 4
    assert markup.render_markdown("**delta** " * 5) is html  # the newest, kept
    long = "x" * 1000
    assert markup.render_markdown(long) == f"<p>{long}</p>\n"
    assert markup.render_cache_size() == (1, 1000 + len(f"<p>{long}</p>\n"))


_MENTION_LINK = re.compile(r'<a class="mention" href="/users/([^"]+)"[^>]*>([^<]+)</a>')


@given(markdown_texts())
def test_the_web_links_exactly_the_mentions_the_model_keeps_and_notifies(text: str) -> None:
    """One rule: what the page links as a mention is what ``mention:`` and the notifier read."""
    links = _MENTION_LINK.findall(str(render_markdown(text)))
    linked = {username_key(unquote(name)) for name, _ in links}
    assert linked == set(mentioned_usernames(text))
    assert all(
        username_key(label.removeprefix("@")) == username_key(unquote(name))
        for name, label in links
    )
