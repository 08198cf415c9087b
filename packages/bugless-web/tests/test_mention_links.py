"""A mention of a name in any script links to that person's page, and search finds it.

Against the session's real Authenticator and Model: the comment's ``@`` links
are read off the issue page and followed, as a reader's click would.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from web_support import PASSWORD, World, create_issue, sign_in

from bugless_core.clients import call
from bugless_core.usernames import USERNAME_MAX_LENGTH, USERNAME_PUNCTUATION
from bugless_proto import v1
from bugless_web import markup

_MENTION = re.compile(r'<a class="mention" href="([^"]+)"[^>]*>([^<]+)</a>')


async def test_a_mention_in_any_script_or_case_links_to_the_person(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    tag = secrets.token_hex(3)
    olaf = f"Ölaf{tag}"
    created = world.stack.add_user(olaf, PASSWORD, display_name=f"Ölaf Ökland {tag}")
    decomposed = f"O\u0308LAF{tag}"  # NFD, upper case
    issue = await create_issue(
        model,
        world,
        f"Umlauts {tag}",
        assignee=created["user_id"],
        description=f"ping @{decomposed}, @Bob and `@carol`; mail x@{olaf}.example",
    )
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    links = _MENTION.findall(page.text)
    assert links == [(f"/users/%C3%96LAF{tag}", f"@{decomposed}"), ("/users/Bob", "@Bob")]
    for href, _ in links:
        person = await client.get(href)
        assert person.status_code == 200, href
    person = await client.get(links[0][0])
    assert f"Ölaf Ökland {tag}" in person.text
    assert f'href="/issues/{issue.id}"' in person.text  # assigned to Ölaf, open
    assert "Bob Builder" in (await client.get("/users/Bob")).text
    for spelling in (olaf, olaf.lower(), decomposed):
        found = await client.get("/search", params={"q": f"mention:{spelling}"})
        assert found.status_code == 200, spelling
        assert f'href="/issues/{issue.id}"' in found.text, spelling


async def test_the_mentions_the_page_links_are_the_ones_search_finds(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """``_@bob_`` (emphasis) is a mention, linked and found; code's and a URL's ``@carol`` are not.

    Before, the page linked bob but ``mention:bob`` did not find the issue
    (nor was bob notified), while ``mention:carol`` found it unlinked.
    """
    tag = secrets.token_hex(3)
    issue = await create_issue(
        model,
        world,
        f"Markdown mentions {tag}",
        description="_@bob_ and **@Alice**; not `@carol` nor https://example.com/@carol",
    )
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert _MENTION.findall(page.text) == [("/users/bob", "@bob"), ("/users/Alice", "@Alice")]
    for name, mentioned in (("bob", True), ("alice", True), ("carol", False)):
        found = await client.get("/search", params={"q": f"mention:{name}"})
        assert found.status_code == 200, name
        assert (f'href="/issues/{issue.id}"' in found.text) is mentioned, name


async def test_a_name_emphasis_could_cut_is_linked_and_found_whole(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """``@x._0_.0`` (an ``_0_`` beside ".") links its person, and ``mention:`` finds them.

    Before, Markdown read ``_0_`` as emphasis: the page linked ``@x`` (a
    person nobody is), and the Model kept ``x``, so the person was neither
    linked, found nor notified.
    """
    tag = secrets.token_hex(3)
    name = f"dot{tag}._0_.0"
    world.stack.add_user(name, PASSWORD, display_name=f"Dot Underscore {tag}")
    issue = await create_issue(model, world, f"Cut names {tag}", description=f"for @{name}.")
    await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert _MENTION.findall(page.text) == [(f"/users/{name}", f"@{name}")]
    person = await client.get(f"/users/{name}")
    assert person.status_code == 200
    assert f"Dot Underscore {tag}" in person.text
    found = await client.get("/search", params={"q": f"mention:{name}"})
    assert found.status_code == 200
    assert f'href="/issues/{issue.id}"' in found.text
    cut = await client.get("/search", params={"q": f"mention:dot{tag}"})
    assert f'href="/issues/{issue.id}"' not in cut.text


async def test_a_mention_of_nobody_is_muted_text_and_every_mention_link_finds_a_person(
    client: AsyncTestClient[Any], world: World, model: v1.ModelStub
) -> None:
    """``@nosuch`` reads as text titled "no such user"; a user's mention stays a link.

    Before, every ``@name`` linked to ``/users/name``, a 404 for a name
    nobody goes by. The same on the page, in the entry live updates insert,
    and in the preview of a draft.
    """
    tag = secrets.token_hex(3)
    nobody, nobody_else = f"nosuch{tag}", f"Ghost{tag}"
    unknown = '<span class="mention unknown" title="no such user">@{}</span>'
    issue = await create_issue(
        model, world, f"Unknown mentions {tag}", description=f"ask @{nobody} and @Carol"
    )
    await call(
        model.change_issue,
        v1.ChangeIssueRequest(
            caller=world.caller("bob"),
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(),
            comment=f"@{nobody_else}, _@bob_ knows",
        ),
    )
    token = await sign_in(client, "bob")
    page = await client.get(f"/issues/{issue.id}")
    assert page.status_code == 200
    assert _MENTION.findall(page.text) == [("/users/Carol", "@Carol"), ("/users/bob", "@bob")]
    assert page.text.count(unknown.format(nobody)) == 1
    assert page.text.count(unknown.format(nobody_else)) == 1
    for href in set(re.findall(r'href="(/users/[^"]*)"', page.text)):
        assert (await client.get(href)).status_code == 200, href
    entry = await client.get(f"/issues/{issue.id}/entries/2")
    assert entry.status_code == 200
    assert _MENTION.findall(entry.text) == [("/users/bob", "@bob")]
    assert unknown.format(nobody_else) in entry.text
    draft = f"cc @{nobody} and @CAROL"
    preview = await client.post("/preview", data={"text": draft}, headers={"X-CSRF-Token": token})
    assert preview.status_code == 200
    assert _MENTION.findall(preview.text) == [("/users/CAROL", "@CAROL")]
    assert unknown.format(nobody) in preview.text


def test_the_completion_box_reads_names_by_the_usernames_rule() -> None:
    """compose.js's copy of the grammar (JavaScript has no import of Python's) is the rule's.

    A letter or digit of any script first, then letters, digits, marks and
    the usernames' punctuation, up to their length; the browser test
    (test_browser_mentions) types a non-ASCII name into it.
    """
    script = (Path(markup.__file__).parent / "static" / "compose.js").read_text("utf-8")
    found = re.search(r"MENTION_BEFORE_CARET =\s*/(.*)/u;", script)
    assert found is not None
    letter_or_digit, inner = r"[\p{L}\p{N}]", rf"[\p{{L}}\p{{N}}\p{{M}}{USERNAME_PUNCTUATION}]"
    name = f"{letter_or_digit}{inner}{{0,{USERNAME_MAX_LENGTH - 1}}}"
    assert f"@({name})?$" in found.group(1)
