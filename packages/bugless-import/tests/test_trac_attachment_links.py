"""Trac's attachment links lead to the copied file in bugless; what leads nowhere is code.

Before, ``attachment:plot.png``, ``[[Image(plot.png)]]``, ``diff:``, InterTrac's
``trac:#123``, other macros and ``["free link"]`` came in as written: markup
bugless does not read, and ``trac:#123`` even had bugless link ``#123`` to
its own issue 123. A real Trac 1.6 environment with files on two tickets and
a wiki page is imported into the real Model; the links are followed in the
real web app.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from import_support import MakeSettings, find
from trac_web_support import BASE, _Trac32

from bugless_import import run_import
from bugless_proto import v1
from bugless_web.markup import render_markdown

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources' deprecation notice
    from trac.attachment import Attachment
    from trac.env import Environment
    from trac.ticket.model import Ticket
    from trac.wiki.model import WikiPage


T0 = datetime(2017, 5, 1, 8, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
NOTES = b"Pad inspection notes.\n"
LOG = b"T+5 no stop\n"

DESCRIPTION = (
    'See attachment:"engine log.txt", [attachment:plot.png the plot], '
    "attachment:notes.txt:ticket:2, [raw-attachment:ticket:2:notes.txt raw notes], "
    "attachment:gone.txt and attachment:spec.txt:wiki:Specs.\n"
    "[[Image(plot.png, 50%)]] [[Image(#2:chart.png)]] [[Image(missing.png)]]\n"
    'Kept: diff:trunk@1:3, trac:#123, [[TOC]], [[PageOutline(2-3)]], ["free link"].'
)


def _environment(path: Path, base_url: str) -> Environment:
    options = [("trac", "database", "sqlite:db/trac.db")]
    if base_url:
        options.append(("trac", "base_url", base_url))
    env = Environment(str(path), create=True, options=options)
    specs = WikiPage(env, "Specs")
    specs.text = "The specs."
    specs.save("ann", "Specs")
    for n, summary in enumerate(["Engine does not stop", "Pad is cracked"]):
        ticket = Ticket(env)
        ticket.populate({"summary": summary, "reporter": "ann", "status": "new"})
        ticket["description"] = DESCRIPTION if n == 0 else "The pad."
        ticket.insert(when=T0 + timedelta(hours=n))
    files = [
        ("ticket", "1", "engine log.txt", LOG), ("ticket", "1", "plot.png", PNG),
        ("ticket", "2", "notes.txt", NOTES), ("ticket", "2", "chart.png", PNG + b"2"),
        ("wiki", "Specs", "spec.txt", b"spec\n"),
    ]  # fmt: skip
    for n, (realm, parent, name, data) in enumerate(files):
        attachment = Attachment(env, realm, parent)
        attachment.author = "ann"
        attachment.insert(name, io.BytesIO(data), len(data), t=T0 + timedelta(hours=3 + n))
    return env


def _copy(external_id: str, data: bytes, source: str = "") -> str:
    query = f"id={quote(external_id, safe='')}&file={hashlib.sha256(data).hexdigest()}"
    return f"/imported?{query}" + (f"&source={quote(source, safe='')}" if source else "")


async def test_attachment_links_and_images_lead_to_the_copied_files(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path, web: Any
) -> None:
    env = _environment(tmp_path / "env", BASE)
    report = await run_import(_Trac32(str(env.path), {"project": "att"}), make_settings())
    assert report.created == 2
    (issue,) = await find(model, "trac32:att#1")
    one, two = "trac32:att#1", "trac32:att#2"
    tickets = f"{BASE}/attachment/ticket"
    assert issue.description.splitlines() == [
        f'See [attachment:"engine log.txt"]({_copy(one, LOG, f"{tickets}/1/engine%20log.txt")}),'
        f" [the plot]({_copy(one, PNG, f'{tickets}/1/plot.png')}), "
        f"[attachment:notes.txt:ticket:2]({_copy(two, NOTES, f'{tickets}/2/notes.txt')}), "
        f"[raw notes]({_copy(two, NOTES, f'{BASE}/raw-attachment/ticket/2/notes.txt')}), "
        f"`attachment:gone.txt` and "
        f"[attachment:spec.txt:wiki:Specs]({BASE}/attachment/wiki/Specs/spec.txt).",
        f"![plot.png]({_copy(one, PNG, f'{BASE}/raw-attachment/ticket/1/plot.png')}) "
        f"![chart.png]({_copy(two, PNG + b'2', f'{BASE}/raw-attachment/ticket/2/chart.png')}) "
        "`[[Image(missing.png)]]`",
        'Kept: `diff:trunk@1:3`, `trac:#123`, `[[TOC]]`, `[[PageOutline(2-3)]]`, `["free link"]`.',
    ]
    page = str(render_markdown(issue.description))
    assert "/issues/" not in page, "trac:#123 is no link to bugless issue 123"
    links = [unescape(h) for h in re.findall(r'(?:href|src)="(/imported[^"]+)"', page)]
    assert len(links) == 6

    # Followed in the web: each leads to the copy with that content, on its issue.
    for link in links:
        followed = await web.get(link, follow_redirects=False)
        assert followed.status_code == 303, link
        location = followed.headers["location"]
        assert "/attachments/" in location, location
        downloaded = await web.get(location)
        assert downloaded.status_code == 200
        wanted = re.search(r"file=([0-9a-f]{64})", link)
        assert wanted is not None
        assert hashlib.sha256(downloaded.content).hexdigest() == wanted.group(1)


async def test_without_the_trac_url_copied_files_still_link_and_the_rest_is_code(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    env = _environment(tmp_path / "env", "")
    await run_import(
        _Trac32(str(env.path), {"project": "attbare"}),
        make_settings(state_dir=tmp_path / "bare-state"),
    )
    (issue,) = await find(model, "trac32:attbare#1")
    one, two = "trac32:attbare#1", "trac32:attbare#2"
    assert issue.description.splitlines()[:2] == [
        f'See [attachment:"engine log.txt"]({_copy(one, LOG)}), [the plot]({_copy(one, PNG)}), '
        f"[attachment:notes.txt:ticket:2]({_copy(two, NOTES)}), [raw notes]({_copy(two, NOTES)}), "
        "`attachment:gone.txt` and `attachment:spec.txt:wiki:Specs`.",
        f"![plot.png]({_copy(one, PNG)}) ![chart.png]({_copy(two, PNG + b'2')}) "
        "`[[Image(missing.png)]]`",
    ]
