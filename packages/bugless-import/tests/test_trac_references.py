"""Trac's ``#2`` in an imported comment leads, in bugless's web, to the imported ticket 2.

Before a23652c it came in as ``#2``, which the web links to bugless issue 2
(an unrelated one); a23652c linked it to Trac's ``/ticket/2``, dead once the
old tracker is switched off. Now it links to bugless's ``/imported?id=trac:2``,
which finds the issue imported as ``trac:2`` (bugless_core.issue_references).
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from import_support import MakeSettings, find, history
from litestar.testing import AsyncTestClient
from trac_web_support import BASE, _Trac32

from bugless_import import run_import
from bugless_proto import v1
from bugless_web.markup import render_markdown

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.env import Environment
    from trac.ticket.model import Ticket
    from trac.wiki.model import WikiPage

T0 = datetime(2016, 3, 1, 8, 0, tzinfo=UTC)


async def test_a_reference_to_a_trac_ticket_leads_to_the_imported_ticket_in_bugless(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path, web: AsyncTestClient[Any]
) -> None:
    env = Environment(
        str(tmp_path / "env"),
        create=True,
        options=[("trac", "database", "sqlite:db/trac.db"), ("trac", "base_url", BASE)],
    )
    for n, summary in enumerate(["Engine does not stop", "Pad is cracked"]):
        ticket = Ticket(env)
        ticket.populate({"summary": summary, "reporter": "ann", "status": "new"})
        ticket.insert(when=T0 + timedelta(hours=n))
    ticket = Ticket(env, 1)
    text = "Same as #2 and [ticket:3 the pad one]; not `#4`."
    ticket.save_changes("ann", text, when=T0 + timedelta(hours=4))
    await run_import(_Trac32(env.path, {}), make_settings())

    (issue,) = await find(model, "trac32:1")
    (pad,) = await find(model, "trac32:2")
    (entry,) = [e for e in await history(model, issue.id) if e.comment.startswith("Same as")]

    def link(n: int) -> str:
        source = quote(f"{BASE}/ticket/{n}", safe="")
        return f"/imported?id=trac32%3A{n}&source={source}"

    assert entry.comment == f"Same as [#2]({link(2)}) and the pad one ([#3]({link(3)})); not `#4`."
    page = str(render_markdown(entry.comment))
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    assert hrefs == [link(2), link(3)], page
    assert "/issues/" not in page, "no link to bugless issue 2 (an unrelated one)"

    # Followed in the web: #2 lands on the imported ticket 2's page...
    followed = await web.get(hrefs[0], follow_redirects=False)
    assert followed.status_code == 303
    assert followed.headers["location"] == f"/issues/{pad.id}"
    landed = await web.get(hrefs[0])
    assert landed.status_code == 200
    assert str(landed.url).endswith(f"/issues/{pad.id}")
    assert "Pad is cracked" in landed.text
    # ... and #3, never imported (Trac has no ticket 3), is a 404 naming it
    # that links Trac's page for it, without going there.
    missing = await web.get(hrefs[1], follow_redirects=False)
    assert missing.status_code == 404
    assert "<code>trac32:3</code>" in missing.text
    assert f'href="{BASE}/ticket/3"' in missing.text


def _trac_with_links(path: Path, base_url: str) -> str:
    """A Trac environment whose ticket 1 names a changeset, a revision, a wiki page and more."""
    options = [("trac", "database", "sqlite:db/trac.db")]
    if base_url:
        options.append(("trac", "base_url", base_url))
    env = Environment(str(path), create=True, options=options)
    ticket = Ticket(env)
    description = (
        "Fixed in [changeset:4f2a9c the fix] (r123); see wiki:ReleaseNotes, "
        '[wiki:"Known Issues" the known issues], report:4 and milestone:1.0.'
    )
    ticket.populate({"summary": "Links", "reporter": "ann", "status": "new"})
    ticket["description"] = description
    ticket.insert(when=T0)
    return str(env.path)


async def test_trac_changesets_wiki_pages_reports_and_milestones_link_to_the_old_trac(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """With the Trac's base URL (trac.ini's base_url) they link there; without, they are code."""
    linked = _trac_with_links(tmp_path / "linked", BASE)
    await run_import(_Trac32(linked, {"project": "links"}), make_settings())
    (issue,) = await find(model, "trac32:links#1")
    assert issue.description == (
        f"Fixed in [the fix]({BASE}/changeset/4f2a9c) ([r123]({BASE}/changeset/123)); see "
        f"[wiki:ReleaseNotes]({BASE}/wiki/ReleaseNotes), [the known issues]"
        f"({BASE}/wiki/Known%20Issues), [report:4]({BASE}/report/4) and "
        f"[milestone:1.0]({BASE}/milestone/1.0)."
    )
    page = str(render_markdown(issue.description))
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    assert hrefs == [
        f"{BASE}/changeset/4f2a9c", f"{BASE}/changeset/123", f"{BASE}/wiki/ReleaseNotes",
        f"{BASE}/wiki/Known%20Issues", f"{BASE}/report/4", f"{BASE}/milestone/1.0",
    ], page  # fmt: skip

    bare = _trac_with_links(tmp_path / "bare", "")
    await run_import(
        _Trac32(bare, {"project": "nolinks"}),
        make_settings(state_dir=tmp_path / "bare-state"),
    )
    (kept,) = await find(model, "trac32:nolinks#1")
    assert kept.description == (
        "Fixed in the fix (`changeset:4f2a9c`) (`r123`); see `wiki:ReleaseNotes`, "
        'the known issues (`wiki:"Known Issues"`), `report:4` and `milestone:1.0`.'
    )
    assert "href" not in str(render_markdown(kept.description))

    other = tmp_path / "elsewhere"
    url = "https://svn.example.org/trac"
    await run_import(
        _Trac32(bare, {"project": "optlinks", "url": url}),
        make_settings(state_dir=other),
    )
    (given,) = await find(model, "trac32:optlinks#1")
    assert f"[r123]({url}/changeset/123)" in given.description, "--option url= says where"


async def test_trac_shorthands_escapes_and_wiki_page_names_link_to_the_old_trac(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """``[123]``, ``{4}``, ``source:``, ``log:``, CamelCase pages; ``!`` escapes and code kept.

    Before, these arrived raw: ``[123]`` and ``{4}`` as text Markdown does not
    link, ``source:``/``log:`` and page names unlinked, and Trac's escapes
    ``!#1``/``!r5`` became Markdown images (``![#1](...)``).
    """
    env = Environment(
        str(tmp_path / "env"),
        create=True,
        options=[("trac", "database", "sqlite:db/trac.db"), ("trac", "base_url", BASE)],
    )
    notes = WikiPage(env, "ReleaseNotes")
    notes.text = "= Release notes ="
    notes.save("ann", "Notes")  # TracGuide comes with Trac
    ticket = Ticket(env)
    ticket.populate({"summary": "Shorthands", "reporter": "ann", "status": "new"})
    ticket["description"] = (
        "In [123] (r1:3), see {4}, source:trunk/a.py@12#L3 and log:trunk@1:3; "
        "ReleaseNotes, TracGuide, [ReleaseNotes the notes], JavaScript.\n"
        "Escaped: !ReleaseNotes !#1 !r5 ![123] !{4}; ticket:2.\n"
        "{{{\n[123] ReleaseNotes {4}\n}}}\n"
    )
    ticket.insert(when=T0)
    await run_import(_Trac32(str(env.path), {"project": "short"}), make_settings())
    (issue,) = await find(model, "trac32:short#1")
    ticket_2 = "/imported?id=trac32%3Ashort%232&source=" + quote(f"{BASE}/ticket/2", safe="")
    assert issue.description == (
        f"In [\\[123\\]]({BASE}/changeset/123) ([r1:3]({BASE}/log/?revs=1-3)), see "
        f"[{{4}}]({BASE}/report/4), [source:trunk/a.py@12#L3]({BASE}/browser/trunk/a.py?rev=12#L3)"
        f" and [log:trunk@1:3]({BASE}/log/trunk?revs=1-3); "
        f"[ReleaseNotes]({BASE}/wiki/ReleaseNotes), [TracGuide]({BASE}/wiki/TracGuide), "
        f"[the notes]({BASE}/wiki/ReleaseNotes), JavaScript.\n"
        f"Escaped: ReleaseNotes `#1` r5 [123] {{4}}; [#2]({ticket_2}).\n"
        "\n```\n[123] ReleaseNotes {4}\n```\n\n"
    )
    page = str(render_markdown(issue.description))
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    assert hrefs == [
        f"{BASE}/changeset/123", f"{BASE}/log/?revs=1-3", f"{BASE}/report/4",
        f"{BASE}/browser/trunk/a.py?rev=12#L3", f"{BASE}/log/trunk?revs=1-3",
        f"{BASE}/wiki/ReleaseNotes", f"{BASE}/wiki/TracGuide", f"{BASE}/wiki/ReleaseNotes",
        ticket_2,
    ], page  # fmt: skip
    assert "<img" not in page, "an escape is no Markdown image"

    # Without the Trac's URL: code, and page names as the words they are.
    env.config.remove("trac", "base_url")
    env.config.save()
    await run_import(
        _Trac32(str(env.path), {"project": "shortbare"}),
        make_settings(state_dir=tmp_path / "bare-state"),
    )
    (bare,) = await find(model, "trac32:shortbare#1")
    assert bare.description.splitlines()[:2] == [
        "In `[123]` (`r1:3`), see `{4}`, `source:trunk/a.py@12#L3` and `log:trunk@1:3`; "
        "ReleaseNotes, TracGuide, the notes (ReleaseNotes), JavaScript.",
        "Escaped: ReleaseNotes `#1` r5 [123] {4}; " + "[#2](/imported?id=trac32%3Ashortbare%232).",
    ]
    assert "href" not in str(render_markdown(bare.description.split("[#2]")[0]))
